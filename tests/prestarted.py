"""The entry points (src/*.py) as real processes without paying torch + Lightning + Hydra's start-up for each one.

`python tests/prestarted.py` imports what the scripts import, once, then reads one JSON command per line on stdin
and forks a child per command: the child takes the command's working directory, environment and argv, sends its
stdout and stderr to the command's files and runs the script's file as `__main__`, as `python src/SCRIPT ARGS`
would. Its exit is the script's own (sys.exit's message, an uncaught traceback, status 1); the server answers each
command, by its id, with the child's exit status, one JSON line on stdout. Commands can overlap. Tests of argv,
exit codes and the messages of the entry points, sweeps and runs started side by side use it (conftest.run_cli);
tests of signals or of what happens at import time start a fresh interpreter (conftest.run_script).
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import select
import signal
import sys
import time

# what the entry points import before their first line of work: the start-up the children share
PRELOAD = (
    "alexnet.train.pipeline",
    "alexnet.data",
    "alexnet.train.resume",
    "alexnet.claims.judge",
    "alexnet.claims.plots",
    "hydra",
)


def run_child(command: dict) -> None:
    """In the forked child: become `python SCRIPT ARGS` in the command's directory and environment. Never returns
    normally: the script's SystemExit or exception ends this process as it would end the interpreter."""
    os.chdir(command["cwd"])
    os.environ.clear()
    os.environ.update(command["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, command["stdout"]), (2, command["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    script = command["script"]
    sys.argv = [script, *command["args"]]
    sys.path[0] = os.path.dirname(script)  # what `python SCRIPT` puts first on the path
    runpy.run_path(script, run_name="__main__")
    sys.exit(0)


def answer(command_id: int, status: int, timed_out: bool) -> None:
    print(json.dumps({"id": command_id, "returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out}),
          flush=True)  # fmt: skip


def serve() -> None:
    """Fork a child per command line as it arrives (several may run at once), answer each as its child ends; a
    child past its command's timeout is killed. Ends when stdin closes and the last child has ended."""
    for name in PRELOAD:
        __import__(name)
    gc.freeze()  # the children's collections leave the preloaded objects alone: their pages stay shared
    print(json.dumps({"ready": os.getpid()}), flush=True)
    pending, children, reading = b"", {}, True
    while reading or children:
        if reading and select.select([0], [], [], 0.02)[0]:
            data = os.read(0, 1 << 16)
            reading, pending = bool(data), pending + data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    run_child(command)
                children[pid] = (command["id"], time.monotonic() + command["timeout"])
        elif not reading:
            time.sleep(0.02)
        for pid, (command_id, deadline) in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                answer(command_id, os.waitpid(pid, 0)[1], True)
                del children[pid]
            elif done:
                answer(command_id, status, False)
                del children[pid]


if __name__ == "__main__":
    serve()
