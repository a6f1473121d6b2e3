"""The entry points (src/*.py) as real processes without paying torch + Lightning + Hydra's start-up for each one.

`python tests/prestarted.py` imports what the scripts import, once, then reads one JSON command per line on stdin
and forks a child per command: the child takes the command's working directory, environment and argv, sends its
stdout and stderr to the command's files and runs the script's file as `__main__`, as `python src/SCRIPT ARGS`
would. Its exit is the script's own (sys.exit's message, an uncaught traceback, status 1); the server answers each
command with the child's exit status, one JSON line on stdout. Tests of argv, exit codes and the messages of the
entry points use it (conftest.run_cli); tests of signals, several processes or the environment at import time start
a fresh interpreter (conftest.run_script).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time

# what the entry points import before their first line of work: the start-up the children share
PRELOAD = ("alexnet.pipeline", "alexnet.data", "alexnet.resume", "alexnet.report", "alexnet.plots", "hydra")


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


def wait(pid: int, timeout: float) -> tuple[int, bool]:
    """The child's exit status (negative: killed by that signal), and whether it ran past `timeout` (then killed)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), True
        time.sleep(0.02)


def serve() -> None:
    for name in PRELOAD:
        __import__(name)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(command)
        returncode, timed_out = wait(pid, command["timeout"])
        print(json.dumps({"returncode": returncode, "timed_out": timed_out}), flush=True)


if __name__ == "__main__":
    serve()
