# Bytecode version of the queue's record codec (contracts: core/queue/codec.py). Loaded only
# when the native version cannot be compiled (a port without a native emitter or runtime
# compiler, too little memory for the compile), and by the codec test, which checks that
# both versions give the same bytes.
from otlink.core.queue.fmt import MASKED, CMP, MAX_REC


def enc(g, o, rec, prev, n):
    m = n if n < CMP else CMP
    mask = 0
    diff = 0
    for k in range(m):
        if rec[k] != prev[k]:
            mask |= 1 << k
            diff += 1
    if diff + 3 < m:
        g[o] = MASKED | n
        g[o + 1] = mask & 0xFF
        g[o + 2] = (mask >> 8) & 0xFF
        g[o + 3] = mask >> 16
        o += 4
        for k in range(m):
            if mask & (1 << k):
                g[o] = rec[k]
                o += 1
        for k in range(m, n):
            g[o] = rec[k]
            o += 1
    else:
        g[o] = n
        o += 1
        for k in range(n):
            g[o + k] = rec[k]
        o += n
    for k in range(m):
        prev[k] = rec[k]
    return o


def decn(b, p, end, rec, prev, cnt):
    for _ in range(cnt):
        if p >= end:
            return -1
        ln = b[p]
        n = ln & 0x7F
        if n == 0 or n > MAX_REC:
            return -1
        p += 1
        m = n if n < CMP else CMP
        if ln & MASKED:
            if p + 3 > end:
                return -1
            mask = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)
            p += 3
            for k in range(m):
                if mask & (1 << k):
                    if p >= end:
                        return -1
                    prev[k] = b[p]
                    p += 1
                rec[k] = prev[k]
        else:
            if p + m > end:
                return -1
            for k in range(m):
                rec[k] = prev[k] = b[p + k]
            p += m
        if p + n - m > end:
            return -1
        for k in range(m, n):
            rec[k] = b[p]
            p += 1
    return p


def squeeze(g, o, cnt, n):
    d = o
    for _ in range(cnt):
        o += 1
        for k in range(n):
            g[d + k] = g[o + k]
        d += n
        o += n


def copy(b, p, rec, n):
    for k in range(n):
        rec[k] = b[p + k]


def zero(prev):
    for k in range(CMP):
        prev[k] = 0
