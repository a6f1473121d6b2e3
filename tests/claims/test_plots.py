"""The reports' figures, drawn from the committed runs: each arm's mean with its band over seeds beside the seeds'
thin lines, and an error axis a reader can read (5%, 10%, 20%, not 2 × 10^1)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from alexnet.claims.plots import learning_curves, learning_curves_figure  # noqa: E402
from alexnet.claims.runs import load_runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "experiments" / "runs" / "ablate_dropout" / "programme"


def arms() -> dict:
    runs = load_runs([SWEEP])
    return {arm: [r for r in runs if r.arm == arm] for arm in ("dropout", "no_dropout")}


def test_each_arm_has_a_mean_line_with_its_band_beside_the_seeds_thin_lines(tmp_path: Path) -> None:
    by_arm = arms()
    seeds = len(by_arm["dropout"])  # the committed sweep's seeds: the pilot's and the plan's
    assert seeds == len(by_arm["no_dropout"]) >= 5
    fig, ax = learning_curves_figure(by_arm, "dropout")
    thick = [line for line in ax.lines if line.get_linewidth() > 1.5]
    thin = [line for line in ax.lines if line.get_linewidth() < 1.0]
    assert len(thick) == 4  # two arms x (validation, eval-mode training error)
    assert len(thin) == 4 * seeds  # and every seed's own curve
    assert len(ax.collections) == 4  # one band per mean line
    assert all(f"mean ± sd of {seeds} seeds" in line.get_label() for line in thick)
    # the mean line is the mean of the seeds' curves at each epoch
    val = [line for line in thin[:seeds]]
    mean = thick[0].get_ydata()
    assert abs(mean[-1] - sum(line.get_ydata()[-1] for line in val) / seeds) < 1e-9
    assert learning_curves(by_arm, tmp_path / "curves.png", "dropout").is_file()


def test_the_error_axis_is_labelled_in_plain_percentages() -> None:
    fig, ax = learning_curves_figure(arms(), "dropout")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(label.endswith("%") and "10^" not in label and "times" not in label for label in labels)
    assert "10%" in labels
