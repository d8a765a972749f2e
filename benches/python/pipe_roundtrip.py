"""call_roundtrip, call_roundtrip_1k: Pipe send/recv round trip with a child that echoes.

usage: python3 pipe_roundtrip.py [fork|spawn|forkserver] [--serve]
env:   ITERS round trips per repetition (default 2000), REPS (default 5, without --serve),
       SIZE bytes of payload (default 0: a small int; otherwise a bytes object of SIZE)
One child for the whole run, warmed up with 1000 round trips. Prints per repetition:
`samples us <mean round trip>` (common.py).
"""
import multiprocessing as mp

from common import env_int, perf, positional, serve

MSG = 12345678


def echo(conn):
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(x)


def main():
    ctx = mp.get_context(positional(0, "fork"))
    iters = env_int("ITERS", 2000)
    size = env_int("SIZE", 0)
    msg = bytes(size) if size else MSG
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    b.close()
    for _ in range(1000):
        a.send(msg)
        a.recv()

    def rep():
        t0 = perf()
        for _ in range(iters):
            a.send(msg)
            a.recv()
        dt = perf() - t0
        return "us", [dt / iters * 1e6]

    try:
        serve(rep)
    finally:
        a.send(None)
        p.join()


if __name__ == "__main__":
    main()
