"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012), reproduced with Lightning and Hydra.

Wings, each named like the config group that feeds it: model/ (the net, LRN, towers), data/, config/ (the schema and
its checks), train/ (one run: pipeline, module, optimizer, callbacks, checkpoints, resume), jobs/ (sweeps, SLURM,
the process set-up), claims/ (reports and verdicts from the runs' files; claims/stats/ pure numpy and scipy). At the
root only the leaves every wing shares: errors, streams, the run record, atomic files and the pooling arithmetic.
Importing the package imports nothing else: `alexnet.AlexNet` and the other names below load on first use, so that
src/compare.py reads runs without torch."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "AlexNet": "alexnet.model.net",
    "LocalResponseNorm": "alexnet.model.lrn",
    "TwoTowerAlexNet": "alexnet.model.towers",
    "build_net": "alexnet.model.towers",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alexnet' has no attribute {name!r}")
