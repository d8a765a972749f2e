"""stream_1k / stream_1m: one-way send_bytes from a child, recv_bytes in the parent.

usage: python3 stream.py SIZE COUNT [fork|spawn|forkserver] [--serve]
env:   REPS (default 5, without --serve)
Each repetition starts a child over a fresh multiprocessing.Pipe(); the clock runs from
the parent's "go" to the last message received. Prints per repetition:
`samples MB/s <1e6 bytes per second>` (common.py).
"""
import multiprocessing as mp
import os

from common import perf, positional, serve


def source(conn, size, count):
    payload = os.urandom(size)
    conn.recv()  # go
    for _ in range(count):
        conn.send_bytes(payload)
    conn.recv()  # the parent has everything: exit


def main():
    size = int(positional(0, 1024))
    count = int(positional(1, 50000))
    ctx = mp.get_context(positional(2, "fork"))

    def once():
        a, b = ctx.Pipe()
        p = ctx.Process(target=source, args=(b, size, count))
        p.start()
        b.close()
        t0 = perf()
        a.send("go")
        for _ in range(count):
            a.recv_bytes()
        dt = perf() - t0
        a.send("done")
        p.join()
        assert p.exitcode == 0, p.exitcode
        return size * count / dt / 1e6

    once()  # warm-up

    def rep():
        return "MB/s", [once()]

    serve(rep)


if __name__ == "__main__":
    main()
