"""The claims as experiments: configs whose arms differ only in what they ablate, sweeps with seeds,
offline W&B runs per job, the Fig. 1 callback, and src/compare.py's tables and verdicts."""

from __future__ import annotations

import json
import math
import os
import socket
import struct
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet.claims.curves import smoothed_crossing
from alexnet.claims.judge import claim_json, compare
from alexnet.claims.runs import Run, load_runs, read_curves
from alexnet.claims.verdict import VERDICTS
from alexnet.train.loggers import resolve_mode
from conftest import CONF, compose_train, data_overrides, evaluate_in_process

ABLATIONS = sorted(p.stem for p in (CONF / "experiment").glob("ablate_*.yaml"))
# what each experiment's arms change, and nothing else (dotted keys of the resolved config); ablate_lrn's third arm,
# the control, in ARM_CONTROLS
ARM_KEYS = {
    "ablate_lrn": {"model.lrn.mode"},
    "ablate_pooling": {"model.pooling"},
    "ablate_pooling_overfit": {"model.pooling"},
    "ablate_activation": {"model.activation"},
    "ablate_dropout": {"model.dropout"},
    "ablate_dropout_iterations": {"model.dropout"},
    "ablate_augmentation": {"data.augment.random_crop", "data.augment.flip"},
    "ablate_towers": {"model.towers"},
    "ablate_pca": {"data.augment.pca"},
}
ARM_CONTROLS = {"ablate_lrn": {"no_lrn": {"model.lrn.enabled"}}}  # arm -> what it changes against the reference
NEEDS_ILSVRC = {"ablate_pca", "paper"}


