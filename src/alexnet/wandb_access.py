"""Whether W&B can log online from here: an API key, and a server that accepts a connection. Asked before a run (or a
claim's report) logs online, because wandb itself finds out late: without a key it stops with a UsageError traceback
or waits at a prompt; without a route to its server it retries for ~100 s, then ends in a CommError traceback.

The standard library only: training (train/loggers.py, train/build.py) and the claims' report (claims/wandb_report.py,
which loads neither torch nor Lightning) share it."""

from __future__ import annotations

import netrc
import os
import socket
from urllib.parse import urlparse

OFFLINE = "log offline with WANDB_MODE=offline and upload later with `wandb sync`"


def has_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def server() -> str:
    """The W&B server runs log to: WANDB_BASE_URL, else W&B's cloud."""
    return os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"


def server_reachable(timeout: float = 2.0) -> bool:
    """Whether the W&B server accepts a connection (a compute node may have credentials but no route out)."""
    url = urlparse(server())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "api.wandb.ai", port), timeout=timeout):
            return True
    except OSError:
        return False


def why_not_online(source: str, offline: str = OFFLINE) -> str | None:
    """Why W&B cannot log online here, as one message starting with `source` (what asked for online, e.g.
    "WANDB_MODE=online") and ending with what to do (`offline`); None where it can."""
    if not has_credentials():
        where = "neither WANDB_API_KEY nor ~/.netrc"
        return f"{source}: W&B has no API key here ({where}): run `wandb login` first, or {offline}"
    if not server_reachable():
        return f"{source}: the W&B server {server()} cannot be reached from this machine; {offline}"
    return None
