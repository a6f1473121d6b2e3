"""Write the resize-once store: python src/prepare.py data=imagenet data.root=PATH [workers=N] [stats_only=true]"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ALEXNET_ROOT", str(Path(__file__).resolve().parents[1]))

from alexnet.data.stats import STATS, describe, save_stats  # noqa: E402
from alexnet.errors import ConfigError, DataError  # noqa: E402
from alexnet.jobs.runtime import name_the_run  # noqa: E402
from alexnet.train.build import build_data  # noqa: E402


def prepare(cfg: DictConfig) -> None:
    datamodule = build_data(cfg)
    if not hasattr(datamodule, "prepare_store"):
        raise ConfigError(f"data: {type(datamodule).__name__} has no store to prepare; use data=imagenet|imagefolder")
    if cfg.stats_only:
        stats = datamodule.compute_stats(cfg.stats_sample)
        datamodule.store.mkdir(parents=True, exist_ok=True)
        save_stats(datamodule.store / STATS, stats)
        print(f"{datamodule.store / STATS}: {stats['source']}: {describe(stats)}")
        return
    manifest = datamodule.prepare_store(workers=cfg.workers, shard_size=cfg.shard_size)
    counts = ", ".join(f"{s} {v['images']} (skipped {len(v['skipped'])})" for s, v in manifest["splits"].items())
    print(f"store complete at {datamodule.store}: {counts}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    try:
        prepare(cfg)
    except (ConfigError, DataError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: the finished shards are kept; rerun the same command to resume")


if __name__ == "__main__":
    name_the_run()
    main()
