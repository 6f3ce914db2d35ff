# Source of the vibration kernels (viper), compiled by analytics/vibration.py when a
# vibration sensor is configured, then dropped. Integers only, no allocation (see
# analytics/kern_src.py for why): sums go into limbs of 15 bits in int32 words.
#
# mom(x, n, st): moments of n int16 samples about m0 = st[0] (an integer near their mean):
#   d = x - m0; st[1] = min x, st[2] = max x; S1 (st[4:8] +, st[8:12] -), S2 (st[12:18]),
#   S3 (st[18:24] +, st[24:30] -), S4 (st[30:38]) as limbs. |d| < 2**14, n <= 2**15.
# load(x, n, m0, sh, rev, re, im): re[rev[i]] = (x[i] - m0) << sh, im = 0: the FFT input in
#   bit-reversed order. |re| * n must stay below 2**30 (vibration.py picks sh).
# fft(re, im, n, cs, sn): in place radix-2 decimation-in-time FFT; cs/sn: cos and -sin of
#   2*pi*k/n, k < n/2, in Q29 (bit 30 then repeats the sign: a ptr32 load is zero-extended on
#   64-bit ports, and the kernels sign-extend from bit 30). Products are formed from 15-bit
#   halves so every partial product fits a signed 32-bit word: error below 3 units of the
#   last place per product.
# pw(re, im, k0, k1, q, acc): acc (limbs, 6 words) += sum over k0 <= k < k1 of
#   (re[k]**2 + im[k]**2) with each term first scaled by q[k] (Q30, <= 1) when q is given
#   (flag 1), as is (flag 0).
SRC = """
import micropython


@micropython.viper
def mom(x: ptr16, n: int, st: ptr32):
    m0 = st[0]
    if (m0 >> 30) & 1:  # a ptr32 load is zero-extended on 64-bit ports
        m0 |= ~0x3FFFFFFF
    for i in range(1, 38):
        st[i] = 0
    lo = 32767
    hi = -32768
    for i in range(n):
        v = x[i]
        if v & 0x8000:
            v = v - 0x10000
        if v < lo:
            lo = v
        if v > hi:
            hi = v
        d = v - m0
        ad = d if d >= 0 else 0 - d
        b1 = 4 if d >= 0 else 8
        b3 = 18 if d >= 0 else 24
        c = ad
        k = b1
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
        d2 = ad * ad
        h = d2 >> 15
        l = d2 & 0x7FFF
        c = l
        k = 12
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
        c = h
        k = 13
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
        # d^3 = (h * 2^15 + l) * |d|
        c = l * ad
        k = b3
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
        c = h * ad
        k = b3 + 1
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
        # d^4 = h^2 * 2^30 + 2hl * 2^15 + l^2
        c = l * l
        k = 30
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
        c = 2 * h * l
        k = 31
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
        c = h * h
        k = 32
        while c:
            c += st[k]
            st[k] = c & 0x7FFF
            c = c >> 15
            k += 1
    st[1] = lo
    st[2] = hi


@micropython.viper
def load(x: ptr16, n: int, m0: int, sh: int, rev: ptr16, re: ptr32, im: ptr32):
    for i in range(n):
        v = x[i]
        if v & 0x8000:
            v = v - 0x10000
        j = rev[i]
        re[j] = (v - m0) << sh
        im[j] = 0
"""

SRC2 = """
import micropython


@micropython.viper
def fft(re: ptr32, im: ptr32, n: int, cs: ptr32, sn: ptr32):
    half = 1
    step = n >> 1
    while half < n:
        for k in range(half):
            w = cs[k * step]
            if (w >> 30) & 1:
                w |= ~0x3FFFFFFF
            wh = w >> 15
            wl = w & 0x7FFF
            s = sn[k * step]
            if (s >> 30) & 1:
                s |= ~0x3FFFFFFF
            sh = s >> 15
            sl = s & 0x7FFF
            i = k
            while i < n:
                j = i + half
                a = re[j]
                if (a >> 30) & 1:
                    a |= ~0x3FFFFFFF
                b = im[j]
                if (b >> 30) & 1:
                    b |= ~0x3FFFFFFF
                ri = re[i]
                if (ri >> 30) & 1:
                    ri |= ~0x3FFFFFFF
                ii = im[i]
                if (ii >> 30) & 1:
                    ii |= ~0x3FFFFFFF
                ah = a >> 15
                al = a & 0x7FFF
                bh = b >> 15
                bl = b & 0x7FFF
                # (a + ib)(w + is), w and s in Q29: re = a*w - b*s, im = a*s + b*w
                aw = ((ah * wh) << 1) + ((ah * wl) >> 14) + ((al * wh) >> 14)
                bs = ((bh * sh) << 1) + ((bh * sl) >> 14) + ((bl * sh) >> 14)
                as_ = ((ah * sh) << 1) + ((ah * sl) >> 14) + ((al * sh) >> 14)
                bw = ((bh * wh) << 1) + ((bh * wl) >> 14) + ((bl * wh) >> 14)
                tr = aw - bs
                ti = as_ + bw
                re[j] = ri - tr
                im[j] = ii - ti
                re[i] = ri + tr
                im[i] = ii + ti
                i += half << 1
        half = half << 1
        step = step >> 1


@micropython.viper
def pw(re: ptr32, im: ptr32, k0: int, k1: int, q: ptr32, flag: int, acc: ptr32):
    for k in range(k0, k1):
        for part in range(2):
            a = re[k] if part == 0 else im[k]
            if (a >> 30) & 1:
                a |= ~0x3FFFFFFF
            if flag:
                w = q[k]
                wh = w >> 15
                wl = w & 0x7FFF
                ah = a >> 15
                al = a & 0x7FFF
                a = ah * wh + ((ah * wl) >> 15) + ((al * wh) >> 15)
            if a < 0:
                a = 0 - a
            h = a >> 15
            l = a & 0x7FFF
            c = l * l
            j = 0
            while c:
                c += acc[j]
                acc[j] = c & 0x7FFF
                c = c >> 15
                j += 1
            c = 2 * h * l
            j = 1
            while c:
                c += acc[j]
                acc[j] = c & 0x7FFF
                c = c >> 15
                j += 1
            c = h * h
            j = 2
            while c:
                c += acc[j]
                acc[j] = c & 0x7FFF
                c = c >> 15
                j += 1
"""
