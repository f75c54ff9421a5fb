"""README pass (session of helpers): the README's one-sentence under-training rule named only rule 1 (best epoch in
the last 10 %, still rising), which docs/reports.md says never fired on the embedded benchmark; rule 2 (the second
half's best more than LATE_GAIN above the first half's) is the one that fires. The sentence names both, with the
module's numbers."""

from __future__ import annotations

from pathlib import Path

from openlt.reporting.convergence import LAST_FRACTION, LATE_GAIN

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_states_both_rules_of_the_warning():
    text = " ".join(README.read_text(encoding="utf-8").split())
    start = text.index("A run whose best validation epoch is in its last")
    sentence = text[start:text.index("`openlt summary`", start)]
    assert f"last {100 * LAST_FRACTION:.0f} %" in sentence
    assert "second half" in sentence and f"more than {100 * LATE_GAIN:.0f} points" in sentence
