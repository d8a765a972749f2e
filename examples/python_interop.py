"""The CPython side of examples/python_interop.rs and tests/connection.rs.

usage: python3 python_interop.py client ADDRESS AUTHKEY
       python3 python_interop.py listener AUTHKEY

ADDRESS is "host:port" for TCP, or "@name" for a Linux abstract Unix socket.

client:   connects with multiprocessing.connection.Client, sends
          b"hello from CPython <version>", receives one message, sends it back
          reversed, and prints "received: <it>".
listener: listens on 127.0.0.1 (a free port), prints "port <n>", accepts one
          connection, receives one message, answers b"hello from CPython <version>",
          and prints "received: <it>".
A failed handshake prints "AuthenticationError: <message>" and exits with 3.
"""
import sys
from multiprocessing.connection import AuthenticationError, Client, Listener


def address(text):
    if text.startswith("@"):
        return "\0" + text[1:]
    host, port = text.rsplit(":", 1)
    return (host, int(port))


def greeting():
    return b"hello from CPython %d.%d" % sys.version_info[:2]


def main():
    mode = sys.argv[1]
    try:
        if mode == "client":
            with Client(address(sys.argv[2]), authkey=sys.argv[3].encode()) as conn:
                conn.send_bytes(greeting())
                got = conn.recv_bytes()
                conn.send_bytes(got[::-1])
        elif mode == "listener":
            with Listener(("127.0.0.1", 0), authkey=sys.argv[2].encode()) as listener:
                print("port", listener.address[1], flush=True)
                with listener.accept() as conn:
                    got = conn.recv_bytes()
                    conn.send_bytes(greeting())
        else:
            sys.exit("unknown mode " + mode)
    except AuthenticationError as e:
        print("AuthenticationError:", e, flush=True)
        sys.exit(3)
    print("received:", got.decode(), flush=True)


if __name__ == "__main__":
    main()
