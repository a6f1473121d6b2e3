"""What `src/train.py` and `src/eval.py` do, as functions of a composed Hydra config.

A training run: check the config -> lock its directory -> find an earlier start of the run there -> build the parts
-> check the checkpoint it continues -> fit -> test (at each crop count) -> record summary.json. Nothing of the run's
record (config.yaml, config_tree.log, hparams.yaml, Hydra's .hydra/, the pruned metrics.csv) is written before the
checkpoint it continues has been restored: a refused or failed start leaves the directory as it was."""

from __future__ import annotations

import errno
import json
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.data import ImageDataModule
from alexnet.errors import ConfigError, Interrupted, Requeued
from alexnet.files import write_json
from alexnet.record import RunRecord, fidelity_choices, git_commit, machine
from alexnet.train.build import build, build_data, check_arm, check_values, instantiate, tower_placement
from alexnet.train.callbacks import SummaryContributor, TrainEvalError
from alexnet.train.checkpoints import AtomicCheckpointIO, FollowMovedRun, load_checkpoint, rebuild
from alexnet.train.console import print_config_tree, print_metrics_table, to_float_dict
from alexnet.train.crop_tests import test_each_crop_count, test_title
from alexnet.train.loggers import finish_wandb
from alexnet.train.module import AlexNetModule
from alexnet.train.optim import RateSchedule
from alexnet.train.resume import check_checkpoint, existing_run, prune_metrics
from alexnet.train.rundir import (
    RunClock,
    RunLock,
    WhenRestored,
    discard_hydra_record,
    discard_stale_records,
    hydra_record_subdir,
    promote_hydra_record,
)

__all__ = ["ConfigError", "Interrupted", "build", "build_data", "evaluate", "train"]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, test and record one run (src/train.py); returns its summary.json."""
    check_arm(cfg)
    check_values(cfg)
    out = Path(cfg.paths.output_dir)
    staged = hydra_record_subdir()
    lock = RunLock(out) if rank_zero_only.rank == 0 else None  # data-parallel processes share their run directory
    try:
        if lock is not None:
            lock.acquire()
            discard_stale_records(out)  # left by a process killed during its start (rundir.py)
        summary = _train(cfg, out, staged)
    except OSError as e:
        finish_wandb(e)  # the W&B run marked failed; nothing W&B raises may replace what is raised here
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise Interrupted(
            f"{e.filename or out}: no space left on the device of {out} ({e.strerror}); the checkpoints written "
            f"before are kept whole. Free some space, then go on with: python src/train.py resume={out}"
        ) from e
    except BaseException as e:
        finish_wandb(e)  # the W&B run marked failed; nothing W&B raises may replace `e` (a requeue, a kill)
        raise
    finally:
        discard_hydra_record(out, staged)  # a run accepted has moved it into .hydra/ by now
        if lock is not None:
            lock.release()
    finish_wandb()  # every job of a multirun gets its own W&B run
    return summary


def _train(cfg: DictConfig, out: Path, staged: str | None) -> dict[str, Any]:
    started, provenance = time.time(), git_commit()  # the code as it was when the run started
    state = start_or_continue(cfg, out)
    if state == "finished":
        return finished_record(out)
    check_trains(cfg)
    out.mkdir(parents=True, exist_ok=True)
    print_config_tree(cfg)  # saved with the rest of the record, once the run is accepted (record_start)

    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, callbacks, placement = build(cfg)
    ckpt = cfg.get("ckpt_path")
    step = check_checkpoint(Path(ckpt), cfg, module, same_run=state == "resume" and cfg.train) if ckpt else 0
    if state == "resume":
        rank_zero_info(f"resuming {out} from {ckpt} (step {step})")
    # an entry without _target_ is an experiment's setting for a logger this run left out (e.g. logger=csv)
    loggers = [instantiate(f"logger.{k}", v) for k, v in (cfg.get("logger") or {}).items() if v and "_target_" in v]

    @rank_zero_only
    def record_start() -> None:
        """The run's record, once the state it continues is restored (or, without training, before its test)."""
        if state != "tested":  # the rows an interrupted start logged after its checkpoint: logged again now
            prune_metrics(out / "metrics.csv", step)
        print_config_tree(cfg, save_to=out / "config_tree.log", show=False)
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)
        for logger in loggers:  # the whole resolved config: W&B's run config, CSV's hparams.yaml
            logger.log_hyperparams(module.run_config)
        promote_hydra_record(out, staged)

    restored, clock = WhenRestored(record_start), RunClock(started)
    callbacks = [*callbacks, FollowMovedRun(), restored, clock]
    plugins = [*placement.pop("plugins", []), AtomicCheckpointIO()]
    trainer: L.Trainer = instantiate(
        "trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins, **placement
    )

    if cfg.train:
        fit(trainer, module, datamodule, ckpt, out)
    else:
        state = "tested"
    restored.run_once()  # a fit with nothing left to train (its loop skipped), or a test alone
    # read before the test: testing a checkpoint restores every callback's state from it (Lightning restores
    # callbacks in every stage), so a plateau schedule tested at its best epoch would report only the cuts before it,
    # and the clock would go back to that checkpoint's time
    fit_seconds, earlier, starts = clock.seconds(), clock.earlier, clock.starts
    trained = training_record(trainer)

    by_crops: dict[str, dict[str, float]] = {}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or (None if cfg.train else ckpt)
        by_crops = test_each_crop_count(
            trainer, module, datamodule, ckpt, cfg.get("also_test_crops", []), predictions_dir=out / "predictions"
        )

    train_eval: dict[str, float] = {}
    measuring = next((c for c in trainer.callbacks if isinstance(c, TrainEvalError)), None)
    if measuring is not None and trainer.is_global_zero:  # the weights just tested (callbacks.TrainEvalError)
        train_eval = measuring.measure(module, datamodule)

    record = record_run(cfg, trainer, module, datamodule, by_crops, train_eval, trained)
    record.git, record.machine = provenance, machine()
    record.fit_seconds, record.wall_seconds = round(fit_seconds, 1), round(earlier + time.time() - started, 1)
    # unknown for a test alone, and for a run resumed from a checkpoint saved before the clock was
    record.starts = starts if cfg.train and (state == "fresh" or clock.restored) else None
    if trainer.is_global_zero:
        record.write(out / "summary.json")
    return record.to_json()


