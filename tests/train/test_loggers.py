"""W&B, offline unless configured and reachable."""

from __future__ import annotations

import socket

import pytest

from alexnet.train.loggers import resolve_mode


@pytest.mark.parametrize(
    "env, netrc, server, expected",
    [({}, False, True, "offline"), ({"WANDB_API_KEY": "x" * 40}, False, True, "online"),
     ({}, True, True, "online"), ({"WANDB_API_KEY": "x" * 40}, False, False, "offline"),
     ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "x" * 40}, False, True, "disabled")],
)  # fmt: skip
def test_wandb_is_offline_unless_configured_and_reachable(env, netrc, server, expected, tmp_path, monkeypatch) -> None:
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if netrc:
        (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
        (tmp_path / ".netrc").chmod(0o600)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with socket.socket() as listener:  # a stand-in W&B server that accepts connections, or none at all
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1] if server else 9
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        assert resolve_mode("auto") == expected
    assert resolve_mode("offline") == "offline"
