# MicroPython-side driver for the Modbus host tests and benchmarks (not a pytest module: it
# defines no tests and does nothing when imported by CPython).
#
# micropython modbus_agent_mp.py JOB.json OUT.json
# JOB: {"serial": {...}, "points": [...], "cycles": n, "warmup": n, "merge": true,
#       "heap_lock": false, "expect": {pid: value} (optional), "writes": [[slave, table,
#       address, [values]], ...] (optional, done before polling), "run_ms": 0,
#       "ticks": {"ms": n, "us": n} (optional: the clock on the boards' 2**30 period, started
#       at these ticks, e.g. just before the wrap)}
# OUT: {"stats", "last": {pid: [kind, value]}, "cycle_us", "cycles", "records",
#       "wrong": n (records that disagree with "expect"), "heap_locked_cycles", "de": [...]}
import sys


def main():
    import json
    import time

    import asyncio
    import micropython

    from otlink.core import reading
    from otlink.core.config import parse_points, parse_serial
    from otlink.hal.clock import Clock, Ticks
    from otlink.hal.unix.uart import open_uart
    from otlink.modbus_poller import Poller

    with open(sys.argv[1]) as f:
        job = json.load(f)
    ser = parse_serial(job["serial"])
    points = parse_points(job["points"], ser)
    tk = job.get("ticks")
    clock = Clock(ticks=Ticks(ms=tk.get("ms"), us=tk.get("us")) if tk else None)
    uart = open_uart(ser, clock)
    expect = {}
    for k, v in job.get("expect", {}).items():
        expect[int(k)] = v
    last = {}
    cnt = [0, 0, 0]  # records, wrong values, error records
    bad = []  # first wrong values seen: [pid, low word, (high word), cycle]
    keep = [job.get("keep", True)]
    exp_int = {}
    exp_bits = {}
    for pid in expect:
        v = expect[pid]
        if isinstance(v, float):
            import struct

            exp_bits[pid] = struct.unpack("<II", struct.pack("<d", v))
        elif isinstance(v, int):
            exp_int[pid] = v


    # The sink closes over one variable only: MicroPython heap-allocates the argument array
    # of a closure call with more than a few closed-over cells, which the heap-locked cycles
    # would (rightly) catch.
    S = [cnt, exp_int, exp_bits, bad, keep, last, None]

    def sink(rec, n):
        c = S[0]
        c[0] += 1
        pid = rec[0] | (rec[1] << 8)
        kind = rec[reading.OFF_KIND]
        v = reading.HEADER  # the value, little endian (the layout is core/reading.py's)
        if kind == reading.KIND_ERR:
            c[2] += 1
        elif kind == reading.KIND_INT:
            if pid in S[1]:
                lo = rec[v] | rec[v + 1] << 8 | rec[v + 2] << 16 | rec[v + 3] << 24
                if (S[1][pid] & 0xFFFFFFFF) != lo:
                    c[1] += 1
                    if len(S[3]) < 10:
                        S[3].append([pid, lo, S[6].cycles])
        elif kind == reading.KIND_FLOAT:
            if pid in S[2]:
                lo = rec[v] | rec[v + 1] << 8 | rec[v + 2] << 16 | rec[v + 3] << 24
                hi = rec[v + 4] | rec[v + 5] << 8 | rec[v + 6] << 16 | rec[v + 7] << 24
                w = S[2][pid]
                if lo != w[0] or hi != w[1]:
                    c[1] += 1
                    if len(S[3]) < 10:
                        S[3].append([pid, lo, hi, S[6].cycles])
        if S[4][0]:
            S[5][pid] = reading.unpack(rec, n)

    poller = Poller(uart, clock, ser, points, sink, merge=job.get("merge", True))
    S[6] = poller
    out = {}

    async def go():
        for w in job.get("writes", []):
            out.setdefault("write_codes", []).append(await poller.write(w[0], w[1], w[2], w[3]))
        warm = job.get("warmup", 2)
        if warm:
            await poller.run(cycles=warm)
        keep[0] = job.get("keep", True)
        n = job.get("cycles", 1)
        locked = [0, 0]
        if job.get("heap_lock"):
            # lock the heap from the end of the first measured cycle to the end of the last:
            # any allocation in the poll loop in between raises MemoryError
            seen = [0]

            def hook(p):
                seen[0] += 1
                if seen[0] == 1:
                    micropython.heap_lock()
                    locked[1] = 1
                elif seen[0] == n:
                    micropython.heap_unlock()  # lock depth is a counter: unlock once only
                    locked[1] = 0
                    locked[0] = n - 1
            poller.on_cycle = hook
            keep[0] = False
        if job.get("measure_alloc"):
            import gc

            # heap bytes allocated between the end of the first measured cycle and the end of
            # the last, with the collector off so nothing is reclaimed in between
            marks = [0, 0, 0, 0]
            seen2 = [0]
            cnt = poller._cnt

            def hook2(p):
                seen2[0] += 1
                if seen2[0] == 1:
                    marks[0] = gc.mem_alloc()
                    marks[2] = sum(cnt)
                elif seen2[0] == n:
                    marks[1] = gc.mem_alloc()
                    marks[3] = sum(cnt)
            gc.collect()
            gc.disable()
            poller.on_cycle = hook2
        t0 = time.ticks_us()
        try:
            await poller.run(cycles=n)
        finally:
            if locked[1]:
                micropython.heap_unlock()
            poller.on_cycle = None
        out["cycle_us"] = time.ticks_diff(time.ticks_us(), t0) / n
        if job.get("measure_alloc"):
            gc.enable()
            out["alloc_bytes"] = marks[1] - marks[0]
            out["alloc_tx"] = marks[3] - marks[2]
        out["heap_locked_cycles"] = locked[0]
        if job.get("run_ms"):
            # a neighbour task (think MQTT) records the longest time it waited for the loop
            lat = [0, True]

            async def neighbour():
                while lat[1]:
                    t = time.ticks_us()
                    await asyncio.sleep_ms(0)
                    d = time.ticks_diff(time.ticks_us(), t)
                    if d > lat[0]:
                        lat[0] = d
            ntask = asyncio.create_task(neighbour())
            task = asyncio.create_task(poller.run())
            await asyncio.sleep_ms(job["run_ms"] // 2)
            for w in job.get("run_writes", []):
                # queued: served between two reads of the running poll loop
                out.setdefault("run_write_codes", []).append(
                    await poller.write(w[0], w[1], w[2], w[3]))
            await asyncio.sleep_ms(job["run_ms"] // 2)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            lat[1] = False
            await ntask
            out["max_block_us"] = lat[0]

    asyncio.run(go())
    st_ = poller.stats()
    out["stats"] = dict((str(k), v) for k, v in st_.items())
    out["cycles"] = poller.cycles
    out["records"] = cnt[0]
    out["wrong"] = cnt[1]
    out["wrong_samples"] = bad
    out["errors"] = cnt[2]
    out["last"] = dict((str(k), [v[1], v[4] if not isinstance(v[4], bytes) else v[4].decode()])
                       for k, v in last.items())
    out["de"] = uart.de.transitions()
    out["char_us"] = uart.char_us
    out["t35_us"] = uart.t35_us
    out["tx_bytes"] = uart.tx_bytes
    out["rx_bytes"] = uart.rx_bytes
    uart.close()
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