def start_or_continue(cfg: DictConfig, out: Path) -> str:
    """What this start is in `out`: "fresh", "resume" (an earlier start's newest checkpoint, or the one given: sets
    cfg.ckpt_path) or "finished" (`out` holds this run, finished). Reads only (resume.existing_run)."""
    try:
        state, checkpoint = existing_run(cfg, out)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if state == "resume":
        with open_dict(cfg):
            cfg.ckpt_path = str(checkpoint)
    return state


def finished_record(out: Path) -> dict[str, Any]:
    """The summary.json of a finished run, left as it is (moved since, too: it records where the run was tested, and
    a sweep rerun from another checkout must not rewrite its finished jobs)."""
    rank_zero_info(f"{out} holds this run, finished: skipping it (summary.json)")
    return json.loads((out / "summary.json").read_text())


def check_trains(cfg: DictConfig) -> None:
    """A run that would train no batch tests its initial random weights and records them as if trained: refused."""
    if cfg.train and cfg.trainer.get("limit_train_batches") == 0:
        raise ConfigError(
            "trainer.limit_train_batches=0 trains no batch: the run would test its initial random weights and record "
            "them as a result. Give it batches to train (a count or a fraction > 0), or test a trained checkpoint: "
            "python src/eval.py ckpt_path=PATH"
        )
    if not cfg.train and not cfg.get("ckpt_path"):
        raise ConfigError(
            "train=false without ckpt_path=PATH (or resume=RUN_DIR) tests the initial random weights: name the "
            "checkpoint to test (python src/eval.py ckpt_path=PATH tests one without a run directory)"
        )


def fit(trainer: L.Trainer, module: AlexNetModule, datamodule: ImageDataModule, ckpt: str | None, out: Path) -> None:
    """trainer.fit; stopped from outside (SLURM's warning: Requeued; SIGTERM: Interrupted), naming how to resume."""
    with warnings.catch_warnings():  # OnExceptionCheckpoint makes Lightning look for a run to resume
        warnings.filterwarnings("ignore", r".*ckpt_path=None\)` was called without a model")
        warnings.filterwarnings("ignore", r".*there is no last checkpoint available")
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        except Requeued as e:  # jobs.sweeps.run_job asks SLURM for the requeue, after the loggers are closed
            resume = f"The requeued job resumes from it (or: python src/train.py resume={out})"
            raise Requeued(f"{e}. {resume}", e.job) from e
        except SIGTERMException as e:  # callbacks.SaveOnException has saved the state by now
            raise Interrupted(
                f"killed (SIGTERM) at step {trainer.global_step}; checkpoints/on_exception.ckpt holds the state. "
                f"Resume with: python src/train.py resume={out}"
            ) from e


