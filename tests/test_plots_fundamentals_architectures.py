"""Figures of chapters 1 and 3: readable at page width, labels clear of each other."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dlbook.experiments.fundamentals.cnn_ann_gap import gaps_by_size  # noqa: E402
from dlbook.plots import architectures as ap  # noqa: E402
from dlbook.plots import fundamentals as fp  # noqa: E402


def test_gap_figure_has_two_panels_and_marks_the_claim():
    rows = [
        {"size": size, "seed": seed, "model": model, "test_accuracy": 0.8 + 0.01 * seed + extra}
        for size in (16, 32, 64)
        for seed in (0, 1, 2)
        for model, extra in (("ANN", 0.0), ("CNN", 0.02))
    ]
    runs = pd.DataFrame(rows)
    fig = fp.plot_gap_by_size(runs, gaps_by_size(runs))
    assert len(fig.axes) == 2 and fig.get_figwidth() <= 8.5
    right = fig.axes[1]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["claimed 9", "no gap"]
    points = right.lines[0].get_xydata()  # the gaps: 2 points at every size, no spread
    np.testing.assert_allclose(points, [[16, 2.0], [32, 2.0], [64, 2.0]])


def test_cost_plot_labels_do_not_overlap_even_for_close_points():
    costs = pd.DataFrame(
        {"mflops": [10.0, 10.5, 11.0, 50.0], "latency_b1_ms": [1.0, 1.02, 1.05, 3.0]},
        index=["cnn", "resnet", "inception", "mobilenet"],
    )
    ax = ap.plot_cost_vs_latency(costs)
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(t.get_fontsize() >= 9 for t in ax.texts)


def test_accuracy_against_time_draws_one_line_per_run_and_the_equal_time_mark():
    curves = {
        ("ann", 0): ([0.7, 0.8], [1.0, 1.0]),
        ("ann", 1): ([0.6, 0.9], [1.0, 1.0]),
        ("cnn", 0): ([0.85, 0.9], [3.0, 3.0]),
    }
    ax = ap.plot_accuracy_vs_time(curves, 3.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["ann", "cnn", "equal time, 3 s"]
    assert np.isclose(ax.lines[-1].get_xdata()[0], 3.0)
