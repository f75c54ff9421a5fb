"""scripts/openset_table.py: the open-set tables of the convergence study from run folders named as the bench names
them (metrics.json + predictions.npz for the config's score, metrics-TAG.json + predictions-TAG.npz per re-evaluation)."""

import json
from pathlib import Path

import numpy as np
import pytest
from script_loader import load_script  # tests/helpers

KNOWN = ["a", "b"]


@pytest.fixture(scope="module")
def table_module():
    return load_script("openset_table")


def _evaluation(run: Path, tag: str, score: str, auroc: float, test_score, open_score, open_preds) -> None:
    metrics = {"class_names": KNOWN, "open_score": {"name": score},
               "open": {"auroc": auroc, "auroc_per_band": {"many": auroc + 0.1, "few": auroc - 0.1}}}
    (run / f"metrics{tag}.json").write_text(json.dumps(metrics), encoding="utf-8")
    np.savez(run / f"predictions{tag}.npz", test_score=np.asarray(test_score, dtype=np.float32),
             open_score=np.asarray(open_score, dtype=np.float32), open_preds=np.asarray(open_preds))


def test_auroc_per_score_per_open_class_and_what_the_unknowns_are_taken_for(tmp_path, table_module):
    # open images: classes 5, 5, 7, 7 (original labels); known test scores 0.5 and 0.9
    origin, names = np.array([5, 5, 7, 7]), [f"c{i}" for i in range(10)]
    for seed, auroc in ((0, 0.6), (1, 0.8)):
        run = tmp_path / f"plain_e48-s{seed}-20261130-00000{seed}"
        run.mkdir()
        # msp: class 5 scored below every known image (AUROC 1), class 7 above (AUROC 0); 5 -> "a", 7 -> "b" / "a"
        _evaluation(run, "", "msp", auroc, [0.5, 0.9], [0.1, 0.2, 0.95, 0.99], [0, 0, 1, seed])
        _evaluation(run, "-plain_e48-knn", "knn", auroc - 0.1, [0.5, 0.9], [0.6, 0.7, 0.1, 0.2], [0, 0, 0, 0])
    (tmp_path / "plain_e96-s0-20261130-000002").mkdir()  # not evaluated: left out
    (tmp_path / "crt_e48-s0-20261130-000003").mkdir()  # not a joint model: left out
    lines = table_module.tables(table_module.read_runs(tmp_path, origin, names)).splitlines()
    assert "| 48 | msp | 2 | 0.700 ± 0.100 | 0.800 ± 0.100 |  | 0.600 ± 0.100 |" in lines  # no medium band
    assert "| 48 | knn | 2 | 0.600 ± 0.100 | 0.700 ± 0.100 |  | 0.500 ± 0.100 |" in lines
    assert "| 48 | msp | 1.000 ± 0.000 | 0.000 ± 0.000 |" in lines  # AUROC c5, AUROC c7
    assert "| 48 | knn | 0.500 ± 0.000 | 1.000 ± 0.000 |" in lines  # c5 between the known scores
    assert "| 48 | c5 | 100.0 ± 0.0 | 0.0 ± 0.0 |" in lines
    assert "| 48 | c7 | 25.0 ± 25.0 | 75.0 ± 25.0 |" in lines  # seed 0: one "a", one "b"; seed 1: both "b"
    assert not any(line.startswith("| 96 ") for line in lines)


def test_main_refuses_a_folder_without_runs(tmp_path, table_module, capsys, monkeypatch):
    monkeypatch.setattr(table_module, "open_classes", lambda split_dir: (np.array([0]), ["c0"]))
    assert table_module.main([str(tmp_path)]) == 2
    assert "no evaluated" in capsys.readouterr().err


def test_an_archived_record_without_predictions_is_in_the_auroc_table_alone(tmp_path, table_module, capsys,
                                                                            monkeypatch):
    """scripts/archive_runs.py keeps metrics, not predictions*.npz: the script crashed on such a folder (session
    26); it now gives the AUROC table from the metrics and says which per-class values it could not compute."""
    origin, names = np.array([5, 7]), [f"c{i}" for i in range(10)]
    kept, archived = tmp_path / "plain_e384-s0-20261202-000000", tmp_path / "plain_e384-s1-20261202-000001"
    for run in (kept, archived):
        run.mkdir()
        _evaluation(run, "", "msp", 0.6, [0.5, 0.9], [0.1, 0.95], [0, 1])
    (archived / "predictions.npz").unlink()
    found = table_module.read_runs(tmp_path, origin, names)
    assert found["no_predictions"] == [archived / "predictions.npz"]
    lines = table_module.tables(found).splitlines()
    assert "| 384 | msp | 2 | 0.600 ± 0.000 | 0.700 ± 0.000 |  | 0.500 ± 0.000 |" in lines  # both seeds
    assert "| 384 | msp | 1.000 | 0.000 |" in lines  # the per-class AUROC of the kept seed alone
    monkeypatch.setattr(table_module, "open_classes", lambda split_dir: (origin, names))
    assert table_module.main([str(tmp_path)]) == 0
    assert "1 evaluation has no predictions file" in capsys.readouterr().err
