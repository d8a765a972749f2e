"""Pool scenarios: multiprocessing.Pool(2) with f(x) = x*x, and a killed executor worker.

usage: python3 pool.py SCENARIO [fork|spawn|forkserver] [--serve]
env:   REPS (default 5, without --serve), and per scenario:
  map            N items (default 1e6), CHUNKSIZE (default 0: Python's default, which is
                 ceil(N / (4 * processes))). One pool for the whole run, warmed up with
                 pool.map(f, range(1000)) and one repetition. Per repetition:
                 `samples tasks/s <N / wall time of pool.map(f, range(N), chunksize)>`.
  imap_unordered N items (default 1e5), CHUNKSIZE (default 1): sum(pool.imap_unordered(
                 f, range(N), chunksize)); one pool, set up as for map; tasks/s as map.
  apply_async    ITERS calls (default 2000): pool.apply_async(f, (i,)).get() one at a time;
                 one pool, set up as for map. `samples us <mean per call>`.
  start          N pools per repetition (default 5): Pool(2) constructed and its first
                 apply(f, (3,)) result, timed; then terminate() + join(), timed apart.
                 One pool of warm-up (for forkserver: the server's start).
                 `shutdown <terminate + join per pool>...`, then `samples ms <...>`.
  worker_killed  N kills per repetition (default 5). A fresh ProcessPoolExecutor(2) per
                 kill (a killed worker breaks it); both workers run sleeper(30) and say so
                 with their pid on a queue; SIGKILL the first to report, time from
                 os.kill until future.exception() returns BrokenProcessPool (as
                 shared/bench/python/bench_restart.py ppe_inflight, with the pids on a
                 queue instead of a fixed 0.2 s wait). `samples ms <one per kill>...`.
The start method (second argument, default fork) applies to every scenario. Result
lines as common.py describes.
"""
import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
import sys
import time
from concurrent.futures.process import BrokenProcessPool

import common
from common import env_int, perf, positional, say, serve, stop_resource_tracker

PIDS = None  # set in each executor worker by the initializer (worker_killed)


def f(x):
    return x * x


def init_pids(queue):
    global PIDS
    PIDS = queue


def sleeper(seconds):
    PIDS.put(os.getpid())  # this worker is now inside the task
    time.sleep(seconds)  # it is killed long before it ends
    return os.getpid()


def pool_scenario(ctx, rep):
    """Runs `rep(pool)` on one Pool(2) kept for the whole run, after one rep of warm-up."""
    pool = ctx.Pool(2)
    try:
        pool.map(f, range(1000))
        rep(pool)
        # serve() without its final stop of the resource tracker: with spawn or
        # forkserver, the live workers hold the tracker's pipe open, and it would wait
        # for them forever. The pool ends first, then the tracker is stopped.
        common._serve(lambda: rep(pool))
    finally:
        pool.terminate()
        pool.join()
        # Its semaphores unregister from the resource tracker (spawn, forkserver) as
        # they go, which would start a new one: let them go before it is stopped.
        del pool
        stop_resource_tracker()


def map_rep(pool, n, chunksize):
    t0 = perf()
    out = pool.map(f, range(n), chunksize=chunksize)
    dt = perf() - t0
    assert len(out) == n and out[-1] == (n - 1) ** 2, out[-1]
    return "tasks/s", [n / dt]


def imap_rep(pool, n, chunksize):
    t0 = perf()
    s = sum(pool.imap_unordered(f, range(n), chunksize=chunksize))
    dt = perf() - t0
    assert s == (n - 1) * n * (2 * n - 1) // 6, s
    return "tasks/s", [n / dt]


def apply_rep(pool, iters):
    t0 = perf()
    for i in range(iters):
        assert pool.apply_async(f, (i,)).get() == i * i
    dt = perf() - t0
    return "us", [dt / iters * 1e6]


def start_once(ctx):
    t0 = perf()
    pool = ctx.Pool(2)
    assert pool.apply(f, (3,)) == 9
    t1 = perf()
    pool.terminate()
    pool.join()
    t2 = perf()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def start_rep(ctx, n):
    starts, shutdowns = zip(*(start_once(ctx) for _ in range(n)))
    return "ms", starts, {"shutdown": shutdowns}


def kill_once(ctx):
    pids = ctx.Queue()
    ex = cf.ProcessPoolExecutor(2, mp_context=ctx, initializer=init_pids, initargs=(pids,))
    try:
        futs = [ex.submit(sleeper, 30) for _ in range(2)]
        busy = [pids.get(timeout=10) for _ in futs]  # both workers are inside sleeper()
        t0 = perf()
        os.kill(busy[0], signal.SIGKILL)
        exc = futs[0].exception(timeout=10)
        dt = perf() - t0
        assert isinstance(exc, BrokenProcessPool), exc
    finally:
        # The broken executor kills the other worker and joins both.
        ex.shutdown(wait=True, cancel_futures=True)
        pids.close()
        pids.join_thread()
    return dt * 1e3


def stop_forkserver():
    """Stops and reaps the forkserver process, which would otherwise outlive the script."""
    from multiprocessing import forkserver
    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def main():
    scenario = positional(0, "map")
    ctx = mp.get_context(positional(1, "fork"))
    try:
        if scenario == "map":
            n, cs = env_int("N", 1_000_000), env_int("CHUNKSIZE", 0) or None
            pool_scenario(ctx, lambda pool: map_rep(pool, n, cs))
        elif scenario == "imap_unordered":
            n, cs = env_int("N", 100_000), env_int("CHUNKSIZE", 1)
            pool_scenario(ctx, lambda pool: imap_rep(pool, n, cs))
        elif scenario == "apply_async":
            iters = env_int("ITERS", 2000)
            pool_scenario(ctx, lambda pool: apply_rep(pool, iters))
        elif scenario == "start":
            n = env_int("N", 5)
            start_once(ctx)  # warm-up
            serve(lambda: start_rep(ctx, n))
        elif scenario == "worker_killed":
            n = env_int("N", 5)
            kill_once(ctx)  # warm-up
            serve(lambda: ("ms", [kill_once(ctx) for _ in range(n)]))
        else:
            say("error", f"unknown scenario {scenario!r}")
            sys.exit(2)
    finally:
        if ctx.get_start_method() == "forkserver":
            stop_forkserver()


if __name__ == "__main__":
    main()
