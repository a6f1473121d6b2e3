"""What a user of the Lightning + Hydra template expects, through the real `python src/train.py`: a multirun that
goes on past a failed job, job folders that never collide, ddp_spawn refused at the check, and the template's
conventions (hparams_search with Optuna, logger=tensorboard, debug=profiler|limit|fdr, trainer=ddp|ddp_sim,
extras; eval.py's trainer, logger, data and model groups, callbacks.early_stopping, conf/local/, a config composed
from Python, no advertisements in a run's output)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from alexnet.config.checks import check_config
from conftest import CONF, ROOT, data_overrides, write_fashion_mnist

# a narrower net than the default and a centre-crop test: what these runs check does not depend on the net
SMALL_NET = ["model.width=0.125", "model.fc_width=64", "data.test_crops=1"]
QUICK = ["debug=fast", "callbacks.train_eval_error.sample=64", *SMALL_NET]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """paths.data_dir holding the generated fashion-mnist/: unlike data.data_dir=..., an override every data
    config takes, so that one sweep can mix Fashion-MNIST and ILSVRC experiments."""
    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist(root / "fashion-mnist")
    return root


def _summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


# --- the four bugs -------------------------------------------------------------------------------------------------


def test_a_multirun_goes_on_past_a_failed_job_and_names_it_at_the_end(tmp_path: Path, data_dir: Path, run_cli):
    # ablate_pca first: it needs ILSVRC (data.root is not set) and fails its check; the sweep must still run baseline
    # (the jobs of other launchers, counted by their folders: tests/slurm)
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py", "-m", "experiment=ablate_pca,baseline", f"paths.data_dir={data_dir}", "data.val_size=100",
        *QUICK, f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    failed, done = sweep / "ablate_pca_no_pca_seed12345", sweep / "baseline_baseline_seed12345"
    assert _summary(done)["experiment"] == "baseline", proc.stderr[-3000:]  # the job after the failure ran
    assert proc.returncode == 1  # and the sweep still says it failed
    record = json.loads((failed / "failed.json").read_text())
    assert record["error"] == "ConfigError" and "data.root" in record["message"]
    assert "experiment=ablate_pca" in record["overrides"] and "data.root" in (failed / "error.txt").read_text()
    assert not (failed / "summary.json").exists()
    assert "job 0 failed" in (failed / "train.log").read_text()
    # the end of the output: how many failed, and which
    tail = proc.stderr.strip().splitlines()
    summary_at = next(i for i, line in enumerate(tail) if "jobs failed" in line)
    assert "1 of 2 jobs failed" in tail[summary_at] and str(failed) in tail[summary_at + 1]
    assert str(done) not in "\n".join(tail[summary_at:])


def test_a_failed_job_rerun_into_its_directory_drops_its_old_record(tmp_path: Path, data_dir: Path, run_cli) -> None:
    # the programme's way: the same sweep again after a fix (here: a bad value, then a good one) into one directory
    sweep = tmp_path / "sweep"
    common = ["-m", "experiment=baseline", "hydra.sweeper.params.seed=5", f"paths.data_dir={data_dir}",
              "data.val_size=100", *QUICK]  # fmt: skip
    first = run_cli("train.py", *common, "model.lrn.beta=-1", f"hydra.sweep.dir={sweep}")
    job = sweep / "baseline_baseline_seed5"
    assert first.returncode == 1 and "model.lrn.beta=-1" in json.loads((job / "failed.json").read_text())["message"]
    second = run_cli("train.py", *common, f"hydra.sweep.dir={sweep}")
    assert second.returncode == 0, second.stderr[-3000:]
    assert not (job / "failed.json").exists() and not (job / "error.txt").exists() and _summary(job)["steps"] == 3


def test_the_shared_base_of_the_ablations_is_not_an_experiment(run_cli) -> None:
    proc = run_cli("train.py", "experiment=ablation", "--cfg", "job")
    assert proc.returncode != 0
    options = proc.stderr.split("Available options in 'experiment':", 1)[1].split()
    assert "ablation" not in options and {"ablate_lrn", "ablate_pooling", "baseline", "paper"} <= set(options)


def test_two_experiments_swept_into_one_directory_get_a_job_folder_each(tmp_path: Path, fmnist_dir: Path, run_cli):
    # same arm (non_overlapping) and seed: job folders named by arm and seed alone are one folder, and the second
    # experiment's job found the first one's run there
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py", "-m", "experiment=ablate_pooling,ablate_pooling_overfit", *data_overrides(fmnist_dir), *QUICK,
        "data.train_subset=200", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("ablate_pooling", "ablate_pooling_overfit"):
        summary = _summary(sweep / f"{name}_non_overlapping_seed12345")
        assert (summary["experiment"], summary["arm"]) == (name, "non_overlapping")


def test_ddp_spawn_is_refused_at_the_check_naming_trainer_ddp(train_run) -> None:
    # Lightning would train in spawned processes; this one's data module is never set up (KeyError: 'train' when it
    # measures the training error) and its module never sees an epoch (a summary of 0 epochs)
    proc, run_dir = train_run("+trainer.strategy=ddp_spawn", "trainer.devices=2", *QUICK)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: trainer.strategy=ddp_spawn") and "trainer=ddp" in last and "ddp_sim" in last
    assert not (run_dir / "summary.json").exists() and not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(
    "strategy, refused",
    [
        ("ddp_spawn", True),
        ("ddp_fork", True),
        ("ddp_notebook_find_unused_parameters_true", True),
        ("{_target_: lightning.pytorch.strategies.DDPStrategy, start_method: spawn}", True),
        ("ddp", False),
        ("auto", False),
        ("{_target_: lightning.pytorch.strategies.DDPStrategy}", False),
    ],
)
def test_strategies_that_spawn_or_fork_are_refused(strategy: str, refused: bool, train_cfg) -> None:
    problems = [p for p in check_config(train_cfg(f"+trainer.strategy={strategy}")) if p.startswith("trainer.strat")]
    assert bool(problems) == refused
    assert not problems or "trainer=ddp" in problems[0]


# --- the template's conventions ------------------------------------------------------------------------------------


def test_an_optuna_search_minimises_the_optimized_metric_of_the_config(tmp_path: Path, fmnist_dir: Path, run_cli):
    # no -m (hparams_search sets the multirun mode); optimized_metric=val/loss rather than the default top-1 error
    sweep = tmp_path / "search"
    proc = run_cli(
        "train.py", "hparams_search=embedded_optuna", "hydra.sweeper.n_trials=2", "optimized_metric=val/loss",
        *data_overrides(fmnist_dir), "debug=fast", "callbacks.train_eval_error=null", "test=false",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = {}
    for job in ("0", "1"):
        config = yaml.safe_load((sweep / job / "config.yaml").read_text())
        lr, decay = config["optimizer"]["lr"], config["optimizer"]["weight_decay"]
        assert 0.002 <= lr <= 0.1 and 5e-5 <= decay <= 5e-3  # the search space of the config
        trials[(lr, decay)] = _summary(sweep / job)["best_val"]["val/loss"]
    assert len(trials) == 2  # two different trials
    best = min(trials, key=trials.get)
    assert results["best_value"] == pytest.approx(trials[best])
    assert (results["best_params"]["optimizer.lr"], results["best_params"]["optimizer.weight_decay"]) == best


def test_the_optimized_metric_must_be_one_a_run_records(train_cfg) -> None:
    assert not check_config(train_cfg("optimized_metric=test/top5_err"))
    assert check_config(train_cfg("optimized_metric=val/acc"))[0].startswith("optimized_metric='val/acc': allowed")
    assert "test=true" in check_config(train_cfg("optimized_metric=test/loss", "test=false"))[0]


def _event_tags(folder: Path) -> set[str]:
    """The scalar tags in TensorBoard event files: TFRecords (length, its CRC, an Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = Event()
            event.ParseFromString(data[i + 12 : i + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            i += 12 + length + 4
    return tags


def test_logger_tensorboard_writes_the_runs_curves(train_run) -> None:
    proc, run_dir = train_run("logger=tensorboard", *QUICK)  # the command line's logger wins over debug=fast's csv
    assert proc.returncode == 0, proc.stderr[-3000:]
    # fit and test in one event file: tensorboardX names files by the second, and a test's file opened in the second
    # fit's was opened in overwrote it (a debug=fast fit is that short)
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    tags = _event_tags(run_dir / "tensorboard")
    assert {"train/loss_step", "val/top1_err", "val/loss", "lr", "test/top1_err"} <= tags
    assert not (run_dir / "metrics.csv").exists()  # tensorboard instead of csv, not beside it


def test_debug_profiler_writes_the_time_of_each_stage(train_run) -> None:
    proc, run_dir = train_run("debug=profiler", "callbacks.train_eval_error.sample=64", *SMALL_NET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (run_dir / "fit-profile.txt").read_text()
    assert "FIT Profiler Report" in report and "run_training_epoch" in report and "run_training_batch" in report
    assert _summary(run_dir)["steps"] == 3  # debug=fast's few batches underneath


def test_debug_limit_runs_a_few_epochs_of_a_few_batches(train_run) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        limit = compose("train", overrides=["debug=limit"]).trainer
    # 500 images: 63 batches
    proc, run_dir = train_run("debug=limit", "data.batch_size=8", "callbacks.train_eval_error.sample=64", *SMALL_NET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = _summary(run_dir)
    assert summary["epochs"] == limit.max_epochs and summary["steps"] == limit.max_epochs * limit.limit_train_batches
    assert summary["test"]  # the loop's end too


def test_debug_fdr_runs_one_batch_of_each_stage(train_run) -> None:
    proc, run_dir = train_run("debug=fdr", "callbacks.train_eval_error.sample=64", *SMALL_NET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = _summary(run_dir)
    assert summary["steps"] == 1 and summary["best_val"] and summary["test"]
    assert not (run_dir / "checkpoints").exists()  # fast_dev_run writes none


def test_trainer_ddp_is_for_gpus_and_ddp_sim_simulates_it_on_cpu() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        ddp, sim = (compose("train", overrides=[f"trainer={t}"]).trainer for t in ("ddp", "ddp_sim"))
    assert (ddp.strategy, ddp.accelerator, sim.strategy, sim.accelerator) == ("ddp", "gpu", "ddp", "cpu")
    assert sim.devices == 2  # tests/model/test_towers.py trains with it: two processes, replicas identical


# 3 batches an epoch, a log every 50 steps: Lightning warns
WARNED, WARNING = "trainer.log_every_n_steps=50", "smaller than the logging interval"


def test_extras_print_the_config_and_keep_warnings_by_default(train_run) -> None:
    proc, run_dir = train_run(*QUICK, WARNED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CONFIG" in proc.stdout and WARNING in proc.stderr


def test_extras_can_silence_warnings_and_the_config_tree(train_run) -> None:
    proc, run_dir = train_run(
        *QUICK, WARNED, "extras.print_config=false", "extras.ignore_warnings=true", "extras.enforce_tags=true",
        "tags=[quiet]",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CONFIG" not in proc.stdout and WARNING not in proc.stderr
    assert "CONFIG" in (run_dir / "config_tree.log").read_text()  # still kept
    assert _summary(run_dir)["steps"] == 3


def test_extras_enforce_tags_refuses_an_untagged_run_where_nobody_can_type_them(train_run) -> None:
    proc, run_dir = train_run(*QUICK, "extras.enforce_tags=true")  # stdin of a subprocess: no terminal
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: extras.enforce_tags=true and this run has no tags")
    assert "tags=[" in proc.stderr and not (run_dir / "config.yaml").exists()


# --- the template's conventions (#31) ------------------------------------------------------------------------------


def test_eval_takes_the_trainer_logger_data_and_model_groups(fast_run, run_cli, tmp_path: Path, fmnist_dir: Path):
    _, run_dir = fast_run  # width 0.125, centre-crop test
    # a partial evaluation on the trainer group's Trainer, its metrics to the logger group's CSV logger too
    partial = run_cli("eval.py", f"run_dir={run_dir}", "trainer.limit_test_batches=2", "logger=csv",
                      f"hydra.run.dir={tmp_path}/partial")  # fmt: skip
    assert partial.returncode == 0, partial.stderr[-3000:]
    report = json.loads((tmp_path / "partial" / "eval.json").read_text())
    assert report["test_batches"] == 2 and report["limit_test_batches"] == 2 and report["test_crops"] == 1
    logged = (tmp_path / "partial" / "metrics.csv").read_text().splitlines()
    header, row = logged[0].split(","), dict(zip(logged[0].split(","), logged[1].split(","), strict=True))
    assert "test/top1_err" in header and float(row["test/top1_err"]) == report["test"]["test/top1_err"]
    # a data option replaces the run's data config whole (here: the same images, with ten crops)
    data = run_cli("eval.py", f"run_dir={run_dir}", "data=fashion_mnist", *data_overrides(fmnist_dir),
                   "data.test_crops=10", "trainer.limit_test_batches=1", f"hydra.run.dir={tmp_path}/data")  # fmt: skip
    assert data.returncode == 0, data.stderr[-3000:]
    assert json.loads((tmp_path / "data" / "eval.json").read_text())["test_crops"] == 10
    # a model option must fit the checkpoint's weights: the default net is twice as wide as the run's
    model = run_cli("eval.py", f"run_dir={run_dir}", "model=alexnet_mini", f"hydra.run.dir={tmp_path}/model")
    assert model.returncode == 1 and "the checkpoint's weights do not fit this net" in model.stderr
    wrong_data = run_cli("eval.py", f"run_dir={run_dir}", "data=synthetic", f"hydra.run.dir={tmp_path}/wrong")
    assert wrong_data.returncode == 1
    assert "error: data: the net takes num_classes=10, the data gives num_classes=1000" in wrong_data.stderr
    assert_no_advertisements(partial.stdout + partial.stderr + data.stdout + data.stderr)


def assert_no_advertisements(output: str) -> None:
    """No third-party advertisements in a run's output: Lightning 2.6 offers its paid services (litlogger, litmodels)
    as it builds a Trainer, marked `💡 Tip:` (jobs.runtime.hide_advertisements)."""
    assert "💡" not in output and "litlogger" not in output and "litmodels" not in output


def test_early_stopping_is_an_option_beside_the_plateau_stop(train_run) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train")
    assert cfg.callbacks.early_stopping.patience is None and cfg.scheduler.max_reductions  # off; the paper's stop on
    # a decrease of at least 1 (all the error there is) never comes: patience 0 ends the run at its second validation
    quick = [*QUICK, "trainer.max_epochs=4"]
    proc, run_dir = train_run(*quick, "callbacks.early_stopping.patience=0", "callbacks.early_stopping.min_delta=1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    summary = _summary(run_dir)
    assert summary["epochs"] == 2 and summary["early_stopped_epoch"] == 1
    assert "Monitored metric val/top1_err did not improve" in output
    assert_no_advertisements(output)
    refused, _ = train_run(*quick, "callbacks.early_stopping.patience=-1")
    assert refused.returncode == 1 and "callbacks.early_stopping.patience=-1" in refused.stderr


@pytest.mark.slow
def test_a_machines_own_settings_in_conf_local_apply_to_every_run_and_git_ignores_them(
    tmp_path: Path, fmnist_dir: Path
) -> None:
    # a copy of the entry points and the config (the checkout's own conf/local/ stays untouched): its
    # conf/local/default.yaml as a user writes it
    copy = tmp_path / "checkout"

    def left_out(folder: str, names: list[str]) -> set[str]:  # caches, and this checkout's own local settings
        local = Path(folder) == ROOT / "conf" / "local"
        return {n for n in names if n == "__pycache__" or local and n != "README.md"}

    for part in ("src", "conf"):
        shutil.copytree(ROOT / part, copy / part, ignore=left_out)
    (copy / "conf" / "local" / "default.yaml").write_text("# @package _global_\nseed: 4242\ntags: [this_machine]\n")
    run_dir = tmp_path / "run"
    command = [sys.executable, str(copy / "src" / "train.py"), *data_overrides(fmnist_dir), *QUICK,
               f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _summary(run_dir)["seed"] == 4242 and yaml.safe_load((run_dir / "config.yaml").read_text())["tags"] == [
        "this_machine"]  # fmt: skip
    ignored = subprocess.run(["git", "check-ignore", "-q", "conf/local/default.yaml"], cwd=ROOT)
    if ignored.returncode != 128:  # 128: not a git checkout (an unpacked archive)
        assert ignored.returncode == 0, "git does not ignore conf/local/default.yaml"
        assert subprocess.run(["git", "check-ignore", "-q", "conf/local/README.md"], cwd=ROOT).returncode == 1


def test_the_config_composes_and_resolves_from_python_without_an_entry_point(tmp_path: Path) -> None:
    # a fresh interpreter, as a notebook or another program: nothing of ours registered, no src/train.py run
    code = (
        "import json; from hydra import compose, initialize_config_dir; from hydra.utils import instantiate\n"
        f"with initialize_config_dir(config_dir={str(CONF)!r}, version_base='1.3'):\n"
        "    cfg = compose('train', overrides=['experiment=ablate_lrn'], return_hydra_config=True)\n"
        "net = instantiate(cfg.model)\n"
        "print(json.dumps([cfg.hydra.run.dir, cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir, type(net).__name__]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ALEXNET_RUN_ID"}
    run = [sys.executable, "-c", code]
    done = subprocess.run(run, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT / "src")}, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir, sweep_dir, subdir, net = json.loads(done.stdout.strip().splitlines()[-1])
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
    assert re.fullmatch(rf".*/logs/train/runs/{stamp}", run_dir), run_dir  # named by the time alone
    assert re.fullmatch(rf".*/logs/train/multiruns/ablate_lrn/{stamp}", sweep_dir), sweep_dir
    assert subdir == "ablate_lrn_constant_seed12345" and net == "AlexNet"  # the ablated arm, the default seed
    named = subprocess.run(run, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT / "src"), "ALEXNET_RUN_ID": "mine"},
                           capture_output=True, text=True)  # fmt: skip
    assert json.loads(named.stdout.strip().splitlines()[-1])[0].endswith("/logs/train/runs/mine")
