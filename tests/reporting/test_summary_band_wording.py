"""Trial 13 D3: `eval.many_above=0 eval.few_below=0` described its bands as `many > 0, medium 0, few < 0` ("medium
0": a band of the classes without training images, which a run has none of). It now reads `medium none`, the
wording of an empty inclusive medium band; a metrics.json of an older openlt with the old wording still shares a
summary row with a new one of the same bands (`closed.band_rule`)."""

import copy
import hashlib

from openlt.metrics import ShotBands
from openlt.metrics.closed import band_rule
from summary_files import cli, write  # tests/helpers, on the path through conftest

OLD, NEW = "many > 0, medium 0, few < 0", "many > 0, medium none, few < 0"


def test_an_empty_exclusive_medium_band_reads_none():
    assert ShotBands(0, 0).describe() == NEW
    assert ShotBands(0, 0).bands_of([1, 5, 500]) == ["many", "many", "many"]
    assert ShotBands(5, 0).describe() == "many > 5, medium 0-5, few < 0"  # unchanged: the files it wrote compare
    assert ShotBands(1, 1).describe() == "many > 1, medium 1, few < 1"
    assert ShotBands(1, 0, inclusive=True).describe() == "many >= 1, medium none, few <= 0"


def test_band_rule_gives_todays_wording():
    assert band_rule(OLD) == NEW and band_rule(NEW) == NEW
    assert band_rule("many > 100, medium 20-100, few < 20") == "many > 100, medium 20-100, few < 20"
    assert band_rule(None) is None and band_rule(3) == 3


def _metrics(run: str, rule: str) -> dict:
    return {
        "run": f"/work/runs/{run}", "checkpoint": "best", "checkpoint_sha256": hashlib.sha256(run.encode()).hexdigest(),
        "epoch": 4, "epoch_base": 1,
        "bands": {"rule": rule, "per_class": ["many", "many", "many"], "many_above": 0, "few_below": 0,
                  "inclusive": False},
        "class_names": ["ant", "bee", "cat"], "train_counts": [120, 50, 10],
        "closed": {"many": 0.6, "medium": None, "few": None, "overall": 0.6},
    }


def test_an_older_file_with_the_old_wording_shares_a_row_with_a_new_one(tmp_path, capsys):
    old, new = write(tmp_path, "s0", _metrics("s0", OLD)), write(tmp_path, "s1", _metrics("s1", NEW))
    code, out, err = cli([f"x={old}", f"x={new}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err
    other = copy.deepcopy(_metrics("s2", "many > 1, medium 1, few < 1"))
    other["bands"].update(many_above=1, few_below=1)
    code, out, err = cli([f"x={old}", f"x={write(tmp_path, 's2', other)}"], capsys)
    assert code == 2 and "different band rules" in err and NEW in err, err  # (named in today's wording)
