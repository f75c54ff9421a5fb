"""The under-training warning: the rule on synthetic metrics.jsonl records, and where it shows (report.md, the
summary table's footnote, the bench tables)."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from openlt.reporting.bench_report import charts, markdown, method_colors
from openlt.reporting.convergence import NOT_CHECKED, UNDER_TRAINED, convergence, convergence_unchecked, convergence_warning
from openlt.reporting.html import _warnings
from openlt.reporting.run_report import report_markdown
from openlt.reporting.summary import summarize


def log(*overall, epochs=None, every=1):
    """metrics.jsonl records: validation overall top-1 `overall` on every `every`-th epoch of `epochs`."""
    epochs = epochs or len(overall) * every
    val = {every * (i + 1): v for i, v in enumerate(overall)}
    return [{"epoch": e, "train_loss": 1.0 / e, **({"val": {"overall": val[e], "many": None}} if e in val else {})}
            for e in range(1, epochs + 1)]


def test_rising_at_the_end_warns():
    check = convergence(log(0.30, 0.40, 0.45, 0.50, 0.53, 0.55, 0.58, 0.60, 0.62, 0.64, 0.66, 0.68))
    assert check["best_epoch"] == 12 and check["epochs"] == 12 and check["still_rising"]
    assert "under-trained" in check["warning"] and "12 of 12" in check["warning"]
    # the best epoch one before the last still counts (the last 10 % of 12 epochs: 11 and 12)
    late = convergence(log(0.30, 0.40, 0.45, 0.50, 0.53, 0.55, 0.58, 0.60, 0.62, 0.64, 0.70, 0.69))
    assert late["best_epoch"] == 11 and late["warning"]


def test_a_plateau_does_not_warn():
    check = convergence(log(0.30, 0.50, 0.60, 0.62, 0.62, 0.621, 0.62, 0.62, 0.622, 0.62, 0.621, 0.624))
    assert check["best_epoch"] == 12 and not check["still_rising"] and check["warning"] is None


def test_an_early_best_epoch_does_not_warn_even_if_the_last_evaluation_rises():
    check = convergence(log(0.30, 0.70, 0.60, 0.55, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.60))
    assert check["best_epoch"] == 2 and check["still_rising"] and check["warning"] is None


def test_a_large_late_gain_warns_although_the_schedule_flattened_the_end():
    """The 12-epoch joint model of the embedded benchmark (seed 0, configs/bench/fmnist_lt_convergence.yaml): its
    cosine schedule flattens the end, so the best epoch (8) is early and rule 1 stays silent, but the second half
    beat the first by 6.3 points of validation top-1."""
    curve = (0.156, 0.125, 0.294, 0.306, 0.369, 0.381, 0.412, 0.444, 0.419, 0.419, 0.425, 0.431)
    check = convergence(log(*curve))
    assert check["best_epoch"] == 8  # not in the last 10 %: rule 1 is silent
    assert check["late_gain"] == pytest.approx(0.444 - 0.381)
    assert "second half of its 12 epochs (44.4%) is 6.3 points above the first half's (38.1%)" in check["warning"]


def test_a_small_late_gain_does_not_warn():
    """A settled model gains a few points from the falling learning rate (the 48-epoch run's 3.1): no warning;
    exactly 5 points (8 of 160 validation images) is not more than 5."""
    first, second = [0.5, 0.6, 0.7, 0.75, 0.76, 0.77], [0.78, 0.79, 0.80, 0.801, 0.80, 0.80]
    check = convergence(log(*first, *second))
    assert check["late_gain"] == pytest.approx(0.031) and check["warning"] is None
    assert convergence(log(0.5, 0.6, 0.75, 0.8, 0.8, 0.8))["warning"] is None  # 0.8 - 0.75 = 0.05
    assert convergence(log(0.5, 0.6, 0.75, 0.8001, 0.8, 0.8))["warning"] is not None


def test_the_late_gain_needs_two_evaluations_in_each_half():
    check = convergence(log(0.3, 0.9, epochs=10, every=5))  # validated at 5 and 10 only
    assert check["late_gain"] is None


@pytest.mark.parametrize("records", [log(epochs=5), [], log(0.5)], ids=["no validation", "no log", "one evaluation"])
def test_no_validation_curve_no_warning(records):
    check = convergence(records)
    assert check["warning"] is None and not check["still_rising"]
    assert check["best_epoch"] == (1 if records and "val" in records[0] else None)


@pytest.mark.parametrize("records, reason", [
    (log(epochs=5), "no validation top-1 in the log of its 5 epochs"),
    (log(0.5), "1 evaluation of validation top-1 in 1 epoch: the late-gain rule needs 2 in each half"),
    (log(0.6, 0.5, 0.5), "3 evaluations of validation top-1 in 3 epochs"),
    (log(0.9, 0.3, epochs=10, every=5), "2 evaluations of validation top-1 in 10 epochs"),
], ids=["no validation", "one epoch", "three epochs", "validated twice"])
def test_a_curve_the_rules_cannot_judge_is_recorded_as_unchecked(records, reason):
    """No warning on a 1-epoch run is not a finished model: the check says it did not judge the curve, and the
    report says so (was silent: session 21)."""
    check = convergence(records)
    assert check["warning"] is None and reason in check["unchecked"]
    note = convergence_unchecked({**METRICS, "convergence": check})
    assert note.startswith("the under-training check was not made: ") and reason in note
    run = SimpleNamespace(path=Path("runs/r"), report_html_path=lambda tag=None: Path("runs/r/report.html"),
                          epochs_logged=lambda: [])
    assert f"Note: {note}." in report_markdown(run, {**METRICS, "convergence": check})
    assert f"Note: {note}." in _warnings({**METRICS, "convergence": check})  # report.html


def test_a_judged_curve_a_warning_or_nothing_trained_is_not_unchecked():
    judged = convergence(log(0.3, 0.5, 0.6, 0.62, 0.62, 0.62))
    assert judged["late_gain"] is not None and judged["unchecked"] is None
    assert convergence([])["unchecked"] is None  # NCM / tau-norm: no epoch logged, nothing trained to check
    stopped = convergence(log(0.5), planned_epochs=10)  # the stop warning says more than "too few evaluations"
    assert stopped["warning"] and stopped["unchecked"] is None
    assert convergence_unchecked(METRICS) is None  # an older metrics.json without the check


def test_a_log_cut_after_training_is_not_judged_as_a_shorter_run():
    """A log cut to 8 of the 12 epochs the last checkpoint records (was: "best validation epoch is 8 of 8 and still
    rising", the wrong epochs; the helper trial's leftover, session 21): not judged, and said why; a run stopped
    after 10 of its 20 whose log was cut to 8 is warned stopped after epoch 10."""
    rising = log(0.30, 0.40, 0.45, 0.50, 0.53, 0.55, 0.58, 0.60)
    check = convergence(rising, None, trained_epochs=12)
    assert check["warning"] is None and "stops at epoch 8, its last checkpoint records 12 trained" in check["unchecked"]
    assert "stopped after epoch 10 of its 20" in convergence(rising, 20, trained_epochs=10)["warning"]
    assert convergence(rising, None, trained_epochs=8)["warning"]  # the whole log: judged (still rising)
    ahead = convergence(rising, None, trained_epochs=7)  # a log past its checkpoint: edited, or another run's
    assert ahead["warning"] is None and "goes on to epoch 8, its last checkpoint records 7 trained" in ahead["unchecked"]
    gone = convergence([], 12, trained_epochs=12)  # metrics.jsonl deleted after training: not "stops at epoch 0"
    assert gone["warning"] is None and gone["unchecked"] == ("its epoch log (metrics.jsonl) is missing or empty, its "
                                                             "last checkpoint records 12 epochs trained")


def test_a_log_with_an_epoch_twice_or_out_of_order_is_not_judged():
    """Epoch 1's line appended after epoch 8 (was: read as the last evaluation, "still rising" flipped by it; helper
    trial, session 22): not judged, saying which epoch; the same for an epoch logged twice in a row."""
    rising = log(0.30, 0.40, 0.45, 0.50, 0.53, 0.55, 0.58, 0.60)
    for edited in (rising + rising[:1], rising[:4] + rising[3:]):
        check = convergence(edited, None, trained_epochs=8)
        assert check["warning"] is None and "lists epoch" in check["unchecked"] and "twice or out of order" in \
            check["unchecked"]


def test_validation_every_few_epochs():
    check = convergence(log(0.3, 0.58, 0.59, 0.6, epochs=20, every=5))  # validated at 5, 10, 15, 20
    assert check["best_epoch"] == 20 and check["epochs"] == 20 and check["warning"] and "still rising" in check["warning"]
    # best 20 of 25: not in 23-25; and the second half (15, 20) only 2 points above the first (5, 10)
    assert convergence(log(0.3, 0.58, 0.59, 0.6, epochs=25, every=5))["warning"] is None


METRICS = {"run": "runs/r", "checkpoint": "best", "epoch": 11, "class_names": ["a", "b"], "train_counts": [9, 3],
           "bands": {"rule": "many > 5, few < 4", "per_class": ["many", "few"]},
           "closed": {"many": 0.5, "medium": None, "few": 0.25, "overall": 0.4,
                      "n_classes": {"many": 1, "medium": 0, "few": 1}},
           "per_class_accuracy": [0.5, 0.25]}


def warned(metrics=METRICS):
    return {**metrics, "convergence": convergence(log(*(0.1 + 0.05 * e for e in range(12))))}


def test_the_warning_appears_in_report_md():
    run = SimpleNamespace(path=Path("runs/r"), report_html_path=lambda tag=None: Path("runs/r/report.html"),
                          epochs_logged=lambda: [])
    text = report_markdown(run, warned())
    assert convergence_warning(warned()) in text and "**Warning:**" in text
    assert "(epoch 12 of 12)" in text  # metrics.json's 0-based checkpoint epoch 11, as the console numbers it
    assert "under-trained" not in report_markdown(run, METRICS)


def test_summary_and_bench_mark_rows_that_may_be_under_trained():
    table = summarize({"plain": [warned(), METRICS], "crt": [METRICS]})
    assert "| plain † | 2 |" in table and "| crt | 1 |" in table
    assert table.splitlines()[-1].startswith("† may be under-trained: plain (1/2 runs: r)")
    assert "†" not in summarize({"crt": [METRICS]})
    spec = SimpleNamespace(name="b", seeds=[0], paper=None, methods=[], path="b.yaml")
    assert "| plain † |" in markdown(spec, {"plain": [warned()]})


def test_each_method_keeps_its_colour_in_every_bench_chart():
    groups = {"plain": [METRICS], "crt": [METRICS], "plain+energy": [METRICS]}
    variant = SimpleNamespace(name="plain+energy", eval_of="plain")
    spec = SimpleNamespace(methods=[SimpleNamespace(name="plain", eval_of=None),
                                    SimpleNamespace(name="crt", eval_of=None), variant])
    colors = method_colors(list(groups))
    assert len(set(colors.values())) == 3
    for _, fig in charts(spec, groups):  # the bands chart leaves plain+energy out: crt keeps its colour
        ax = fig.axes[0]
        for handle, text in zip(*ax.get_legend_handles_labels()):
            assert tuple(handle.patches[0].get_facecolor()[:3]) == pytest.approx(colors[text][:3])


def test_the_summary_footnote_names_the_warned_runs_and_does_not_say_rule_1_for_rule_2():
    """`openlt summary` of three seeds where one is warned by the late-gain rule alone (best epoch 8 of 10, not
    in the last 10 %): the footnote named no run and said 'the best validation epoch is in the last 10% of the
    epochs', false for this run."""
    late = convergence(log(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8))
    assert late["best_epoch"] == 8 and late["warning"] and "second half" in late["warning"]
    runs = [{**METRICS, "run": "runs/s0"}, {**METRICS, "run": "runs/s1", "convergence": late},
            {**METRICS, "run": "runs/s2"}]
    note = summarize({"plain": runs}).splitlines()[-1]
    assert note.startswith("† may be under-trained: plain (1/3 runs: s1)")
    assert "second half" in note  # both rules in words, not the first alone


@pytest.mark.parametrize("records", [log(0.3, 0.5, 0.5, 0.5, 0.5), log(epochs=5)], ids=["validated", "no validation"])
def test_a_run_stopped_before_its_epochs_warns(records):
    """A run killed after epoch 5 of its 20 (train.epochs) and evaluated: was no warning (a plateau, or no
    validation), or 'best validation epoch 5 of 5' for a rising one: the epochs it never trained were not counted."""
    check = convergence(records, planned_epochs=20)
    assert check["epochs"] == 5 and "stopped after epoch 5 of its 20" in check["warning"]
    assert convergence(records, planned_epochs=5)["warning"] is None  # finished
    assert convergence([], planned_epochs=20)["warning"] is None  # no log (a stage 2 that does not train)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "0.9"], ids=["NaN", "Infinity", "true", "text"])
def test_a_validation_value_that_is_not_a_finite_number_is_left_out(bad):
    """A hand-edited metrics.jsonl with `"overall": NaN` on epoch 1 (json reads it): was best epoch 1, the first
    value never beaten by a NaN comparison, and late_gain NaN; `true` counted as 100 %."""
    records = log(0.3, 0.4, 0.5, 0.55, 0.58, 0.6, 0.6, 0.6, 0.6, 0.6)
    records[0]["val"]["overall"] = bad
    check = convergence(records)
    assert check["best_epoch"] == 6 and check["late_gain"] == pytest.approx(0.02) and check["warning"] is None


def test_a_level_last_evaluation_is_not_still_rising():
    """Validation 61.25, 61.25, 61.25, 62.5, 62.5 over the last epochs of 40 (one image of 160 is 0.625 points):
    the last evaluation is level with the one before, so not "still rising" (was: warned, 62.5 against the mean
    61.7 of the three before; helper trial, session 22); one image up at the very end still is."""
    flat = [0.58 + 0.0008 * i for i in range(35)] + [0.6125, 0.6125, 0.6125, 0.625, 0.625]
    check = convergence(log(*flat))
    assert check["best_epoch"] == 39 and not check["still_rising"] and check["warning"] is None
    assert convergence(log(*flat[:-1], 0.6375))["still_rising"]


def test_a_report_says_both_the_runs_and_its_stage1s_finding():
    """A 1-epoch stage 2 (not judged) on a warned stage 1, and a warned stage 2 on a warned stage 1: the report's
    findings name both, own first (was: one of the two; helper trial, session 22); a table marks the warning."""
    from openlt.reporting.convergence import convergence_findings, convergence_unchecked, convergence_warning

    stage1 = {"run": "/runs/s1", "warning": UNDER_TRAINED + "its best is late"}
    for own in ({"warning": None, "unchecked": "1 evaluation"}, {"warning": UNDER_TRAINED + "rising", "unchecked": None}):
        metrics = {"convergence": {**own, "stage1": stage1}}
        found = convergence_findings(metrics)
        assert [kind for kind, _ in found] == (["note", "warning"] if own["unchecked"] else ["warning", "warning"])
        assert found[-1][1].startswith("the stage-1 run it starts from (/runs/s1) may be under-trained")
        assert convergence_warning(metrics) is not None and convergence_unchecked(metrics) is None
    unjudged = {"convergence": {"warning": None, "unchecked": None, "stage1": {"run": "/r", "unchecked": "no val"}}}
    assert convergence_findings(unjudged) == [("note", f"{NOT_CHECKED}on the stage-1 run it starts from (/r), whose "
                                                       "features this run is built on: no val")]
    assert convergence_findings({}) == [] and convergence_findings({"convergence": "garbage"}) == []