def training_record(trainer: L.Trainer) -> dict[str, Any]:
    """What the callbacks know at the end of training: the schedule's cuts (None: no schedule) and what summary
    contributors add (e.g. the steps to a target training error, Fig. 1)."""
    scheduler = next((c for c in trainer.callbacks if isinstance(c, RateSchedule)), None)
    cuts = [e for e in scheduler.reduction_epochs if e < trainer.current_epoch] if scheduler else None
    extra: dict[str, Any] = {}
    for callback in trainer.callbacks:
        if isinstance(callback, SummaryContributor):
            extra.update(callback.summary())
    return {"cuts": cuts, "extra": extra}


def record_run(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: AlexNetModule,
    datamodule: ImageDataModule,
    by_crops: dict[str, dict[str, float]],
    train_eval: dict[str, float],
    trained: dict[str, Any],
) -> RunRecord:
    """What summary.json says about a run that has trained and been tested (provenance and times aside);
    `trained`: training_record, read before the test."""
    out = Path(cfg.paths.output_dir)
    history = module.val_history
    best_row = min(history, key=lambda r: r.get("val/top1_err", float("inf")), default={})
    cuts = trained["cuts"]
    last = out / "checkpoints" / "last.ckpt"
    return RunRecord(
        run_dir=str(out),
        experiment=cfg.get("experiment_name"),
        arm=cfg.get("arm"),
        seed=cfg.seed,
        parameters=sum(p.numel() for p in module.net.parameters()),
        lrn_alpha_convention=cfg.model.lrn.alpha_convention if cfg.model.lrn.enabled else None,
        choices=fidelity_choices(cfg),
        test_crops=datamodule.test_crops,
        train_images=len(datamodule.sources["train"]) if datamodule.sources else None,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        lr_reduction_epochs=cuts or [],
        lr_reductions=None if cuts is None else len(cuts),
        world_size=trainer.world_size,
        replicas_identical=module.replicas_identical,
        model_devices=OmegaConf.to_container(cfg.model, resolve=True).get("devices"),
        diverged_at_step=module.diverged_at,
        final_lr=trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
        best_epoch=best_row.get("epoch"),
        best_val={k: v for k, v in best_row.items() if k.startswith("val/")},
        final_val={k: v for k, v in (history[-1] if history else {}).items() if k.startswith("val/")},
        test=by_crops[next(iter(by_crops))] if by_crops else {},
        test_by_crops=by_crops,
        train_eval=train_eval,
        checkpoints={
            "best": getattr(trainer.checkpoint_callback, "best_model_path", "") or None,
            "last": str(last) if last.exists() else None,
        },
        extra=trained["extra"],
    )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild a finished run from the config saved in its checkpoint (or the data and model options eval.yaml
    chose instead) and test it on the trainer group's Trainer, its metrics to the logger group's loggers too
    (src/eval.py)."""
    ckpt_path, checkpoint, run_cfg = load_checkpoint(cfg)
    module, datamodule = rebuild(checkpoint, run_cfg)
    loggers = [instantiate(f"logger.{k}", v) for k, v in (cfg.get("logger") or {}).items() if v and "_target_" in v]
    placement = tower_placement(run_cfg.model.get("devices"), cfg.trainer.get("strategy", "auto"))
    trainer = instantiate("trainer", cfg.trainer, logger=loggers or False, enable_checkpointing=False, **placement)
    try:
        results = to_float_dict(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    except BaseException as e:
        finish_wandb(e)
        raise
    finish_wandb()
    tested = int(trainer.num_test_batches[0])
    limit = cfg.trainer.get("limit_test_batches")
    title = test_title(datamodule.test_crops, ckpt_path) + (f", {tested} batches" if limit is not None else "")
    print_metrics_table(title, results)
    report = {"checkpoint": str(ckpt_path), "test_crops": datamodule.test_crops, "test": results,
              "test_batches": tested, "limit_test_batches": limit, "data": run_cfg.data.get("_target_")}  # fmt: skip
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval.json", report)
    return report
