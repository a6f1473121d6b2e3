"""Where the images of a class-folder data set are, and their labels, in every ILSVRC-2012 layout met in practice.

Labels are always indices into the sorted list of training class folders (WNIDs for ILSVRC), so a class has
the same index whichever way the validation set is laid out (docs/ilsvrc.md):
- class folders: `val/n01440764/*.JPEG` (after the common valprep.sh);
- the devkit: a flat `val/` plus `ILSVRC2012_validation_ground_truth.txt`, whose line i is the ILSVRC2012_ID
  of ILSVRC2012_val_{i:08d}; IDs are in `meta.mat`'s order, not sorted-WNID order, so they are mapped
  ID -> WNID -> index here (using the IDs as indices silently gives chance accuracy);
- Kaggle: a flat `val/` plus `LOC_val_solution.csv` (ImageId, PredictionString; its first token is the WNID).
Tiny ImageNet's `val/images/` with `val/val_annotations.txt` (file, WNID, box) is read too; images may sit in
subfolders of their class folder (Tiny ImageNet's train/<wnid>/images/).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.data.decode import is_image_name
from alexnet.errors import DataError

log = logging.getLogger(__name__)

Items = list[tuple[str, int]]  # (file path, label)
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META = "meta.mat"
KAGGLE_VAL = "LOC_val_solution.csv"
TINY_VAL = "val_annotations.txt"
SYNSET_LISTS = ("LOC_synset_mapping.txt", "synset_words.txt")  # "n01440764 tench, Tinca tinca" per line
# Kaggle's download keeps the images three folders down
SPLIT_PARENTS = (Path("."), Path("ILSVRC/Data/CLS-LOC"))
DEVKIT_DIRS = (Path("."), Path("ILSVRC2012_devkit_t12/data"), Path("ILSVRC2012_devkit_t12"), Path("devkit/data"))


@dataclass
class Tree:
    """A class-folder data set: its split folders, classes (sorted folder names) and their descriptions."""

    root: Path
    splits: dict[str, Path]
    classes: list[str]
    words: dict[str, str] = field(default_factory=dict)
    devkit_dirs: list[Path] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return [f"{c} {self.words[c]}" if self.words.get(c) else c for c in self.classes]


def find_split(root: Path, name: str) -> Path | None:
    for parent in SPLIT_PARENTS:
        if (root / parent / name).is_dir():
            return root / parent / name
    return None


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def count_classes(root: str | None) -> int | None:
    """The number of training class folders under `root`, or None if there are none to count."""
    train = find_split(Path(root), "train") if root else None
    return (len(class_folders(train)) or None) if train else None


def open_tree(root: str | Path, devkit_dir: str | None = None) -> Tree:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root={root}: no such folder. Point it at the folder holding train/ and val/")
    train = find_split(root, "train")
    if train is None:
        raise DataError(
            f"{root}: no train/ folder (looked for {', '.join(str(root / p / 'train') for p in SPLIT_PARENTS)}). "
            "data.root must hold train/<class>/*.JPEG and val/"
        )
    classes = class_folders(train)
    if not classes:
        raise DataError(f"{train}: no class folders; training images go in train/<class>/, e.g. train/n01440764/")
    splits = {"train": train}
    for name in ("val", "test"):
        if (folder := find_split(root, name)) is not None:
            splits[name] = folder
    dirs = [Path(devkit_dir)] if devkit_dir else []
    dirs += [root / d for d in DEVKIT_DIRS] + [train.parent]
    tree = Tree(root, splits, classes, devkit_dirs=list(dict.fromkeys(d for d in dirs if d.is_dir())))
    tree.words = read_words(tree)
    return tree


def find_file(tree: Tree, name: str) -> Path | None:
    return next((d / name for d in tree.devkit_dirs if (d / name).is_file()), None)


def read_synsets(meta: Path) -> list[tuple[int, str, str]]:
    """(ILSVRC2012_ID, WNID, words) of every synset in the devkit's meta.mat, in the devkit's order."""
    from scipy.io import loadmat  # only the devkit layout needs scipy

    try:
        synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
        return [(int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"])) for s in synsets.ravel()]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise DataError(f"{meta}: not the devkit's meta.mat (a struct array `synsets`): {e}") from e


def read_words(tree: Tree) -> dict[str, str]:
    """Class descriptions ("tench, Tinca tinca") from meta.mat or a synset list, where one is present."""
    if meta := find_file(tree, META):
        return {wnid: words for _, wnid, words in read_synsets(meta)}
    for name in SYNSET_LISTS:
        if path := find_file(tree, name):
            lines = (line.strip().split(" ", 1) for line in path.read_text().splitlines() if line.strip())
            return {parts[0]: parts[1] if len(parts) > 1 else "" for parts in lines}
    return {}


def list_class_folders(folder: Path, classes: list[str]) -> Items:
    index = {c: i for i, c in enumerate(classes)}
    loose = [p for p in folder.iterdir() if p.is_file() and is_image_name(p)]
    if loose:  # e.g. an interrupted valprep.sh: reading only the sorted part would quietly shrink the split
        raise DataError(
            f"{folder}: {len(loose)} images (e.g. {loose[0].name}) lie next to class folders; a split is either "
            "all class folders or all flat. Finish sorting them into class folders, or move them all back"
        )
    items: Items = []
    for name in class_folders(folder):
        if name not in index:
            raise DataError(
                f"{folder / name}: a class folder with no training class of that name; every class of "
                f"{folder.name}/ must also be a folder of train/"
            )
        files = sorted(p for p in (folder / name).rglob("*") if p.is_file() and is_image_name(p))
        items += [(str(p), index[name]) for p in files]
    return items


def label_flat_folder(tree: Tree, folder: Path) -> tuple[Items, str]:
    """Labels for a flat folder of images from the devkit's ground truth or Kaggle's CSV; and which it used."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p))
    index = {c: i for i, c in enumerate(tree.classes)}
    gt, meta, kaggle = find_file(tree, GROUND_TRUTH), find_file(tree, META), find_file(tree, KAGGLE_VAL)
    if (folder / TINY_VAL).is_file():
        lines = (line.split("\t") for line in (folder / TINY_VAL).read_text().splitlines() if line.strip())
        by_stem, source, key = {Path(f[0]).stem: f[1] for f in lines}, f"Tiny ImageNet ({folder / TINY_VAL})", _stem
    elif gt and meta:
        id_to_wnid = {sid: wnid for sid, wnid, _ in read_synsets(meta)}
        ids = [int(line) for line in gt.read_text().split()]
        by_stem, source = {}, f"devkit ({gt}, {meta})"
        for stem_number, sid in enumerate(ids, start=1):  # line i: ILSVRC2012_val_{i:08d}
            if sid not in id_to_wnid:
                raise DataError(f"{gt}: line {stem_number} has ILSVRC2012_ID {sid}, which {meta} does not list")
            by_stem[stem_number] = id_to_wnid[sid]
        key = _val_number
    elif kaggle:
        by_stem, source, key = read_kaggle_solution(kaggle), f"Kaggle ({kaggle})", _stem
    else:
        looked = ", ".join(str(d) for d in tree.devkit_dirs)
        raise DataError(
            f"{folder}: a flat folder of {len(files)} images, but no labels for it: looked for {GROUND_TRUTH} with "
            f"{META} (the devkit, ILSVRC2012_devkit_t12/data) or {KAGGLE_VAL} in {looked}. Put the devkit in "
            "data.root (or set data.devkit_dir), or sort the images into class folders"
        )
    items: Items = []
    for p in files:
        wnid = by_stem.get(key(p))
        if wnid is None:
            raise DataError(f"{p}: no label for this image in the {source} ground truth")
        if wnid not in index:
            raise DataError(f"{p}: labelled {wnid} by the {source} ground truth, but train/ has no folder {wnid}")
        items.append((str(p), index[wnid]))
    return items, source


