"""Value, Manager().dict() and shared-memory scenarios, as shared/bench's bench_value.py
and bench_lock.py.

usage: python3 shared.py SCENARIO [fork|spawn|forkserver] [--serve]
env:   REPS (default 5, without --serve), and per scenario:
  value_locked  N increments in all (default 5e5): two processes, fresh each
                repetition, wait on an Event, then each does N/2 of
                `with v.get_lock(): v.value += 1` on one Value('q') and reports its
                perf_counter() before the first and after the last;
                incr/s = N / (last end - first start). The value is checked.
  manager_dict  N (default 10000) operations: d[k] = v, then d[k], alternating,
                through a Manager().dict() proxy from the main process; one manager
                for the run, warmed up with 500 operations. ops/s.
  shm_bandwidth SIZE bytes (default 1 MiB): a SharedMemory block; a child, fresh each
                repetition, writes SIZE bytes into it (bytes assignment into buf), the
                parent then reads them all (bytes(buf)); bytes/s over the write and the
                read, each timed where it happens (GB/s as bytes / 1e9 / s).
"""
import multiprocessing as mp
import sys
from multiprocessing import shared_memory

from common import env_int, perf, positional, say, serve


def inc(v, n, go, res):
    go.wait()
    t0 = perf()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    res.put((t0, perf()))


def value_rep(ctx, n):
    v, go, res = ctx.Value("q", 0), ctx.Event(), ctx.SimpleQueue()
    ps = [ctx.Process(target=inc, args=(v, n // 2, go, res)) for _ in range(2)]
    for p in ps:
        p.start()
    go.set()
    spans = [res.get() for _ in range(2)]
    for p in ps:
        p.join()
    assert v.value == (n // 2) * 2, v.value
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return "incr/s", [(n // 2) * 2 / wall]


def dict_ops(d, n):
    t0 = perf()
    for i in range(n // 2):
        d[i % 100] = i
        d[i % 100]
    return (n // 2) * 2 / (perf() - t0)


def writer(name, size, res):
    block = shared_memory.SharedMemory(name=name)
    data = b"\x07" * size
    t0 = perf()
    block.buf[:size] = data
    res.put(perf() - t0)
    block.close()


def shm_rep(ctx, size):
    block = shared_memory.SharedMemory(create=True, size=size)
    try:
        res = ctx.SimpleQueue()
        p = ctx.Process(target=writer, args=(block.name, size, res))
        p.start()
        write = res.get()
        p.join()
        t0 = perf()
        data = bytes(block.buf[:size])
        read = perf() - t0
        assert data[-1] == 7
        return "GB/s", [2 * size / 1e9 / (write + read)]
    finally:
        block.close()
        block.unlink()


def main():
    scenario = positional(0, "value_locked")
    ctx = mp.get_context(positional(1, "fork"))
    if scenario == "value_locked":
        n = env_int("N", 500_000)
        value_rep(ctx, n)  # warm-up
        serve(lambda: value_rep(ctx, n))
    elif scenario == "manager_dict":
        n = env_int("N", 10_000)
        with ctx.Manager() as m:
            d = m.dict()
            dict_ops(d, 500)  # warm-up
            serve(lambda: ("ops/s", [dict_ops(d, n)]))
    elif scenario == "shm_bandwidth":
        size = env_int("SIZE", 1 << 20)
        shm_rep(ctx, size)  # warm-up
        serve(lambda: shm_rep(ctx, size))
    else:
        say("error", f"unknown scenario {scenario!r}")
        sys.exit(2)


if __name__ == "__main__":
    main()
