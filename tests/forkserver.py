"""The entry points (src/*.py) as real processes without paying torch + Lightning + Hydra's start-up for each one.

`python tests/forkserver.py` (the server) imports the third-party libraries the scripts use, once, then reads one
JSON command per line on stdin and forks a child per command. The child takes the command's working directory,
environment and argv, sends its stdout and stderr to the command's files, runs the script's file as `__main__` and
ends as `python src/SCRIPT ARGS` would, through the interpreter's own exit (sys.exit's message, an uncaught
traceback, threads joined, atexit handlers, the exit status). The project's own package is not preloaded: each child
imports it afresh from the script's folder (sys.path[0]), so that a test runs the code on disk, a copy of the checkout
included.

The server answers on stdout, one JSON line each: {"id": N, "pid": P} once the child has started (tests signal it)
and {"id": N, "returncode": R} once it has ended. Commands overlap; the server ends when stdin closes and its children
have. ForkServer, below, is its client: tests/conftest.py's run_cli and the fault tests' `entry` (tests/faults/).
What the preloaded libraries do at import time happens in the server, not in the child: tests of that start a fresh
interpreter (conftest.run_script, faultkit.fresh_interpreter).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

SERVER = Path(__file__).resolve()
ROOT = SERVER.parents[1]
SRC = ROOT / "src"

# third-party only: what the entry points import before their first line of work, the start-up the children share
PRELOAD = (
    "numpy", "yaml", "PIL.Image", "rich.console", "torch", "lightning", "lightning.pytorch", "torchmetrics",
    "hydra", "hydra.main", "omegaconf", "scipy.stats", "matplotlib", "matplotlib.pyplot",
)  # fmt: skip


# --- the server --------------------------------------------------------------------------------------------------


def become(command: dict) -> None:
    """In the forked child: take the command's directory, environment, argv and files, then run the script as
    `__main__`. The caller lets whatever the script raises, or its return, end the process as it ends an interpreter."""
    # a fresh interpreter's handlers, whatever the preloaded libraries set: KeyboardInterrupt, SIGPIPE ignored
    for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL),
                         (signal.SIGCHLD, signal.SIG_DFL), (signal.SIGPIPE, signal.SIG_IGN)):  # fmt: skip
        signal.signal(sig, handler)
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
    # new streams on the files (the server's wrap its pipe); line-buffered, so that a test reads output as it comes
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    sys.stdin = open(0, closefd=False)
    script = command["script"]
    sys.argv = [script, *command["args"]]
    sys.path[0] = os.path.dirname(script)  # what `python SCRIPT` puts first on the path
    runpy.run_path(script, run_name="__main__")


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve() -> dict | None:
    """Fork a child per command line as it arrives (several may run at once); answer as each starts and ends.
    Returns None once stdin has closed and the last child has ended; in a child, returns the child's command."""
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:  # not installed here: a script that needs it fails as it would without the server
            pass
    if "matplotlib" in sys.modules:  # src/compare.py's MPLBACKEND=Agg comes after this import: set it here
        sys.modules["matplotlib"].use("Agg")
    gc.freeze()  # the children's collections leave the preloaded objects alone: their pages stay shared
    send({"ready": os.getpid()})
    children: dict[int, int] = {}  # pid -> command id
    buffered, reading = b"", True
    while reading or children:
        if reading and select.select([0], [], [], 0.05)[0]:
            chunk = os.read(0, 1 << 16)
            reading, buffered = bool(chunk), buffered + chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                command = json.loads(line)
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    return command
                children[pid] = command["id"]
                send({"id": command["id"], "pid": pid})
        elif not reading:
            time.sleep(0.05)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            send({"id": children.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})
    return None


# --- the client --------------------------------------------------------------------------------------------------


class Finished(subprocess.CompletedProcess):
    """A command that has ended: its argv (as `python SCRIPT ARGS`), returncode, stdout and stderr."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Started:
    """A command running as a child of the server: its pid, signal(), wait()."""

    def __init__(self, client: ForkServer, server: subprocess.Popen, command: dict, pid: int) -> None:
        self.client, self.server, self.command, self.pid = client, server, command, pid
        self.args = [sys.executable, command["script"], *command["args"]]

    @property
    def returncode(self) -> int | None:
        """The child's exit status once the server has reported it, None until then."""
        return self.client.answer(self.command["id"], "returncode")

    def signal(self, sig: int) -> None:
        """Send `sig` to the child unless it is known to have ended."""
        with self.client.changed:
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)

    def wait(self, timeout: float = 600) -> Finished:
        """The command's end; past `timeout` seconds the child is killed and subprocess.TimeoutExpired raised."""
        in_time = self.client.wait_for(self.server, self.command["id"], "returncode", timeout)
        if not in_time:
            self.signal(signal.SIGKILL)
            self.client.wait_for(self.server, self.command["id"], "returncode", 30)
        out, err = (Path(self.command[k]).read_text(errors="replace") for k in ("stdout", "stderr"))
        if not in_time:
            raise subprocess.TimeoutExpired(self.args, timeout, out, err)
        if self.returncode is None:
            raise RuntimeError(f"tests/forkserver.py ended while running {self.args}")
        return Finished(self.args, self.returncode, out, err)


