"""scripts/convergence_table.py: the convergence study's tables from run folders named as the bench names them."""

import json
from pathlib import Path

import pytest
from script_loader import load_script  # tests/helpers


@pytest.fixture(scope="module")
def table_module():
    return load_script("convergence_table")


def _run(folder: Path, name: str, overall: float, val: list[float] | None = None, fit: float = 0.9) -> None:
    path = folder / name
    path.mkdir()
    closed = {"many": overall + 0.1, "medium": overall, "few": overall - 0.1, "overall": overall}
    (path / "metrics.json").write_text(json.dumps({"closed": closed}), encoding="utf-8")
    if val is not None:
        lines = [json.dumps({"epoch": i + 1, "train_acc": fit, "val": {"overall": v}}) for i, v in enumerate(val)]
        (path / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_tables_average_seeds_per_budget_and_flag_under_training(tmp_path, table_module):
    _run(tmp_path, "plain_e4-s0-20261129-100000", 0.5, val=[0.2, 0.3, 0.4, 0.6], fit=0.8)  # still rising
    _run(tmp_path, "plain_e4-s1-20261129-100001", 0.7, val=[0.2, 0.5, 0.5, 0.5], fit=0.9)  # plateau
    _run(tmp_path, "crt_e4-s0-20261129-100002", 0.6)
    _run(tmp_path, "crt_e4-s1-20261129-100003", 0.8)
    (tmp_path / "plain_e8-s0-20261129-100004").mkdir()  # not evaluated: left out
    text = table_module.tables(table_module.read_runs(tmp_path))
    lines = text.splitlines()
    stage1 = next(line for line in lines if line.startswith("| 4 | 2 |"))
    assert "85.0 ± 5.0" in stage1  # training fit: mean of 0.8 and 0.9, population std
    assert "1 of 2" in stage1  # only seed 0's validation was still rising at its last epoch
    assert "| 4 | crt | 2 | 80.0 ± 10.0 | 70.0 ± 10.0 | 60.0 ± 10.0 | 70.0 ± 10.0 |" in lines
    assert not any(line.startswith("| 8 ") for line in lines)


def test_main_refuses_a_folder_without_runs(tmp_path, table_module, capsys):
    assert table_module.main([str(tmp_path)]) == 2
    assert "no evaluated" in capsys.readouterr().err


def test_a_torn_last_log_line_is_dropped_and_a_bad_file_is_one_line(tmp_path, table_module, capsys):
    """A run's metrics.jsonl cut short while a line was written (a crash, or a resume training it now): its last
    line is dropped, as openlt reads it (was: a JSONDecodeError traceback); a metrics.json that is not JSON, or has
    no "closed": one line naming the file, exit 2."""
    _run(tmp_path, "plain_e4-s0-20261129-100000", 0.5, val=[0.2, 0.3, 0.4, 0.6])
    with open(tmp_path / "plain_e4-s0-20261129-100000" / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 5, "train_lo')
    assert table_module.main([str(tmp_path)]) == 0
    assert "| 4 | 1 |" in capsys.readouterr().out
    bad = tmp_path / "plain_e4-s1-20261129-100001"
    bad.mkdir()
    for text, words in (("{", "not JSON"), ('{"open": {}}', "no 'closed'")):
        (bad / "metrics.json").write_text(text, encoding="utf-8")
        assert table_module.main([str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and str(bad / "metrics.json") in err and words in err


def test_a_run_evaluated_before_its_budget_counts_as_warned(tmp_path, table_module):
    """plain_e4 killed after 2 of its 4 epochs and evaluated (a plateau): warned as metrics.json warns it (was:
    '0 of 1', the stop not checked)."""
    _run(tmp_path, "plain_e4-s0-20261129-100000", 0.5, val=[0.5, 0.5])
    stage1 = next(line for line in table_module.tables(table_module.read_runs(tmp_path)).splitlines()
                  if line.startswith("| 4 | 1 |"))
    assert "| 1 of 1 |" in stage1


def test_the_latest_run_of_a_seed_counts(tmp_path, table_module, capsys):
    """Two runs of one method, budget and seed (one trained again): the later one counts, with a note (was: the
    earlier one, without a word)."""
    _run(tmp_path, "crt_e4-s0-20261129-100000", 0.2)
    _run(tmp_path, "crt_e4-s0-20261130-090000", 0.6)
    runs = table_module.read_runs(tmp_path)
    assert runs[("crt", 4)][0]["test"]["overall"] == 0.6
    assert "crt_e4-s0-20261130-090000 replaces the earlier crt_e4-s0-20261129-100000" in capsys.readouterr().err


def test_a_band_missing_or_no_number_is_one_line(tmp_path, table_module, capsys):
    """A metrics.json whose "closed" lacks a band, or holds no number in one: one line naming the file and the band,
    exit 2 (was: a KeyError / TypeError traceback from the table); null (a band without a test class, as `openlt eval`
    writes it: trial 24 D1) and NaN are shown '-'."""
    run = tmp_path / "plain_e4-s0-20261129-100000"
    run.mkdir()
    closed = {"many": 0.5, "medium": 0.4, "overall": 0.45}
    for few, words in ((None, "closed.few is missing"), ("x", 'closed.few is "x"'), (True, "closed.few is true")):
        (run / "metrics.json").write_text(json.dumps({"closed": closed if few is None else {**closed, "few": few}}),
                                          encoding="utf-8")
        assert table_module.main([str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and str(run / "metrics.json") in err and words in err
    (run / "metrics.json").write_text(json.dumps({"closed": {**closed, "few": float("inf")}}), encoding="utf-8")
    assert table_module.main([str(tmp_path)]) == 2
    assert "closed.few is Infinity, not a number" in capsys.readouterr().err
    for few in (float("nan"), None):
        (run / "metrics.json").write_text(json.dumps({"closed": {**closed, "few": few}}), encoding="utf-8")
        assert table_module.main([str(tmp_path)]) == 0
        assert "| 4 | joint | 1 | 50.0 | 40.0 | - | 45.0 |" in capsys.readouterr().out


def test_a_log_listing_an_epoch_twice_or_out_of_order_is_one_line(tmp_path, table_module, capsys):
    """Trial 24 D6: the fit and the last validation are read by position: a reversed log gave epoch 1's values as
    the last ones, a duplicated line a best epoch of '-'. Now one line naming the file and record, exit 2."""
    _run(tmp_path, "plain_e4-s0-20261129-100000", 0.5, val=[0.2, 0.3, 0.4])
    log = tmp_path / "plain_e4-s0-20261129-100000" / "metrics.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines()
    for edited, words in ((lines[::-1], "record 2 is epoch 2, after epoch 3"),
                          (lines[:2] + lines[1:], "record 3 is epoch 2, after epoch 2")):
        log.write_text("\n".join(edited) + "\n", encoding="utf-8")
        assert table_module.main([str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"{log}: {words}" in err


def test_a_log_record_without_an_integer_epoch_is_one_line(tmp_path, table_module, capsys):
    """A metrics.jsonl record whose "epoch" is no positive integer: one line naming the file and record, exit 2
    (was: a ValueError traceback from int())."""
    _run(tmp_path, "plain_e4-s0-20261129-100000", 0.5, val=[0.2, 0.3])
    with open(tmp_path / "plain_e4-s0-20261129-100000" / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"epoch": "x", "val": {"overall": 0.4}}\n')
    assert table_module.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "metrics.jsonl: record 3" in err


def test_the_later_run_is_the_later_time_stamp(tmp_path, table_module, capsys):
    """The later of two runs of one seed is the one with the later time stamp, whatever the rest of the name says
    (was: the later name in sort order: s01 of the 30th lost to s1 of the 29th)."""
    _run(tmp_path, "crt_e4-s01-20261130-090000", 0.6)
    _run(tmp_path, "crt_e4-s1-20261129-100000", 0.2)
    runs = table_module.read_runs(tmp_path)
    assert runs[("crt", 4)][1]["test"]["overall"] == 0.6
    assert "crt_e4-s01-20261130-090000 replaces the earlier crt_e4-s1-20261129-100000" in capsys.readouterr().err


def test_the_verdict_metrics_json_records_counts_over_the_log(tmp_path, table_module):
    """A finished run whose metrics.jsonl was cut to 2 of its 4 epochs after training: openlt (which reads the
    checkpoints) recorded no warning in metrics.json, and the table counts that (was: '1 of 1', "stopped" from the
    cut log alone; the helper trial's leftover, session 21); a metrics.json without a verdict: the log is judged."""
    _run(tmp_path, "plain_e4-s0-20261129-100000", 0.5, val=[0.5, 0.5])
    path = tmp_path / "plain_e4-s0-20261129-100000" / "metrics.json"
    recorded = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**recorded, "convergence": {"warning": None, "unchecked": "cut"}}), encoding="utf-8")
    stage1 = next(line for line in table_module.tables(table_module.read_runs(tmp_path)).splitlines()
                  if line.startswith("| 4 | 1 |"))
    assert "| 0 of 1 (1 not checked) |" in stage1  # was '0 of 1', as if checked (helper trial, session 22)
    path.write_text(json.dumps({**recorded, "convergence": {"warning": None, "unchecked": None}}), encoding="utf-8")
    stage1 = next(line for line in table_module.tables(table_module.read_runs(tmp_path)).splitlines()
                  if line.startswith("| 4 | 1 |"))
    assert "| 0 of 1 |" in stage1
    for convergence in ({"warning": "the model may be under-trained: x", "unchecked": None},
                        {"warning": None}):  # an older openlt's verdict (no "unchecked"): the log is judged again
        path.write_text(json.dumps({**recorded, "convergence": convergence}), encoding="utf-8")
        stage1 = next(line for line in table_module.tables(table_module.read_runs(tmp_path)).splitlines()
                      if line.startswith("| 4 | 1 |"))
        assert "| 1 of 1 |" in stage1


def test_a_stage1_run_whose_config_trains_another_budget_is_one_line(tmp_path, table_module, capsys):
    """plain_e4 whose config.yaml trains 12 epochs (a CLI override, or a renamed run): one line naming the file,
    exit 2 (was: its row stood under 4 epochs, the budget taken from the folder name alone; session 22's leftover).
    A stage 2's name gives its stage 1's budget: its own train.epochs is not compared."""
    _run(tmp_path, "plain_e4-s0-20261129-100000", 0.5, val=[0.2, 0.3, 0.4, 0.5])
    _run(tmp_path, "crt_e4-s0-20261129-100001", 0.6)
    config = tmp_path / "plain_e4-s0-20261129-100000" / "config.yaml"
    config.write_text("train: {epochs: 4, init_from: null}\ndecouple: {method: none}\n", encoding="utf-8")
    (tmp_path / "crt_e4-s0-20261129-100001" / "config.yaml").write_text(
        "train: {epochs: 10, init_from: runs/plain_e4-s0-20261129-100000}\ndecouple: {method: crt}\n",
        encoding="utf-8")
    assert table_module.main([str(tmp_path)]) == 0
    capsys.readouterr()
    config.write_text("train: {epochs: 12, init_from: null}\ndecouple: {method: none}\n", encoding="utf-8")
    assert table_module.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(config) in err and "train.epochs is 12" in err


def test_a_band_some_seeds_lack_says_how_many_seeds_it_is_of(tmp_path, table_module):
    """Trial 24b: one seed's band null, another's 1.0, showed "100.0" as if it were the row's mean."""
    _run(tmp_path, "crt_e4-s0-20261129-100000", 0.5)
    _run(tmp_path, "crt_e4-s1-20261129-100001", 0.7)
    metrics = tmp_path / "crt_e4-s0-20261129-100000" / "metrics.json"
    metrics.write_text(json.dumps({"closed": {"many": 0.6, "medium": 0.5, "few": None, "overall": 0.5}}),
                       encoding="utf-8")
    lines = table_module.tables(table_module.read_runs(tmp_path)).splitlines()
    assert "| 4 | crt | 2 | 70.0 ± 10.0 | 60.0 ± 10.0 | 60.0 (1 of 2 seeds) | 60.0 ± 10.0 |" in lines


def test_a_run_copied_under_another_seed_name_is_one_line(tmp_path, table_module, capsys):
    """(Helper trial, session 28: one run copied as -s0 and -s1 was a row of "2 seeds ± 0.0"; a config.yaml seed
    other than the name's was not looked at.) The same weights under two seeds, or a name's seed that is not
    config.yaml's, are refused as `openlt summary` refuses them."""
    for seed in (0, 1):
        _run(tmp_path, f"plain_e4-s{seed}-20261129-10000{seed}", 0.5, val=[0.2, 0.3, 0.4, 0.5])
        path = tmp_path / f"plain_e4-s{seed}-20261129-10000{seed}"
        metrics = json.loads((path / "metrics.json").read_text())
        (path / "metrics.json").write_text(json.dumps({**metrics, "checkpoint_sha256": "ab" * 32}))
        (path / "config.yaml").write_text(f"seed: {seed}\ntrain: {{epochs: 4}}\n")
    assert table_module.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert ("plain_e4-s1-20261129-100001 and plain_e4-s0-20261129-100000 are evaluations of the same weights "
            "(checkpoint_sha256 abababababab...)") in err, err
    other = {**metrics, "checkpoint_sha256": "cd" * 32}
    (tmp_path / "plain_e4-s1-20261129-100001" / "metrics.json").write_text(json.dumps(other))
    assert table_module.main([str(tmp_path)]) == 0
    assert "| 4 | 2 |" in capsys.readouterr().out
    (tmp_path / "plain_e4-s1-20261129-100001" / "config.yaml").write_text("seed: 0\ntrain: {epochs: 4}\n")
    assert table_module.main([str(tmp_path)]) == 2
    assert "seed is 0 but the run's name says s1 (a copied or renamed run" in capsys.readouterr().err
