"""Each figure draws from plain arrays, has its data on the axes, and renders to a PNG."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from openlt.metrics import ShotBands, rejection_curves, threshold_grid
from openlt.reporting import figures

PNG = b"\x89PNG"


def drawn(fig: Figure) -> Figure:
    assert isinstance(fig, Figure) and fig.axes
    assert figures.to_png(fig, dpi=40).startswith(PNG)
    return fig


def test_accuracy_vs_train_count_shades_the_three_bands_on_a_log_axis():
    counts = [500, 120, 60, 25, 10, 3]
    fig = drawn(figures.accuracy_vs_train_count(counts, [0.9, 0.8, None, 0.5, 0.2, 0.0], ShotBands(),
                                                [f"c{i}" for i in range(6)], [0.85, 0.7, None, 0.4, 0.1, 0.0]))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.patches) == 3  # many / medium / few spans
    assert {t.get_text() for t in ax.texts} >= {"many", "medium", "few", "c0"}


def test_confusion_matrix_labels_small_and_hides_names_of_large_class_sets():
    small = drawn(figures.confusion_matrix(np.eye(3, dtype=int) * 5, ["a", "b", "c"]))
    assert [t.get_text() for t in small.axes[0].get_xticklabels()] == ["a", "b", "c"]
    large = drawn(figures.confusion_matrix(np.eye(60, dtype=int), [str(i) for i in range(60)]))
    assert not large.axes[0].texts  # no per-cell numbers on a 60 x 60 matrix


def test_score_histograms_and_threshold_curves_with_and_without_open_images():
    rng = np.random.default_rng(0)
    known, unknown = rng.random(300), rng.random(100) * 0.5
    fig = drawn(figures.score_histograms(known, unknown, 0.3, "msp"))
    assert any("threshold" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    drawn(figures.score_histograms(known, None, None, "energy"))
    preds, labels = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    curves = rejection_curves(known, known_preds=preds, known_labels=labels, open_scores=unknown, thresholds=threshold_grid(known, unknown))
    fig = drawn(figures.threshold_curves(curves, 0.3, "msp"))
    assert len(fig.axes[0].lines) == 5  # 4 curves + the threshold
    drawn(figures.threshold_curves(rejection_curves(known, known_preds=preds, known_labels=labels, open_scores=None, thresholds=threshold_grid(known)), None, "msp"))


def test_reliability_diagram_names_each_band_ece():
    rng = np.random.default_rng(1)
    conf = rng.random(200)
    fig = drawn(figures.reliability_diagram(conf, rng.random(200) < conf, np.array(["many", "few"] * 100),
                                            {"overall": 0.05, "many": 0.02, "medium": None, "few": 0.1}))
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "many (ECE 2.0%)" in legend and "few (ECE 10.0%)" in legend and "medium" not in legend


def test_training_curves_from_the_metrics_log():
    history = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "lr": 0.1,
                "val": {"many": 0.5, "medium": 0.4, "few": None, "overall": 0.45}} for e in (1, 2, 3)]
    history.append({"epoch": 4, "train_loss": 0.2, "lr": 0.0})  # an epoch without validation
    assert len(drawn(figures.training_loss(history)).axes) == 2  # loss and its learning-rate twin
    labels = [t.get_text() for t in drawn(figures.validation_accuracy(history)).axes[0].get_legend().get_texts()]
    assert labels == ["train (running)", "val many", "val medium", "val overall", "best epoch 1"]  # no few: never measured
    ax = drawn(figures.validation_accuracy(history)).axes[0]  # epochs as the console numbers them: whole, from 1
    assert all(float(t).is_integer() for t in ax.get_xticks() if 1 <= t <= 4) and ax.get_xlabel() == "epoch"


@pytest.mark.parametrize("inclusive", [False, True])
def test_a_class_exactly_at_a_band_edge_is_drawn_inside_its_band(inclusive):
    bands = ShotBands(100, 20, inclusive)
    spans = figures._band_spans(bands, 1, 1000)
    for count in (20, 100):
        a, b = spans[bands.band(count)]
        assert a < count < b


def test_ranked_class_accuracy_draws_many_classes_with_a_box_per_band():
    rng = np.random.default_rng(2)
    counts = np.sort((1000 * rng.pareto(2.0, 3000) + 2).astype(int))[::-1]
    acc = [None if i % 97 == 0 else float(a) for i, a in enumerate(rng.random(3000))]
    fig = drawn(figures.ranked_class_accuracy(counts, acc, ShotBands(), [a if a is None else a / 2 for a in acc]))
    curve, boxes = fig.axes[0], fig.axes[1]
    assert len(curve.collections) == 3 and len(curve.lines) == 1  # a dot cloud per band, the moving mean
    assert [t.get_text() for t in boxes.get_xticklabels()] == ["many", "medium", "few"]
    assert "hollow: with rejection" in boxes.get_title()
    mean = curve.lines[0].get_ydata()
    assert np.nanmax(np.abs(mean - np.nanmean([np.nan if a is None else a for a in acc]))) < 0.25  # a mean, not noise


def test_moving_mean_skips_missing_values():
    values = np.array([1.0, np.nan, 3.0, 5.0, np.nan])
    np.testing.assert_allclose(figures._moving_mean(values, 3), [1.0, 2.0, 4.0, 4.0, 5.0])
    assert np.isnan(figures._moving_mean(np.array([np.nan, np.nan]), 1)).all()


def test_band_confusion_figure_annotates_each_row_with_a_share_and_a_count():
    summary = {"rows": ["many", "medium", "few", "open"], "columns": ["many", "medium", "few", "rejected"],
               "counts": [[8, 1, 0, 1], [2, 5, 1, 2], [1, 1, 2, 0], [0, 0, 0, 0]],
               "correct": {"many": 7, "medium": 4, "few": 2}}
    ax = drawn(figures.band_confusion(summary)).axes[0]
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == 12 and "80.0%\n8" in cells  # no text in the open row: it has no images
    assert [t.get_text() for t in ax.get_yticklabels()] == ["many (10, 7 right)", "medium (10, 4 right)",
                                                            "few (4, 2 right)", "open (0)"]


@pytest.mark.parametrize("name, shown", [
    ("猫", "\\u732b"),  # a glyph DejaVu Sans lacks: escaped, not a box and a "Glyph ... missing" warning
    ("x" * 200, "x" * 39 + "…"),  # cut: a 200-character name collapsed constrained layout
    ("图像-" + "y" * 60, "\\u56fe\\u50cf-" + "y" * 26 + "…"),
    ("é ü", "é ü"),  # drawable: as written
], ids=["cjk", "200-chars", "cjk-and-long", "accents"])
def test_class_names_are_escaped_and_cut_and_draw_without_warnings(name, shown):
    import warnings

    assert figures.label(name) == shown
    names = [name, "ant", "bee"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        matrix = drawn(figures.confusion_matrix(np.eye(3, dtype=int) * 5, names))
        scatter = drawn(figures.accuracy_vs_train_count([100, 10, 3], [0.5, 0.4, 0.3], ShotBands(), names))
    assert [str(w.message) for w in caught] == []
    assert matrix.axes[0].get_xticklabels()[0].get_text() == shown
    assert shown in {t.get_text() for t in scatter.axes[0].texts}


def test_the_best_epoch_line_of_a_late_gain_warning_does_not_say_still_rising():
    """Validation flat over the last 3 of 10 epochs after a large second-half gain: warned by the late-gain rule,
    not still rising; the legend said 'best epoch 8 (still rising)'."""
    history = [{"epoch": e, "train_acc": 0.5, "val": {"overall": v}}
               for e, v in enumerate((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8), start=1)]
    labels = [t.get_text() for t in drawn(figures.validation_accuracy(history)).axes[0].get_legend().get_texts()]
    assert labels[-1] == "best epoch 8 (may be under-trained)"
