"""Compare the arms of a sweep and judge the paper's claim: a table, a Markdown report and plots.

    python src/compare.py logs/train/multiruns/ablate_lrn/<time> [more sweep dirs] --out experiments/ablate_lrn
    python src/compare.py --index experiments      # Holm across every claim; the table in experiments/README.md
    python src/compare.py SWEEP --claim ablate_test_crops --out DIR   # a claim (conf/claim/) on these runs
    python src/compare.py TUNING_SWEEP --select    # Fig. 1: each arm's learning rate, chosen on the tuning seeds

Reads each run's config.yaml, summary.json and metrics.csv (no W&B needed). A job it leaves out (failed, not finished,
a file missing or damaged) is named on stderr and in the report; two runs of one arm and seed, or a folder it cannot
write to, stop it before any work with one line saying what to do.
A claim's report also goes to W&B, into the experiment's group beside its runs (--wandb: auto, offline first as
the runs are; online; disabled).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # python src/compare.py finds the package beside it
os.environ.setdefault("MPLBACKEND", "Agg")  # figures into files only: no display needed, none looked for

from alexnet.claims.fig1 import chosen_settings  # noqa: E402
from alexnet.claims.index import index  # noqa: E402
from alexnet.claims.report import report  # noqa: E402
from alexnet.claims.runs import read_sweeps  # noqa: E402
from alexnet.files import unwritable  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep directories of src/train.py -m")
    parser.add_argument("--out", type=Path, help="where report.md, claim.json and the plots go")
    parser.add_argument(
        "--index", type=Path, metavar="FOLDER", help="Holm-correct and rebuild FOLDER/README.md's table"
    )
    parser.add_argument("--claim", "--experiment", dest="claim",
                        help="judge the runs on this claim, conf/claim/NAME.yaml (e.g. ablate_test_crops)")  # fmt: skip
    parser.add_argument("--wandb", default="auto", choices=["auto", "offline", "online", "disabled"],
                        help="log the claim's report to W&B (auto: online only if the runs were; default)")  # fmt: skip
    parser.add_argument("--select", action="store_true",
                        help="print each arm's chosen setting (Fig. 1's learning rate) as ARM=VALUE lines")  # fmt: skip
    args = parser.parse_args()
    if args.index:
        try:
            return index(args.index)
        except ValueError as e:
            sys.exit(f"error: {e}")
        except OSError as e:
            sys.exit(f"error: cannot write {e.filename or args.index} ({e.strerror}): the claim table is rewritten in "
                     "place, so FOLDER must be writable")  # fmt: skip
    if not args.sweeps:
        parser.error("give one or more sweep directories, or --index FOLDER")
    missing = [str(s) for s in args.sweeps if not s.is_dir()]
    if missing:
        sys.exit(f"error: not a directory: {', '.join(missing)}")
    out = args.out or Path(os.getcwd()) / "report"
    if not args.select:
        check_writable(out, given=args.out is not None)
    try:
        if args.select:
            found = read_sweeps(args.sweeps)
            for job in found.left_out:
                print(f"warning: {job}", file=sys.stderr)
            runs = found.runs
            if not runs:
                sys.exit(f"error: no finished runs (summary.json) under {', '.join(map(str, args.sweeps))}")
            for arm, value in chosen_settings(runs, runs[0].cfg["claim"]).items():
                print(f"{arm}={value}")
            return
        report(args.sweeps, out, args.claim, wandb=args.wandb)
    except ValueError as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # the folder checked writable above, and then not (full, or changed meanwhile)
        sys.exit(f"error: cannot write {e.filename or out} ({e.strerror}): give --out DIR in a folder with room")


def check_writable(out: Path, given: bool) -> None:
    """Stop before reading any run if the report cannot be written into `out` (or the folder it would be made in):
    the analysis takes a while, and its end is the wrong place to learn it."""
    why = unwritable(out)
    if why:
        default = "" if given else " (the default: ./report)"
        sys.exit(
            f"error: cannot write the report into {out}{default}: {why}; give --out DIR, a folder you can write to"
        )


if __name__ == "__main__":
    main()
