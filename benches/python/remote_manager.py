"""remote_call_roundtrip: a method call on a BaseManager proxy over TCP (loopback).

usage: python3 remote_manager.py [--serve]
env:   ITERS calls per repetition (default 2000), REPS (default 5, without --serve)
A manager server in a child process listens on 127.0.0.1; this process connects as a
remote client would (`BaseManager(address, authkey).connect()`), warms up with 1000
calls, and prints per repetition `samples us <mean call>` (common.py).
"""
import multiprocessing as mp
from multiprocessing.managers import BaseManager

from common import env_int, perf, serve

MSG = 12345678
AUTHKEY = b"bench"


class Echo:
    def echo(self, x):
        return x


class ServerManager(BaseManager):
    pass


class ClientManager(BaseManager):
    pass


ServerManager.register("Echo", callable=Echo)
ClientManager.register("Echo")


def main():
    server = ServerManager(address=("127.0.0.1", 0), authkey=AUTHKEY, ctx=mp.get_context("fork"))
    server.start()
    client = ClientManager(address=server.address, authkey=AUTHKEY)
    client.connect()
    echo = client.Echo()
    for _ in range(1000):
        echo.echo(MSG)
    iters = env_int("ITERS", 2000)

    def rep():
        t0 = perf()
        for _ in range(iters):
            echo.echo(MSG)
        dt = perf() - t0
        return "us", [dt / iters * 1e6]

    try:
        serve(rep)
    finally:
        del echo
        server.shutdown()


if __name__ == "__main__":
    main()
