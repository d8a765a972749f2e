"""call_throughput: pipelined Pipe sends to a child that counts them, then one answer.

usage: python3 pipe_throughput.py [fork|spawn|forkserver] [--serve]
env:   COUNT messages per repetition (default 10000), the last one answered;
       REPS (default 5, without --serve)
One child for the whole run, warmed up with one repetition. The parent sends COUNT - 1
small ints, then -1, and waits for the child's count (as an actor gets casts, then a
call). Prints per repetition: `samples msg/s <messages per second>` (common.py).
"""
import multiprocessing as mp

from common import env_int, perf, positional, serve


def sink(conn):
    n = 0
    while True:
        x = conn.recv()
        if x is None:
            return
        n += 1
        if x == -1:
            conn.send(n)


def main():
    ctx = mp.get_context(positional(0, "fork"))
    count = env_int("COUNT", 10000)
    a, b = ctx.Pipe()
    p = ctx.Process(target=sink, args=(b,))
    p.start()
    b.close()
    total = 0

    def batch():
        nonlocal total
        t0 = perf()
        for i in range(count - 1):
            a.send(i)
        a.send(-1)
        got = a.recv()
        dt = perf() - t0
        total += count
        if got != total:
            raise RuntimeError(f"the sink counted {got}, expected {total}")
        return dt

    batch()

    def rep():
        return "msg/s", [count / batch()]

    try:
        serve(rep)
    finally:
        a.send(None)
        p.join()


if __name__ == "__main__":
    main()
