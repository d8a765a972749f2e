"""spawn_join: start + join of a trivial multiprocessing.Process.

usage: python3 spawn_join.py [fork|spawn|forkserver] [--serve]
env:   N processes per repetition (default 20), REPS (default 5, without --serve)
Prints per repetition (common.py): `start <start() alone per process>...`, then
`samples ms <start+join per process>...`.
"""
import multiprocessing as mp

from common import env_int, perf, positional, serve


def noop():
    pass


def main():
    ctx = mp.get_context(positional(0, "fork"))
    n = env_int("N", 20)
    # Warm-up: the first spawn/forkserver process pays for imports and the server.
    for _ in range(3):
        p = ctx.Process(target=noop)
        p.start()
        p.join()

    def rep():
        totals, starts = [], []
        for _ in range(n):
            t0 = perf()
            p = ctx.Process(target=noop)
            p.start()
            t1 = perf()
            p.join()
            t2 = perf()
            assert p.exitcode == 0, p.exitcode
            starts.append((t1 - t0) * 1e3)
            totals.append((t2 - t0) * 1e3)
        return "ms", totals, {"start": starts}

    serve(rep)


if __name__ == "__main__":
    main()