class ForkServer:
    """Client of the server: starts it at the first command (again if it has ended), sends commands, collects the
    answers. Safe to use from several threads, whose commands run side by side. `environment` makes the child's whole
    environment from a caller's `env` argument (run_cli's replaces this process's, the fault tests' adds to it)."""

    def __init__(self, environment: Callable[[dict[str, str] | None], dict[str, str]]) -> None:
        self.environment = environment
        self.changed = threading.Condition()  # guards what follows; notified at each answer and when a server ends
        self.answers: dict[tuple[int, str], int] = {}  # (command id, "pid" or "returncode") -> value
        self.ended: set[subprocess.Popen] = set()  # servers whose every answer has been read
        self.server: subprocess.Popen | None = None
        self.ids = itertools.count()
        self.scratch = tempfile.TemporaryDirectory(prefix="forkserver-")  # the children's stdout and stderr files

    def answer(self, command_id: int, kind: str) -> int | None:
        return self.answers.get((command_id, kind))

    def wait_for(self, server: subprocess.Popen, command_id: int, kind: str, timeout: float | None = None) -> bool:
        """Wait until the answer has come or `server` has ended; False if `timeout` seconds passed first."""
        with self.changed:
            return self.changed.wait_for(lambda: (command_id, kind) in self.answers or server in self.ended, timeout)

    def _read(self, server: subprocess.Popen) -> None:
        for line in server.stdout:
            message = json.loads(line)
            kind = "pid" if "pid" in message else "returncode"
            with self.changed:
                self.answers[(message["id"], kind)] = message[kind]
                self.changed.notify_all()
        with self.changed:  # nobody waits for an answer that cannot come
            self.ended.add(server)
            self.changed.notify_all()

    def _serving(self) -> subprocess.Popen:
        """The running server, started if there is none (the caller holds `changed`)."""
        if self.server is None or self.server in self.ended or self.server.poll() is not None:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.server = subprocess.Popen([sys.executable, str(SERVER)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True)  # fmt: skip
            ready = self.server.stdout.readline()
            if not ready.startswith('{"ready"'):
                raise RuntimeError(f"tests/forkserver.py did not start: {ready!r}")
            threading.Thread(target=self._read, args=(self.server,), daemon=True).start()
        return self.server

    def start(self, script: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> Started:
        """`python src/<script> ARGS` in `cwd` and the environment made from `env`; returns once it runs."""
        with self.changed:
            command_id = next(self.ids)
        files = Path(self.scratch.name) / str(command_id)
        command = {"id": command_id, "script": str(SRC / script), "args": [str(a) for a in args], "cwd": str(cwd),
                   "env": self.environment(env), "stdout": f"{files}.out", "stderr": f"{files}.err"}  # fmt: skip
        with self.changed:
            server = self._serving()
            server.stdin.write(json.dumps(command) + "\n")
            server.stdin.flush()
        self.wait_for(server, command_id, "pid")
        pid = self.answer(command_id, "pid")
        if pid is None:
            raise RuntimeError(f"tests/forkserver.py ended before starting {script} {' '.join(command['args'])}")
        return Started(self, server, command, pid)

    def run(
        self, script: str, *args: str, cwd: Path = ROOT, timeout: float = 600, env: dict[str, str] | None = None
    ) -> Finished:
        """start(...).wait(timeout): the command's end, with its output."""
        return self.start(script, *args, cwd=cwd, env=env).wait(timeout)

    def close(self) -> None:
        """Close the server's stdin; it ends once its children have."""
        if self.server is not None:
            self.server.stdin.close()
            self.server.wait(timeout=120)
        self.scratch.cleanup()


if __name__ == "__main__":
    command = serve()
    if command is not None:  # a forked child: the rest of its life is the script's, and the interpreter's exit
        become(command)