def read_kaggle_solution(path: Path) -> dict[str, str]:
    """LOC_val_solution.csv: ImageId -> the WNID that starts its PredictionString ("n01751748 x y x y ...")."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of the header
        reader = csv.DictReader(f)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or []):
            raise DataError(f"{path}: expected the header ImageId,PredictionString, found {reader.fieldnames}")
        labels = {}
        for line, row in enumerate(reader, start=2):
            tokens = (row["PredictionString"] or "").split()
            if not tokens or not row["ImageId"]:
                raise DataError(f"{path}:{line}: no image id or no WNID in {row}")
            labels[row["ImageId"]] = tokens[0]
    return labels


def _stem(path: Path) -> str:
    return path.stem


def _val_number(path: Path) -> int | None:
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else None


def list_split(tree: Tree, split: str) -> Items:
    """(path, label) of every image of `split`, in a fixed order; class folders or a labelled flat folder."""
    folder = tree.splits[split]
    if split == "train" or class_folders(folder) and not (folder / TINY_VAL).is_file():
        items = list_class_folders(folder, tree.classes)
        log.info("%s: %d images in class folders", folder, len(items))
    else:
        items, source = label_flat_folder(tree, folder)
        log.info("%s: %d images labelled by the %s", folder, len(items), source)
    if not items:
        raise DataError(f"{folder}: no images (files named *.JPEG, *.jpg, *.png, ...)")
    return items


def labelled_splits(tree: Tree) -> list[str]:
    """train, val, and test where it has class folders of training classes: Kaggle's (flat) and Tiny ImageNet's
    (test/images/) test sets are unlabelled, so they are left out."""
    splits = ["train"]
    if "val" in tree.splits:
        splits.append("val")
    test = class_folders(tree.splits["test"]) if "test" in tree.splits else []
    if test and set(test) <= set(tree.classes):
        splits.append("test")
    return splits
