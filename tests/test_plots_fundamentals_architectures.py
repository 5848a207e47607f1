"""Figures of chapters 1 and 3: readable at page width, labels clear of each other."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dlbook.plots import architectures as ap  # noqa: E402
from dlbook.plots import fundamentals as fp  # noqa: E402


def test_gap_figure_has_two_panels_and_marks_the_claim():
    rows = [
        {"size": size, "seed": seed, "model": model, "test_accuracy": 0.8 + 0.01 * seed + extra}
        for size in (16, 32, 64)
        for seed in (0, 1, 2)
        for model, extra in (("ANN", 0.0), ("CNN", 0.02))
    ]
    gaps = pd.DataFrame({"size": [16, 32, 64], "cnn_minus_ann_points": [2.0, 3.0, 4.0],
                         "cnn_minus_ann_points_ci_low": [1.0, 2.0, 3.0],
                         "cnn_minus_ann_points_ci_high": [3.0, 4.0, 5.0]})  # fmt: skip
    fig = fp.plot_gap_by_size(pd.DataFrame(rows), gaps)
    assert len(fig.axes) == 2 and fig.get_figwidth() <= 8.5
    right = fig.axes[1]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["claimed 9", "no gap"]
    np.testing.assert_allclose(right.lines[0].get_xydata(), [[16, 2.0], [32, 3.0], [64, 4.0]])
    left_means = fig.axes[0].lines[0].get_ydata()  # the ANN's mean accuracy per size
    np.testing.assert_allclose(left_means, [0.81, 0.81, 0.81])


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
    timelines = {  # (seconds, accuracy, best so far) per epoch
        ("ann", 0): ([1.0, 2.0], [0.7, 0.8], [0.7, 0.8]),
        ("ann", 1): ([1.0, 2.0], [0.6, 0.9], [0.6, 0.9]),
        ("cnn", 0): ([3.0, 6.0], [0.9, 0.85], [0.9, 0.9]),
    }
    ax = ap.plot_accuracy_vs_time(timelines, 3.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["ann", "cnn", "equal time, 3 s"]
    assert np.isclose(ax.lines[-1].get_xdata()[0], 3.0)
