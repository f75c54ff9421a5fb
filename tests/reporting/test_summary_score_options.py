"""`openlt summary` and the bench tables average evaluations of one open-set score only when its configured
options were the same (issue 14: `openlt eval RUN --score knn` with eval.knn_k=3 on one run and 40 on another were
one row): metrics.json "open_score" records them under the score's parameter names (:func:`score_options`); what
the score learnt or computed from the data (a ReAct threshold, ViM's alpha, the training features searched) may
differ from seed to seed."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from openlt.config import EvalConfig
from openlt.errors import RunDirError
from openlt.openset import SCORES, KNN, Energy, OpenMax, ReAct, ViM
from openlt.reporting.summary import SCORE_OPTION_KEYS, aggregate, score_options
from summary_files import cli, write  # tests/helpers, on the path through conftest


def metrics(run: str, open_score: dict) -> dict:
    """A metrics.json as `openlt eval RUN --score NAME` writes it (the parts the tables read), weights of its own."""
    return {"run": f"/work/runs/{run}", "checkpoint": "best",
            "checkpoint_sha256": hashlib.sha256(run.encode()).hexdigest(),
            "bands": {"rule": "many > 100, medium 20-100, few < 20"}, "class_names": ["ant", "bee", "cat"],
            "closed": {"many": 0.9, "medium": 0.5, "few": 0.2, "overall": 0.6},
            "open": {"f_measure": 0.5, "auroc": 0.7, "fpr95": 0.4}, "open_score": open_score,
            "calibration": {"score": open_score["name"], "threshold": -0.4,
                            "source": "validation: keeps 90% of the known validation images"}}


# score summary as the fitted score records it, the edit of another run, what the refusal names
DIFFERENT = {
    "knn-k": ({"name": "knn", "k": 3, "normalised": True, "n_train": 5000}, {"k": 40}, "eval.knn_k: 3 vs 40"),
    "vim-dim": ({"name": "vim", "dim": 64, "dim_used": 64, "alpha": 3.2}, {"dim": None}, "eval.vim_dim: 64 vs null"),
    "react-percentile": ({"name": "react", "percentile": 0.9, "then": "energy", "threshold": 1.7}, {"percentile": 0.5},
                         "eval.react_percentile: 0.9 vs 0.5"),
    "odin-temperature": ({"name": "odin", "temperature": 1000.0, "eps": 0.0014, "score": "max softmax"},
                         {"temperature": 1.0}, "eval.odin_temperature: 1000.0 vs 1.0"),
    "odin-eps": ({"name": "odin", "temperature": 1000.0, "eps": 0.0014}, {"eps": 0.0}, "eval.odin_eps: 0.0014 vs 0.0"),
    "openmax-tail": ({"name": "openmax", "tail_size": 20, "alpha": 3, "distance": "eucos", "num_classes": 3},
                     {"tail_size": 5}, "eval.openmax_tail: 20 vs 5"),
    "openmax-distance": ({"name": "openmax", "tail_size": 20, "alpha": 3, "distance": "eucos"},
                         {"distance": "cosine"}, "eval.openmax_distance: eucos vs cosine"),
    "openmax-alpha": ({"name": "openmax", "tail_size": 20, "alpha": 3, "distance": "eucos"}, {"alpha": 2},
                      "eval.openmax_alpha: 3 vs 2"),
    "energy-temperature": ({"name": "energy", "temperature": 1.0}, {"temperature": 2.0},
                           "open_score.temperature: 1.0 vs 2.0"),
}


def refused(args, capsys) -> str:
    code, out, err = cli(args, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("kind", DIFFERENT)
def test_one_score_under_different_options_is_refused_naming_the_option(kind, tmp_path, capsys):
    summary, edit, shown = DIFFERENT[kind]
    a = write(tmp_path, "s0", metrics("s0", summary))
    b = write(tmp_path, "s1", metrics("s1", {**summary, **edit}))
    err = refused([f"x={a}", f"x={b.parent}"], capsys)
    assert err.startswith(f"openlt summary: error: cannot average {a} and {b.parent} into one row 'x': they were "
                          f"evaluated with different options of the open-set score {summary['name']} ({shown}); give "
                          "them different labels (LABEL=RUN) or evaluate them alike"), err
    code, out, err = cli([f"a={a}", f"b={b}"], capsys)  # rows of their own: fine
    assert code == 0 and "| a | 1 |" in out and "| b | 1 |" in out, err


def test_the_knn_refusal_is_the_whole_line_with_the_command_that_evaluates_alike(tmp_path, capsys):
    a = write(tmp_path, "s0", metrics("s0", {"name": "knn", "k": 3, "normalised": True, "n_train": 5000}))
    b = write(tmp_path, "s1", metrics("s1", {"name": "knn", "k": 40, "normalised": True, "n_train": 5000}))
    assert refused([a, b], capsys) == (
        f"openlt summary: error: cannot average {a} and {b} into one row 'runs': they were evaluated with different "
        "options of the open-set score knn (eval.knn_k: 3 vs 40); give them different labels (LABEL=RUN) or evaluate "
        "them alike (`openlt eval RUN eval.open_score=knn eval.knn_k=3`)")
    with pytest.raises(RunDirError, match=r"cannot average s0 and s1 into one row 'knn'.*\(eval\.knn_k: 3 vs 40\)"):
        aggregate({"knn": [metrics("s0", {"name": "knn", "k": 3}), metrics("s1", {"name": "knn", "k": 40})]})


def test_several_options_are_all_named(tmp_path, capsys):
    om = {"name": "openmax", "tail_size": 20, "alpha": 3, "distance": "eucos"}
    a = write(tmp_path, "s0", metrics("s0", om))
    b = write(tmp_path, "s1", metrics("s1", {**om, "tail_size": 5, "distance": "cosine"}))
    assert refused([f"x={a}", f"x={b}"], capsys).endswith(
        "(eval.openmax_tail: 20 vs 5, eval.openmax_distance: eucos vs cosine); give them different labels (LABEL=RUN) "
        "or evaluate them alike (`openlt eval RUN eval.open_score=openmax eval.openmax_tail=20 "
        "eval.openmax_distance=eucos`)")


def test_what_the_score_learnt_from_the_data_may_differ(tmp_path, capsys):
    """Fitted values (ReAct's clipping threshold, ViM's alpha and dimension used, KNN's training features, OpenMax's
    step-tail classes, the Mahalanobis class count) and a threshold chosen on validation differ by seed."""
    pairs = [({"name": "react", "percentile": 0.9, "then": "energy", "threshold": 1.7}, {"threshold": 2.3}),
             ({"name": "vim", "dim": None, "dim_used": 64, "alpha": 3.2}, {"dim_used": 32, "alpha": 4.1}),
             ({"name": "knn", "k": 50, "normalised": True, "n_train": 5000}, {"n_train": 4990}),
             ({"name": "openmax", "tail_size": 20, "alpha": 3, "distance": "eucos", "classes_with_step_tail": []},
              {"classes_with_step_tail": [2]}),
             ({"name": "mahalanobis", "covariance": "tied", "num_classes": 3, "feature_dim": 512},
              {"feature_dim": 256})]
    for n, (summary, edit) in enumerate(pairs):
        a = write(tmp_path, f"{n}-s0", metrics(f"{n}-s0", summary))
        other = metrics(f"{n}-s1", {**summary, **edit})
        other["calibration"]["threshold"] = -0.7
        b = write(tmp_path, f"{n}-s1", other)
        code, out, err = cli([f"x={a}", f"x={b}"], capsys)
        assert code == 0 and "| x | 2 |" in out, (summary["name"], err)


def test_an_older_file_without_an_option_or_an_unknown_score_is_compared_on_what_it_records(tmp_path, capsys):
    a = write(tmp_path, "s0", metrics("s0", {"name": "knn", "k": 3}))
    b = write(tmp_path, "s1", metrics("s1", {"name": "knn"}))  # an older openlt recorded no k
    code, out, err = cli([f"x={a}", f"x={b}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err
    c = write(tmp_path, "s2", metrics("s2", {"name": "gram", "power": 3}))  # a score this openlt does not know
    d = write(tmp_path, "s3", metrics("s3", {"name": "gram", "power": 5}))
    code, out, err = cli([f"x={c}", f"x={d}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err
    assert score_options({"open_score": {"name": "gram"}}) is None and score_options({}) is None


def test_the_options_read_are_what_the_scores_record_and_the_eval_keys_exist():
    """score_options reads a real score's summary (fitted or not) as the eval keys that built it: every
    registered score records each of its parameters, and every key named is an eval config key."""
    cfg = EvalConfig()
    built = {"knn": KNN(7), "vim": ViM(16), "react": ReAct(0.8), "openmax": OpenMax(9, 2, "cosine"),
             "energy": Energy(2.0)}
    assert score_options({"open_score": built["knn"].summary()}) == {"eval.knn_k": 7}
    assert score_options({"open_score": built["vim"].summary()}) == {"eval.vim_dim": 16}
    assert score_options({"open_score": built["react"].summary()}) == {"eval.react_percentile": 0.8}
    assert score_options({"open_score": built["openmax"].summary()}) == {
        "eval.openmax_alpha": 2, "eval.openmax_distance": "cosine", "eval.openmax_tail": 9}
    assert score_options({"open_score": built["energy"].summary()}) == {"open_score.temperature": 2.0}
    for name in SCORES.names():
        scorer = SCORES.get(name).from_config(cfg)
        params = scorer.get_params(deep=False)
        assert set(params) <= set(scorer.summary()), name  # an option left out of metrics.json would go unchecked
        options = score_options({"open_score": scorer.summary()})
        assert len(options) == len(params), name
        for key, value in options.items():
            if key.startswith("eval."):
                assert getattr(cfg, key.split(".", 1)[1]) == value, (name, key)
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    assert {key.split(".", 1)[1] for key in SCORE_OPTION_KEYS.values()} <= fields
