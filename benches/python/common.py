"""Shared helpers for the reference scripts that `cargo bench --bench compare` drives.

Every script prints plain lines of space-separated words, no JSON. A result is zero or
more `NAME V1 V2 ...` lines (extra series, such as `start` for start() alone) ended by
one `samples UNIT V1 V2 ...` line. With `--serve` a script first sets up (child
processes, warm-up), prints `ready`, then answers each `rep` line on stdin with one
result, and cleans up at `quit` or end of input: compare.rs uses this to interleave
Python repetitions with its own in the same time window. A command it does not know
gets `error MESSAGE`. Without `--serve` it runs REPS repetitions (default 5) and exits,
for use by hand.
"""
import os
import sys
import time

perf = time.perf_counter


def env_int(name, default):
    return int(os.environ.get(name, default))


def emit(unit, samples, series=None):
    """Prints one result: a `NAME V...` line per extra series, then `samples UNIT V...`."""
    lines = [" ".join([name, *map(str, values)]) for name, values in (series or {}).items()]
    lines.append(" ".join(["samples", unit, *map(str, samples)]))
    # Flush at once: a forked child would otherwise write the buffered bytes again.
    print("\n".join(lines), flush=True)


def say(*words):
    """Prints one line of words (`ready`, `error ...`), flushed at once."""
    print(*words, flush=True)


def serve(rep):
    """Runs `rep()` once per `rep` command (`--serve`) or REPS times; prints each result.

    `rep()` returns `(unit, samples)` or `(unit, samples, {name: values})`.
    """
    try:
        _serve(rep)
    finally:
        stop_resource_tracker()


def stop_resource_tracker():
    """Stops and reaps the tracker that the spawn and forkserver methods start.

    Left running, it outlives the script and is reaped by whatever adopts it.
    """
    from multiprocessing import resource_tracker
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def _serve(rep):
    if "--serve" not in sys.argv[1:]:
        for _ in range(env_int("REPS", 5)):
            emit(*rep())
        return
    say("ready")
    while True:
        line = sys.stdin.readline()
        cmd = line.strip()
        if not line or cmd == "quit":
            return
        if cmd == "rep":
            emit(*rep())
        else:
            say("error", f"unknown command {cmd!r}")


def positional(index, default):
    """The index-th argument that is not an option."""
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    return args[index] if index < len(args) else default


def proc_status(pid, field):
    """A field of /proc/<pid>/status in KiB (VmRSS, RssAnon, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)
