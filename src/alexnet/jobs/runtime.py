"""What the entry points set up for their process, explicitly: no module of the package does any of this when it
is imported. src/*.py call register_resolvers() before Hydra composes the config, and the Hydra task functions of
train.py and eval.py call quiet_known_warnings() (they also run in a launcher's worker processes)."""

from __future__ import annotations

import warnings

from omegaconf import OmegaConf

from alexnet.jobs.slurm import run_id


def register_resolvers() -> None:
    """`${alexnet.run_id:}`, which conf/hydra/default.yaml names the run directory with (slurm.run_id). Cached: the
    directory Hydra creates and the one the run writes to are the same."""
    OmegaConf.register_new_resolver("alexnet.run_id", run_id, use_cache=True, replace=True)


def quiet_known_warnings() -> None:
    """Warnings no user can act on. torch 2.13 deprecates LeafSpec, which Lightning 2.6 still builds on every step."""
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
