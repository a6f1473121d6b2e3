"""Classify image files with a finished run: python src/predict.py IMAGE [IMAGE ...] run_dir=PATH [test_crops=1|10]
(or images=[IMAGE,...] as an override)

Each image is preprocessed exactly as the run's test images (the data module's own loading, its training-set
mean, the run's centre-crop or 10-crop setting) and the top classes are printed with their names."""

import os
import sys
from pathlib import Path

import hydra
import torch
from hydra._internal.utils import get_args_parser  # Hydra's own command line: its flags, and which take a value
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

os.environ.setdefault("ALEXNET_ROOT", str(Path(__file__).resolve().parents[1]))

from alexnet.config.command_line import command_line_problems  # noqa: E402
from alexnet.errors import ConfigError, DataError  # noqa: E402
from alexnet.files import write_json  # noqa: E402
from alexnet.jobs.runtime import name_the_run  # noqa: E402
from alexnet.train.checkpoints import data_state, load_checkpoint, rebuild  # noqa: E402


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Image paths apart from Hydra's arguments. Hydra's own parser reads the command line (so each flag takes its
    value as it does in Hydra); of the arguments it takes for overrides, one that names an existing file or has no
    '=' is an image. The rest go on to Hydra in their order, its flags first: with the images taken out, the
    overrides are one run of arguments, as Hydra's parser wants them."""
    parsed = get_args_parser().parse_intermixed_args(argv)  # a malformed command line: Hydra's own usage error
    values = {v for k, v in vars(parsed).items() if k != "overrides" and isinstance(v, str)}  # what the flags took
    positional = list(parsed.overrides)
    images, flags, overrides = [], [], []
    for i, arg in enumerate(argv):
        value_of_flag = i > 0 and argv[i - 1].startswith("-") and "=" not in argv[i - 1] and arg in values
        if positional and arg == positional[0] and not value_of_flag:
            positional.pop(0)
            (images if Path(arg).is_file() or "=" not in arg else overrides).append(arg)
        else:
            flags.append(arg)
    if positional:  # the arguments could not be matched to what Hydra's parser read: say so rather than guess
        sys.exit(f"error: cannot tell the images in {argv} apart from Hydra's arguments: name them with images=[...]")
    return images, flags + overrides


IMAGES: list[str] = []  # the positional arguments, taken out of sys.argv before Hydra parses it


def predict(cfg: DictConfig, images: list[str]) -> list[str]:
    """Print the top classes of every image; returns the images that could not be read."""
    if not images:
        raise ConfigError("no images: python src/predict.py IMAGE [IMAGE ...] run_dir=PATH")
    ckpt_path, checkpoint, run_cfg = load_checkpoint(cfg)
    module, datamodule = rebuild(checkpoint, run_cfg)
    state = data_state(checkpoint)
    if state:  # the training-set mean and class names, saved by the run
        datamodule.load_state_dict(state)
    else:  # a checkpoint from before they were saved: read the data set for them
        datamodule.setup("test")
    transform = datamodule.eval_transform(crops=datamodule.test_crops)
    module.eval()
    console, failed, results = Console(), [], {}
    view = "centre crop" if datamodule.test_crops == 1 else f"{datamodule.test_crops} crops, softmax averaged"
    for path in images:
        try:
            x = transform(datamodule.load_image(path)).unsqueeze(0)
        except DataError as e:  # names the file and why
            print(f"error: {e}", file=sys.stderr)
            failed.append(path)
            continue
        with torch.no_grad():
            probs = module.predict_proba(x)[0]
        top = probs.topk(min(cfg.top, len(probs)))
        table = Table(title=f"{path} ({view})")
        for column, justify in (("rank", "right"), ("class", "right"), ("name", "left"), ("probability", "right")):
            table.add_column(column, justify=justify)
        rows = [
            (int(i), datamodule.class_names[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)
        ]
        for rank, (i, name, p) in enumerate(rows, start=1):
            table.add_row(str(rank), str(i), name, f"{p:.4f}")
        console.print(table)
        results[path] = [{"class": i, "name": name, "probability": p} for i, name, p in rows]
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "predictions.json", {"checkpoint": str(ckpt_path), "view": view, "predictions": results})
    return failed


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    images = IMAGES + list(cfg.images)
    try:
        failed = predict(cfg, images)
    except (ConfigError, DataError) as e:
        sys.exit(f"error: {e}")
    if failed:
        sys.exit(f"error: {len(failed)} of {len(images)} images could not be read: {', '.join(failed)}")


if __name__ == "__main__":
    name_the_run()
    IMAGES, sys.argv[1:] = split_argv(sys.argv[1:])
    # a misspelt key (Hydra would say to add it with +), a run directory that cannot be written (a traceback)
    problems = command_line_problems(Path(__file__).resolve().parents[1] / "conf", "predict", sys.argv[1:])
    if problems:
        sys.exit("\n".join(f"error: {p}" for p in problems))
    main()
