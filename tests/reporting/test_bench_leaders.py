"""The bench report's "which method for what": best mean per criterion, ties within one std, escaping in HTML."""

from __future__ import annotations

from openlt.reporting.bench_report import _leader_lines, leaders, markdown
from openlt.reporting.html import esc


def metrics(few: float, overall: float, f: float, auroc: float) -> dict:
    return {"closed": {"many": 0.9, "medium": 0.5, "few": few, "overall": overall},
            "open": {"f_measure": f, "auroc": auroc}}


GROUPS = {
    "joint": [metrics(0.10, 0.50, 0.60, 0.70), metrics(0.20, 0.52, 0.62, 0.72)],
    "cRT<b>": [metrics(0.50, 0.60, 0.50, 0.50), metrics(0.70, 0.62, 0.52, 0.50)],  # few 60 ± 10
    "NCM": [metrics(0.58, 0.55, 0.40, 0.40), metrics(0.52, 0.55, 0.40, 0.40)],   # few 55 ± 3: within cRT's std
    "no open set": [{"closed": {"many": 0.9, "medium": 0.5, "few": 0.0, "overall": 0.3}}],
}


def test_best_mean_per_criterion_and_the_methods_within_one_std():
    by_column = {item["column"]: item for item in leaders(GROUPS)}
    assert by_column["few"]["best"] == "cRT<b>" and by_column["few"]["cell"][0] == 60.0
    assert by_column["few"]["tied"] == ["NCM"]  # 55 >= 60 - 10; joint (15) is not
    assert by_column["overall"]["best"] == "cRT<b>" and by_column["overall"]["tied"] == []
    assert by_column["F"]["best"] == "joint" and by_column["AUROC"]["best"] == "joint"
    assert "no open set" not in by_column["F"]["tied"]  # a method without the column takes no part


def test_leaders_in_markdown_and_escaped_html():
    md = "\n".join(_leader_lines(GROUPS))
    assert "few-shot classes (few): **cRT<b>** 60.0 ± 10.0; within one std: NCM" in md
    html = "\n".join(_leader_lines(GROUPS, bold=lambda t: f"<b>{t}</b>", text=esc))
    assert "<b>cRT&lt;b&gt;</b>" in html and "cRT<b>" not in html


def test_markdown_table_carries_the_leaders():
    class Spec:
        name, seeds, paper = "toy", [0, 1], None

    text = markdown(Spec, GROUPS)
    assert "Which method for what" in text and "- all known classes (overall): **cRT<b>**" in text


def test_a_leader_carries_its_table_mark():
    """A leading or tied method whose runs were warned (†) or could not be judged (‡) keeps that mark in "which
    method for what" (was: recommended there without it; helper trial, session 22)."""
    groups = {name: [dict(m) for m in runs] for name, runs in GROUPS.items()}
    for m in groups["cRT<b>"]:
        m["convergence"] = {"warning": "the model may be under-trained: x", "unchecked": None}
    groups["NCM"][0]["convergence"] = {"warning": None, "unchecked": "1 evaluation"}
    md = "\n".join(_leader_lines(groups))
    assert "few-shot classes (few): **cRT<b> †** 60.0 ± 10.0; within one std: NCM ‡" in md
    assert "(AUROC): **joint** " in md