def test_every_claim_has_an_experiment() -> None:
    # or is judged on another experiment's runs (conf/claim/: runs_of), as the 10-crop and literal-LRN claims are
    assert set(ABLATIONS) == set(ARM_KEYS)
    assert {p.stem for p in (CONF / "claim").glob("*.yaml")} == {*ABLATIONS, "ablate_test_crops", "ablate_lrn_removed"}
    for name in ("paper", "baseline"):
        assert (CONF / "experiment" / f"{name}.yaml").is_file()


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def _flat(cfg, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", sorted(ARM_KEYS))
def test_arms_differ_only_in_what_they_ablate(name: str, tmp_path: Path) -> None:
    cfg = _compose(f"experiment={name}", hydra=True)
    arms = list(cfg.arms)
    reference, ablated = cfg.claim.reference, cfg.claim.ablated
    assert set(arms) == {reference, ablated, *ARM_CONTROLS.get(name, {})}
    assert cfg.arm == ablated  # `experiment=NAME` alone runs the ablated arm
    resolved = {}
    for arm in arms:
        c = compose_train([f"experiment={name}", f"arm={arm}"], tmp_path)
        flat = _flat(OmegaConf.to_container(c, resolve=True))
        resolved[arm] = {k: v for k, v in flat.items() if k not in ("arm", "logger.wandb.arm")}  # names only
    ref = resolved[reference]
    for arm, keys in {ablated: ARM_KEYS[name], **ARM_CONTROLS.get(name, {})}.items():
        assert {k for k in ref if ref[k] != resolved[arm].get(k)} == keys, arm


@pytest.mark.parametrize("name", [*ABLATIONS, "baseline"])
def test_each_sweep_lists_its_arms_and_at_least_three_seeds(name: str) -> None:
    cfg = _compose(f"experiment={name}", hydra=True)
    params, sweep = cfg.hydra.sweeper.params, OmegaConf.to_container(cfg.hydra.sweep)  # unresolved
    # Fig. 1's sweep is its tuning stage (two seeds); its comparison runs five (experiments/programme.sh)
    assert len(str(params.seed).split(",")) >= (2 if (cfg.get("claim") or {}).get("tuning_seeds") else 3)
    if cfg.get("arms"):
        assert str(params.arm).split(",") == list(cfg.arms)
    # the experiment too: two experiments swept into one directory never name a job alike
    assert all(f"${{{key}}}" in sweep["subdir"] for key in ("experiment_name", "arm", "seed"))
    assert "${experiment_name}" in sweep["dir"]
    assert cfg.experiment_name == name and cfg.logger.csv and cfg.logger.wandb


def test_claims_on_one_budget_never_share_seeds() -> None:
    # their reference arms are one configuration: on shared seeds they would be the same runs again, and one lucky
    # seed would move every claim's difference together (ablate_test_crops and ablate_lrn_removed are judged on
    # ablate_lrn's runs, by design)
    seen: dict[tuple[str, int], str] = {}
    for name in ABLATIONS:
        cfg = _compose(f"experiment={name}", hydra=True)
        if name in ("ablate_test_crops", "ablate_lrn_removed") or cfg.budget.name not in ("converged", "overfit"):
            continue
        for seed in str(cfg.hydra.sweeper.params.seed).split(","):
            key = (cfg.budget.name, int(seed))
            assert key not in seen, f"{name} and {seen.get(key)} both run seed {seed} on budget {key[0]}"
            seen[key] = name
    assert {b for b, _ in seen} == {"converged", "overfit"}


def _lrn_kind(module, datamodule) -> str:
    """off (the identity), constant (linear, not the identity) or normalise (not linear: it divides by the
    activity of neighbouring maps)."""
    x = torch.rand(1, module.net.conv1.out_channels, 5, 5) * 100
    lrn = module.net.lrn1
    if torch.equal(lrn(x), x):
        return "off"
    return "constant" if torch.allclose(lrn(3 * x), 3 * lrn(x)) else "normalise"


def _pools(module, datamodule) -> list[float]:
    return module.net.pool(torch.arange(25.0).view(1, 1, 5, 5)).flatten().tolist()


def _activation_at_minus_one(module, datamodule) -> float:
    return round(module.net.act(torch.tensor([-1.0])).item(), 4)


def _train_mode_is_random(module, datamodule) -> bool:
    net, x = module.net.train(), torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        return not torch.equal(net(x), net(x))


def _augments(module, datamodule) -> bool:
    transform, img = datamodule.train_transform(), torch.arange(1024).remainder(251).to(torch.uint8).view(1, 32, 32)
    return len({tuple(transform(img).flatten().tolist()) for _ in range(20)}) > 1


def _tower_b_reaches_tower_a_in_conv2(module, datamodule) -> bool:
    conv2 = module.net.conv2
    x = torch.rand(1, conv2.in_channels, 7, 7)
    y = x.clone()
    y[:, conv2.in_channels // 2 :] += 1.0
    with torch.no_grad():
        return not torch.equal(conv2(x)[:, : conv2.out_channels // 2], conv2(y)[:, : conv2.out_channels // 2])


# what each arm builds, probed on the built module and data module: the ablated component differs, as it should
PROBES = {
    "ablate_lrn": (_lrn_kind, {"lrn": "normalise", "constant": "constant", "no_lrn": "off"}),
    # pool_edges=cover: 3/2 pads a 5x5 map by one (-inf) and holds its last row and column; 2/2 on 5 drops them
    "ablate_pooling": (
        _pools,
        {"overlapping": [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0], "non_overlapping": [6.0, 8.0, 16.0, 18.0]},
    ),  # fmt: skip
    "ablate_pooling_overfit": (
        _pools,
        {"overlapping": [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0], "non_overlapping": [6.0, 8.0, 16.0, 18.0]},
    ),  # fmt: skip
    "ablate_activation": (_activation_at_minus_one, {"relu": 0.0, "tanh": round(math.tanh(-1.0), 4)}),
    "ablate_dropout": (_train_mode_is_random, {"dropout": True, "no_dropout": False}),
    "ablate_dropout_iterations": (_train_mode_is_random, {"dropout": True, "no_dropout": False}),
    "ablate_augmentation": (_augments, {"augmentation": True, "no_augmentation": False}),
    "ablate_towers": (_tower_b_reaches_tower_a_in_conv2, {"two": False, "one": True}),
}


@pytest.mark.parametrize("name", sorted(set(ABLATIONS) - NEEDS_ILSVRC))
def test_embedded_experiments_build_on_the_embedded_data(name: str, tmp_path: Path, fmnist_dir: Path) -> None:
    from alexnet.train.pipeline import build

    cfg = compose_train([*data_overrides(fmnist_dir), f"experiment={name}"], tmp_path)
    probe, expected = PROBES[name]
    assert set(expected) == set(cfg.arms)
    for arm, value in expected.items():
        torch.manual_seed(0)
        arm_cfg = compose_train([*data_overrides(fmnist_dir), f"experiment={name}", f"arm={arm}"], tmp_path / arm)
        module, datamodule, _, _ = build(arm_cfg)
        assert datamodule.channels == 1
        assert probe(module, datamodule) == value, arm


def test_the_activation_experiment_follows_figure_1(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=ablate_activation"], tmp_path)
    assert cfg.model.dropout == 0 and cfg.optimizer.weight_decay == 0  # no regularisation of any kind
    assert not cfg.data.augment.random_crop and not cfg.data.augment.flip
    assert cfg.callbacks.train_error_target.target[0] == 0.25  # the paper's target, then lower ones
    assert len(cfg.callbacks.train_error_target.target) >= 3
    assert cfg.claim.select_by == "optimizer.lr"
    params = _compose("experiment=ablate_activation", hydra=True).hydra.sweeper.params
    assert len(str(params["optimizer.lr"]).split(",")) >= 5
    # the rates are chosen on seeds that the comparison (seeds 1-5, experiments/programme.sh) never uses
    assert {int(s) for s in str(params.seed).split(",")} == set(cfg.claim.tuning_seeds)
    assert not set(cfg.claim.tuning_seeds) & {1, 2, 3, 4, 5}


def _output_spread(overrides: list[str], fmnist_dir: Path, tmp_path: Path) -> dict[str, float]:
    """Per arm of Fig. 1: how much the untrained net's outputs differ between images (std over a batch)."""
    from alexnet.train.pipeline import build

    spread = {}
    for arm in ("relu", "tanh"):
        torch.manual_seed(0)
        # the loader's float batches (augment_on=device would hand over uint8 images for the Trainer to transform)
        cfg = compose_train([*data_overrides(fmnist_dir), "experiment=ablate_activation", f"arm={arm}",
                             "data.augment_on=loader", *overrides], tmp_path / arm)  # fmt: skip
        module, datamodule, _, _ = build(cfg)
        datamodule.setup("fit")
        x = next(iter(datamodule.val_dataloader()))[0]
        with torch.no_grad():
            spread[arm] = module.net.eval()(x).std(0).mean().item()
    return spread


def test_both_figure_1_nets_start_where_they_can_learn(fmnist_dir: Path, tmp_path: Path) -> None:
    # the experiment's init (He's, each unit's own gain, pixels on [0, 1]): both nets tell images apart at init
    spread = _output_spread([], fmnist_dir, tmp_path / "kaiming")
    assert spread["tanh"] > 0.1 * spread["relu"] > 0, spread
    # the paper's init on raw pixels, set for ReLUs: the tanh net's outputs barely depend on the image, and such a
    # net stayed at chance for 5 epochs at every rate tried (experiments/archive/ablate_activation-paper-init)
    spread = _output_spread(["model.init=gain_matched", "data.pixel_max=255"], fmnist_dir, tmp_path / "paper")
    assert spread["tanh"] < 0.01 * spread["relu"], spread


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["experiment=ablate_lrn", "arm=lrm"], ["arm='lrm'", "lrn, constant, no_lrn"]),
        (["experiment=ablate_lrn", "data=synthetic"], ["budget=embedded", "budget=ilsvrc"]),
        (["experiment=ablate_pca", "data=fashion_mnist"], ["needs RGB images", "data=imagenet"]),
    ],
)
def test_an_experiment_names_a_wrong_arm_or_data_set(overrides: list[str], words: list[str], tmp_path: Path) -> None:
    from alexnet.train.pipeline import ConfigError, train

    with pytest.raises(ConfigError) as e:
        train(compose_train(overrides, tmp_path))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert not (tmp_path / "checkpoints").exists()  # stopped before training


def test_the_command_line_prints_the_message(tmp_path: Path, run_cli) -> None:
    proc = run_cli("train.py", "experiment=ablate_lrn", "arm=lrm", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0 and proc.stderr.strip().endswith("this experiment's arms are lrn, constant, no_lrn")


@pytest.mark.slow
def test_a_sweep_runs_several_jobs_at_once_with_the_gpu_launcher(tmp_path: Path, fmnist_dir: Path, run_cli) -> None:
    """hydra/launcher=gpu_jobs (joblib, one process per job) on the CPU: two jobs side by side, each with its own
    run directory and results, as the default launcher gives."""
    proc = run_cli(
        "train.py", "-m", "hydra/launcher=gpu_jobs", "hydra.launcher.n_jobs=2", *data_overrides(fmnist_dir),
        "debug=fast", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}", "data.augment_on=device", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    summaries = [json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text()) for i in (0, 1)]
    assert [s["seed"] for s in summaries] == [1, 2] and all(s["test"] for s in summaries)


def test_slurm_launcher_configs_compose() -> None:
    for launcher in ("submitit_slurm", "slurm_gpu"):
        cfg = _compose("experiment=ablate_lrn", f"hydra/launcher={launcher}", hydra=True)
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    cfg = _compose("hydra/launcher=slurm_gpu", hydra=True)
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.tasks_per_node == 1


# --- W&B: offline first, one run per job ---------------------------------------------------------


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


def wandb_records(path: Path) -> tuple[object, dict[str, str], int]:
    """The run record (name, group, job_type, ...), the logged config and the number of history rows of a
    W&B offline run file. The file is a LevelDB-style log of protobuf records, and wandb has no public
    reader: a 7-byte header, then 32 KiB blocks of chunks with a 7-byte header each (crc32, length, type:
    1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, pending = path.read_bytes(), 7, b""
    run, config, history = None, {}, 0
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            kind_of = record.WhichOneof("record_type")
            if kind_of == "run":
                run = record.run
            elif kind_of == "config":
                config.update({item.key: item.value_json for item in record.config.update})
            elif kind_of == "history":
                history += 1
    assert run is not None, f"{path}: no run record"
    return run, config, history


@pytest.fixture(scope="module")
def two_job_sweep(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path, run_cli) -> Path:
    """python src/train.py -m experiment=ablate_lrn on the generated data, one seed and two of its arms: two jobs,
    W&B offline (no key, a HOME without .netrc, and an unreachable W&B server: any network call would fail)."""
    sweep = tmp_path_factory.mktemp("sweep")
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), WANDB_BASE_URL="http://127.0.0.1:9")
    proc = run_cli(
        "train.py", "-m", "experiment=ablate_lrn", *data_overrides(fmnist_dir), "debug=fast",
        "logger=[csv,wandb]", "hydra.sweeper.params.seed=7", "arm=lrn,constant",
        "callbacks.train_eval_error.sample=64",
        "data.train_subset=300", "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
        env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


@pytest.mark.slow
def test_a_multirun_gives_each_job_its_own_offline_wandb_run(two_job_sweep: Path) -> None:
    jobs = sorted(p.name for p in two_job_sweep.iterdir() if p.is_dir())
    assert jobs == ["ablate_lrn_constant_seed7", "ablate_lrn_lrn_seed7"]
    ids = set()
    for job in jobs:
        files = list((two_job_sweep / job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, f"{job}: {files}"  # one run per job, in the job's own directory
        run, config, history = wandb_records(files[0])
        arm = job.removeprefix("ablate_lrn_").removesuffix("_seed7")
        mode = {"lrn": "normalise", "constant": "constant"}[arm]
        assert json.loads(config["arm"]) == arm and json.loads(config["model"])["lrn"]["mode"] == mode
        assert history > 0  # the metrics went to this run
        assert (run.run_group, run.job_type, run.display_name) == ("ablate_lrn", arm, f"{arm}-seed7")
        assert arm in run.tags and "ablate_lrn" in run.tags
        ids.add(run.run_id)
        assert run.run_id == (two_job_sweep / job / "wandb_run_id").read_text().strip()  # kept for a resume
        assert json.loads((two_job_sweep / job / "summary.json").read_text())["arm"] == arm
    assert len(ids) == 2


@pytest.mark.slow
def test_compare_writes_a_report_of_the_sweep(two_job_sweep: Path, tmp_path: Path, run_cli) -> None:
    proc = run_cli("compare.py", str(two_job_sweep), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| lrn | 1 |" in report and "| constant | 1 |" in report and "inconclusive" in report  # one seed each
    assert "bash experiments/programme.sh ablate_lrn" in report
    assert (tmp_path / "report" / "learning_curves.png").stat().st_size > 1000
    claim = json.loads((tmp_path / "report" / "claim.json").read_text())
    # top-5 of 10 classes says nothing, and the paper's top-5 size has no translation into a loss: test loss is
    # reported beside the verdict, not judged
    assert [c["metric"] for c in claim["comparisons"]] == ["test/top1_err"]
    assert [c["metric"] for c in claim["reported"]] == ["test/loss"] and claim["reported"][0]["verdict"] == "reported"
    assert claim["comparisons"][0]["reference"] and claim["comparisons"][0]["seeds"] == [7]  # per-seed values
    runs = {r.arm: r for r in load_runs([two_job_sweep])}
    delta = runs["constant"].summary["test"]["test/top1_err"] - runs["lrn"].summary["test"]["test/top1_err"]
    assert claim["comparisons"][0]["delta"] == pytest.approx(delta)


@pytest.mark.slow
def test_the_index_corrects_across_claims_and_a_claim_can_read_another_experiments_runs(
    two_job_sweep: Path, tmp_path: Path, run_cli
) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "README.md").write_text("# claims\n<!-- claims:start -->\n<!-- claims:end -->\nafter\n")
    proc = run_cli("compare.py", str(two_job_sweep), "--out", str(folder / "ablate_lrn"))
    assert proc.returncode == 0, proc.stderr
    # ablate_test_crops judged on ablate_lrn's reference arm, tested with 1 and 10 crops (and every view alone)
    proc = run_cli("compare.py", str(two_job_sweep), "--experiment", "ablate_test_crops", "--out",
                   str(folder / "ablate_test_crops"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    crops = (folder / "ablate_test_crops" / "report.md").read_text()
    assert "| 10 crops | 1 |" in crops and "| centre + mirror |" in crops and "| top_left_mirror |" in crops
    proc = run_cli("compare.py", "--index", str(folder))
    assert proc.returncode == 0, proc.stderr
    readme = (folder / "README.md").read_text()
    assert readme.count("| §") == 2 and readme.endswith("after\n")  # 2 claims x 1 judged metric, the rest kept
    assert (folder / "summary.png").stat().st_size > 1000
    claim = json.loads((folder / "ablate_lrn" / "claim.json").read_text())
    assert all("p_holm" in c and c["verdict"] in VERDICTS for c in claim["comparisons"])
    assert "verdict (Holm, whole table)" in (folder / "ablate_lrn" / "report.md").read_text()


def test_compare_refuses_a_folder_without_runs(tmp_path: Path, run_cli) -> None:
    proc = run_cli("compare.py", str(tmp_path))
    assert proc.returncode != 0 and "no finished runs" in proc.stderr


# --- the verdict rule -------------------------------------------------------------------------------


def _runs(arm: str, values: list[float], metric: str = "test/top1_err") -> list[Run]:
    return [Run(Path("."), {}, {"seed": i, "steps": 1000}, arm, {metric: v}) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    "paper, ref, abl, verdict",
    [
        # the paper: +1.4 points at 40.7% -> 3.3% of our ablated arm's error (~0.8 points at 23%)
        ({"delta": 0.014, "base": 0.407}, [0.20, 0.21, 0.205], [0.23, 0.24, 0.236], "reproduced"),
        ({"delta": 0.014, "base": 0.407}, [0.23, 0.24, 0.236], [0.20, 0.21, 0.205], "opposite"),
        # a tight interval around 0 that rules out the paper's size
        ({"delta": 0.014, "base": 0.407}, [0.20, 0.21, 0.22, 0.23], [0.2001, 0.2099, 0.2202, 0.2298], "excluded"),
        # a wide one that rules out neither
        ({"delta": 0.014, "base": 0.407}, [0.20, 0.24, 0.22], [0.21, 0.23, 0.235], "inconclusive"),
        ("+", [0.20, 0.21, 0.205], [0.23, 0.24, 0.236], "reproduced"),
        ("-", [0.20, 0.21, 0.205], [0.23, 0.24, 0.236], "opposite"),
        ("+", [0.20, 0.21, 0.22, 0.23], [0.2001, 0.2099, 0.2202, 0.2298], "inconclusive"),  # no size to exclude
        ({"direction": "+", "least": 0.01}, [0.20, 0.21, 0.22, 0.23], [0.2001, 0.2099, 0.2202, 0.2298], "excluded"),
        ({"delta": 0.014, "base": 0.407}, [0.20], [0.25], "inconclusive"),  # one run per arm: no interval
    ],
)
def test_the_verdict_rule(paper, ref, abl, verdict: str) -> None:
    c = compare("test/top1_err", paper, _runs("a", ref), _runs("b", abl))
    assert c.verdict == verdict
    assert c.delta == pytest.approx(sum(abl) / len(abl) - sum(ref) / len(ref))
    if verdict == "inconclusive" and len(ref) > 1:
        assert c.mde > abs(c.delta)  # what the runs could have seen, reported with the verdict


def test_paired_comparison_pairs_seeds() -> None:
    # a large seed-to-seed spread but a consistent within-seed difference: only pairing sees it
    ref, abl = [0.10, 0.20, 0.30], [0.11, 0.21, 0.31]
    assert compare("test/top1_err", 0.02, _runs("a", ref), _runs("b", abl), paired=True).verdict == "reproduced"
    assert compare("test/top1_err", 0.02, _runs("a", ref), _runs("b", abl), paired=False).verdict == "inconclusive"


def test_ratio_claims_compare_logs_and_count_a_miss_as_the_whole_run() -> None:
    ref = _runs("relu", [100, 110, 90], "steps_to_target")
    abl = _runs("tanh", [600, 650, float("inf")], "steps_to_target")  # the last never reached the target
    c = compare("steps_to_target", "x6", ref, abl, paired=False)
    assert c.verdict == "reproduced" and c.ablated == [600, 650, 1000]  # censored at the run's 1000 steps
    log_mean = lambda xs: sum(map(math.log, xs)) / len(xs)  # noqa: E731
    assert c.delta == pytest.approx(log_mean([600, 650, 1000]) - log_mean([100, 110, 90]))


def test_pairs_where_neither_run_reached_the_target_are_no_evidence() -> None:
    # both nets still above the target when their runs ended: each value is a bound, their ratio bounds nothing
    inf = float("inf")
    ref, abl = _runs("relu", [inf, 900, inf], "steps_to_target"), _runs("tanh", [inf, inf, inf], "steps_to_target")
    c = compare("steps_to_target", "x6", ref, abl)
    assert c.unreached == [0, 2] and c.reference == [900] and c.ablated == [1000]  # seed 1's pair kept, a bound
    assert "2 pairs where neither run reached it left out" in c.note
    nothing = compare("steps_to_target", "x6", _runs("relu", [inf, inf], "steps_to_target"),
                      _runs("tanh", [inf, inf], "steps_to_target"))  # fmt: skip
    assert nothing.verdict == "not reached" and nothing.reference == [] and math.isnan(nothing.p)
    # and so it stays in the table's family, which it does not enter (no p-value), beside a row that is tested
    tested = compare("test/top1_err", {"delta": 0.014, "base": 0.407}, _runs("a", [0.10, 0.20, 0.30]),
                     _runs("b", [0.11, 0.21, 0.31]))  # fmt: skip
    claim = claim_json("ablate_activation", {"text": "", "reference": "relu", "ablated": "tanh"}, [nothing, tested])
    rows = {r["metric"]: r for r in claim["comparisons"]}
    assert rows["steps_to_target"]["verdict"] == "not reached" and rows["test/top1_err"]["family_size"] == 2
    assert "not reached" in VERDICTS


def test_best_epoch_at_the_last_epoch_is_no_verdict() -> None:
    # val error still falling when the runs stopped: their best epoch is a lower bound, not a value
    ref = [Run(Path("."), {}, {"seed": i, "epochs": 8}, "dropout", {"best_epoch": 8}) for i in range(3)]
    abl = [
        Run(Path("."), {}, {"seed": i, "epochs": 8}, "no_dropout", {"best_epoch": e}) for i, e in enumerate((3, 4, 3))
    ]
    c = compare("best_epoch", "x0.5", ref, abl, paired=False)
    assert c.verdict == "inconclusive" and c.note.startswith("3 of 6 runs still improving")


def test_the_fastest_setting_is_picked_by_fewest_misses_first() -> None:
    from alexnet.claims.fig1 import select_setting

    def run(lr: float, steps: float) -> Run:
        cfg = {"optimizer": {"lr": lr}}
        return Run(Path("."), cfg, {"seed": 0, "steps": 600}, "tanh", {"steps_to_target": steps})

    runs = [run(0.1, 50), run(0.1, math.inf), run(0.01, 300), run(0.01, 320)]  # fast once, but a miss
    assert {r.setting("optimizer.lr") for r in select_setting(runs, "tanh", "optimizer.lr", "steps_to_target")} == {
        0.01
    }


# --- what the experiments measure, through real training runs (alexnet.train.pipeline.train) ------------


def _curve(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    return [(step, value) for _, step, value in read_curves(run_dir / "metrics.csv")[metric]]


@pytest.mark.slow
def test_fig1_callback_records_the_first_step_at_the_target_and_stops(train_here) -> None:
    _, run_dir = train_here(
        "experiment=ablate_activation", "arm=relu", "callbacks.train_error_target.window=3",
        "callbacks.train_error_target.target=0.5", "trainer.max_steps=60", "data.batch_size=32",
        "trainer.log_every_n_steps=1", "callbacks.progress_bar=null",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    reached = summary["steps_to_target"]
    assert reached is not None and summary["steps"] == reached < 60  # stopped there
    curve = _curve(run_dir, "train/top1_err_running")
    assert curve[-1][1] <= 0.5 and all(v > 0.5 for _, v in curve[2:-1])  # the first full window at the target
    # the report's smoothed crossing, read off the logged curve with the callback's own window, is the callback's
    # step: metrics.csv's steps are counted alike
    logged = read_curves(run_dir / "metrics.csv")["train/top1_err_running"]
    assert smoothed_crossing(logged, 3, 3, 0.5) == reached
    per_epoch = summary["train_images"]  # batches of 32, the last one of each epoch partial
    steps_per_epoch = -(-per_epoch // 32)
    assert summary["images_to_target"] == reached // steps_per_epoch * per_epoch + reached % steps_per_epoch * 32


def test_fig1_callback_reports_a_target_never_reached(train_here) -> None:
    _, run_dir = train_here(
        "experiment=ablate_activation", "arm=tanh", "callbacks.train_error_target.target=0.001",
        "trainer.max_steps=5", "data.batch_size=32", "callbacks.progress_bar=null",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps_to_target"] is None and summary["steps"] == 5
    assert math.isinf(load_runs([run_dir])[0].metrics["steps_to_target"])  # compare counts it as never


def test_test_crops_experiment_tests_the_same_weights_both_ways(train_here, tmp_path: Path) -> None:
    # one epoch: what is compared is one set of weights tested two ways, whatever training reached
    crops = [
        "data.test_crops=10",
        "also_test_crops=[1]",
        "callbacks.train_eval_error.sample=64",
        "trainer.max_epochs=1",
        "model.width=0.125",
        "model.fc_width=64",
    ]
    _, run_dir = train_here(*crops)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["test_by_crops"]) == {"10", "1"} and summary["test"] == summary["test_by_crops"]["10"]
    assert summary["test_crops"] == 10 and set(summary["train_eval"]) == {"top1_err", "top5_err"}
    evaluate_in_process([f"run_dir={run_dir}", "test_crops=1"], tmp_path / "eval")
    centre = json.loads((tmp_path / "eval" / "eval.json").read_text())["test"]
    assert centre["test/top1_err"] == pytest.approx(summary["test_by_crops"]["1"]["test/top1_err"])
    # loggers keep both: the second test is logged under its own name, not over the first
    logged = {m: v for m, points in read_curves(run_dir / "metrics.csv").items() for *_, v in points}
    assert logged["test/top1_err"] == pytest.approx(summary["test_by_crops"]["10"]["test/top1_err"])
    assert logged["test_1crop/top1_err"] == pytest.approx(summary["test_by_crops"]["1"]["test/top1_err"])


def test_every_accuracy_claim_trains_on_one_converged_recipe(tmp_path: Path) -> None:
    assert compose_train([], tmp_path).optimizer.lr == 0.02  # the embedded default's own recipe
    assert compose_train(["experiment=baseline"], tmp_path).optimizer.lr == 0.02  # that recipe, named
    # the converged budget: all 55,000 images, the default's rate to its plateau, then two fixed cuts, the last 3
    # epochs at lr/100 (conf/budget/converged.yaml says why)
    recipes = set()
    for name in ("ablate_lrn", "ablate_pooling", "ablate_towers"):  # and the claims judged on ablate_lrn's runs
        cfg = compose_train([f"experiment={name}"], tmp_path)
        assert cfg.budget.name == "converged" and cfg.data.train_subset is None, name
        recipes.add((cfg.optimizer.lr, cfg.trainer.max_epochs, tuple(cfg.scheduler.milestones)))
    assert len(recipes) == 1
    lr, epochs, milestones = recipes.pop()
    assert lr == 0.02 and epochs - milestones[-1] >= 3  # the convergence rule's 3 epochs all at the last rate
    # the overfitting budget departs (conf/budget/overfit.yaml): 0.01 fits 2,000 images too slowly to overfit
    assert compose_train(["experiment=ablate_dropout"], tmp_path).optimizer.lr == 0.02


def test_the_overfitting_budget_draws_its_images_per_seed_and_pairs_the_arms(tmp_path: Path, fmnist_dir: Path) -> None:
    from alexnet.train.build import build_data

    def drawn(seed: int, arm: str) -> list[int]:
        cfg = compose_train([*data_overrides(fmnist_dir), "experiment=ablate_dropout", f"arm={arm}", f"seed={seed}",
                             "data.train_subset=50"], tmp_path / f"{arm}{seed}")  # fmt: skip
        datamodule = build_data(cfg)
        datamodule.setup("fit")
        return list(datamodule.sources["train"].indices)

    assert drawn(1, "dropout") == drawn(1, "no_dropout")  # the arms of a seed see the same images
    assert drawn(1, "dropout") != drawn(2, "dropout")  # the seeds' spread includes which images were drawn
