"""Queue and Lock scenarios, as shared/bench/python/bench_queue.py and bench_lock.py.

usage: python3 queue_lock.py SCENARIO [fork|spawn|forkserver] [--serve]
env:   REPS (default 5, without --serve), and per scenario:
  queue            ITEMS (default 1e5) ints: a producer and a consumer process, fresh
                   each repetition, both waiting on an Event; the clock starts when the
                   parent sets it and stops at the consumer's perf_counter() after the
                   last item (CLOCK_MONOTONIC, shared by the processes). The producer
                   ends with a None. One repetition of warm-up.
                   `samples items/s <ITEMS / that time>`.
  joinable_queue   ITEMS: the same with a JoinableQueue: the consumer calls task_done()
                   per item (the None included), the producer ends with q.join(); the
                   clock stops at the later of the consumer's last item and the
                   producer's join() returning. items/s as queue.
  manager_lock     N pairs (default 10000): acquire() + release() of a Manager().Lock()
                   from the main process (the lock lives in the manager's server process:
                   two proxy round trips per pair). One manager for the run, warmed up
                   with 500 pairs. `samples pairs/s <N / time>`.
  mplock           N pairs (default 1e6): acquire() + release() of an mp.Lock() (a POSIX
                   semaphore in shared memory), uncontended, in the main process; a fresh
                   lock each repetition. pairs/s.
  mplock_contended N pairs per process (default 5e5): two processes, fresh each
                   repetition, wait on an Event, then each does N pairs on one mp.Lock()
                   and reports its perf_counter() before the first and after the last;
                   pairs/s = 2N / (last end - first start).
The start method (second argument, default fork) applies to every scenario. Result
lines as common.py describes.
"""
import multiprocessing as mp
import sys

from common import env_int, perf, positional, say, serve


# --- Queue (bench_queue.py, int items) ----------------------------------------------

def producer(q, go, n, joinable, res):
    go.wait()
    for _ in range(n):
        q.put(7)
    q.put(None)
    if joinable:
        q.join()
        res.put(("producer_joined", perf()))


def consumer(q, go, joinable, res):
    go.wait()
    count = 0
    while True:
        x = q.get()
        if joinable:
            q.task_done()
        if x is None:
            break
        count += 1
    res.put(("consumer_done", perf(), count))


def queue_rep(ctx, n, joinable):
    q = ctx.JoinableQueue() if joinable else ctx.Queue()
    go, res = ctx.Event(), ctx.SimpleQueue()
    ps = [ctx.Process(target=producer, args=(q, go, n, joinable, res)),
          ctx.Process(target=consumer, args=(q, go, joinable, res))]
    for p in ps:
        p.start()
    t0 = perf()
    go.set()
    got = [res.get() for _ in range(2 if joinable else 1)]
    for p in ps:
        p.join()
    cons = [g for g in got if g[0] == "consumer_done"][0]
    assert cons[2] == n, cons
    t_end = max(g[1] for g in got)
    return "items/s", [n / (t_end - t0)]


# --- Lock (bench_lock.py) -------------------------------------------------------------

def local_pairs(lock, n):
    acq, rel = lock.acquire, lock.release
    t0 = perf()
    for _ in range(n):
        acq()
        rel()
    return n / (perf() - t0)


def hammer(lock, n, go, res):
    go.wait()
    t0 = perf()
    for _ in range(n):
        lock.acquire()
        lock.release()
    res.put((t0, perf()))


def contended_rep(ctx, n):
    lock, go, res = ctx.Lock(), ctx.Event(), ctx.SimpleQueue()
    ps = [ctx.Process(target=hammer, args=(lock, n, go, res)) for _ in range(2)]
    for p in ps:
        p.start()
    go.set()
    spans = [res.get() for _ in range(2)]
    for p in ps:
        p.join()
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return "pairs/s", [2 * n / wall]


def main():
    scenario = positional(0, "queue")
    ctx = mp.get_context(positional(1, "fork"))
    if scenario in ("queue", "joinable_queue"):
        n, joinable = env_int("ITEMS", 100_000), scenario == "joinable_queue"
        queue_rep(ctx, n, joinable)  # warm-up
        serve(lambda: queue_rep(ctx, n, joinable))
    elif scenario == "manager_lock":
        n = env_int("N", 10_000)
        # The manager's server is joined when the block ends (end of input).
        with ctx.Manager() as m:
            ml = m.Lock()
            local_pairs(ml, 500)  # warm-up
            serve(lambda: ("pairs/s", [local_pairs(ml, n)]))
    elif scenario == "mplock":
        n = env_int("N", 1_000_000)
        local_pairs(ctx.Lock(), n)  # warm-up
        serve(lambda: ("pairs/s", [local_pairs(ctx.Lock(), n)]))
    elif scenario == "mplock_contended":
        n = env_int("N", 500_000)
        contended_rep(ctx, n)  # warm-up
        serve(lambda: contended_rep(ctx, n))
    else:
        say("error", f"unknown scenario {scenario!r}")
        sys.exit(2)


if __name__ == "__main__":
    main()
