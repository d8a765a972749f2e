"""restart: SIGKILL the busy worker of a ProcessPoolExecutor; time until the caller learns.

usage: python3 restart.py [--serve]
env:   N kills per repetition (default 5), REPS (default 5, without --serve)
Python's executor does not replace the worker: the future fails with BrokenProcessPool
and the executor is unusable. That failure reaching the caller is what is timed, from
os.kill to future.exception() returning; a fresh executor per kill is set up untimed.
Prints per repetition: `samples ms <one per kill>...` (common.py).
"""
import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

from common import env_int, perf, serve

STARTED = None  # set in each worker by the initializer (fork context)


def init(event):
    global STARTED
    STARTED = event


def busy(seconds):
    STARTED.set()
    time.sleep(seconds)  # the task's work: it is killed long before it ends


def once(ctx):
    event = ctx.Event()
    ex = cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=init, initargs=(event,))
    fut = ex.submit(busy, 30)
    if not event.wait(10):
        raise RuntimeError("the worker never started the task")
    victim = list(ex._processes.keys())[0]  # private, but stable across 3.8-3.13
    t0 = perf()
    os.kill(victim, signal.SIGKILL)
    exc = fut.exception(timeout=10)
    dt = perf() - t0
    assert isinstance(exc, BrokenProcessPool), exc
    ex.shutdown(wait=True, cancel_futures=True)
    return dt * 1e3


def main():
    ctx = mp.get_context("fork")
    n = env_int("N", 5)
    once(ctx)  # warm-up
    serve(lambda: ("ms", [once(ctx) for _ in range(n)]))


if __name__ == "__main__":
    main()
