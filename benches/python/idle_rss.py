"""idle_rss: resident memory of idle multiprocessing children, and the parent's growth.

usage: python3 idle_rss.py [fork|spawn|forkserver]
env:   N idle children (default 20)
Starts one child and stops it (warm-up), reads the parent's VmRSS, starts N children
that each say "ready" and block on a Pipe, then reads VmRSS/RssAnon of the children
(/proc/<pid>/status) and of the parent. Prints one result (common.py):
child_anon <median child RssAnon>
parent_per_child <parent VmRSS growth / N>
n <N>
samples KiB <median child VmRSS>
"""
import multiprocessing as mp
import statistics
import time

from common import emit, env_int, positional, proc_status, stop_resource_tracker


def idle(conn):
    conn.send("ready")
    conn.recv()


def start(ctx):
    a, b = ctx.Pipe()
    p = ctx.Process(target=idle, args=(b,))
    p.start()
    b.close()
    a.recv()
    return p, a


def stop(p, conn):
    conn.send(None)
    p.join()


def main():
    ctx = mp.get_context(positional(0, "fork"))
    n = env_int("N", 20)
    stop(*start(ctx))
    before = proc_status("self", "VmRSS")
    children = [start(ctx) for _ in range(n)]
    time.sleep(0.2)
    after = proc_status("self", "VmRSS")
    rss = [proc_status(p.pid, "VmRSS") for p, _ in children]
    anon = [proc_status(p.pid, "RssAnon") for p, _ in children]
    for p, conn in children:
        stop(p, conn)
    emit("KiB", [statistics.median(rss)], {
        "child_anon": [statistics.median(anon)],
        "parent_per_child": [(after - before) / n],
        "n": [n],
    })
    stop_resource_tracker()


if __name__ == "__main__":
    main()
