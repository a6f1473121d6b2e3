"""A small fork server for the fault tests: `python tests/faults/launcher.py` imports the heavy libraries the entry
points use (torch, Lightning, Hydra, ...; never the project's own package, which each command imports afresh from
the working tree), then reads one JSON command per line on stdin and forks a child per command. The child becomes
`python src/SCRIPT ARGS` in the command's directory and environment, with stdout and stderr in the command's files,
and exits as that interpreter would (sys.exit's message, an uncaught traceback, atexit handlers).

The server answers on stdout, one JSON line each: {"id": N, "pid": P} when the child has started (the tests send
signals to it) and {"id": N, "returncode": R} when it has ended. It ends when stdin closes and its children have."""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import sys
import time
import traceback

PRELOAD = (
    "numpy", "yaml", "PIL.Image", "rich.console", "torch", "lightning", "lightning.pytorch", "torchmetrics",
    "hydra", "hydra.main", "omegaconf", "scipy.stats", "matplotlib", "matplotlib.pyplot",
)  # fmt: skip


def become(command: dict) -> int:
    """In the forked child: run the script as __main__ and return its exit status."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, as in a fresh interpreter
    os.chdir(command["cwd"])
    os.environ.clear()
    os.environ.update(command["env"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for fd, path in ((1, command["stdout"]), (2, command["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    sys.stdin = open(0, closefd=False)
    script = command["script"]
    sys.argv = [script, *command["args"]]
    sys.path[0] = os.path.dirname(script)
    import runpy

    try:
        runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as e:
        if e.code is None:
            status = 0
        elif isinstance(e.code, int):
            status = e.code
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException:  # noqa: BLE001  (what the interpreter does with an uncaught exception)
        traceback.print_exc()
        status = 1
    try:
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return status


def send(message: dict) -> None:
    sys.__stdout__.write(json.dumps(message) + "\n")
    sys.__stdout__.flush()


def serve() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    import matplotlib

    matplotlib.use("Agg")
    send({"ready": os.getpid()})
    children: dict[int, int] = {}  # pid -> command id
    buffered, open_stdin = b"", True
    while open_stdin or children:
        if open_stdin:
            ready, _, _ = select.select([0], [], [], 0.05)
            if ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    open_stdin = False
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    command = json.loads(line)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        status = 1
                        try:
                            status = become(command)
                        finally:
                            os._exit(status)
                    children[pid] = command["id"]
                    send({"id": command["id"], "pid": pid})
        else:
            time.sleep(0.05)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            send({"id": children.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    serve()
