"""openlt.run_folders: a run (a folder with a config.yaml) told from a folder of runs (a bench's out_dir) and a
folder of those (runs/), and the example run a command given the wrong one names."""

from openlt.run_folders import example_run, is_folder_of_runs


def _run(path):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("name: plain\n")
    return path


def test_a_bench_out_dir_and_a_folder_of_them_are_folders_of_runs(tmp_path):
    first = _run(tmp_path / "runs" / "table" / "a-s0")
    _run(tmp_path / "runs" / "table" / "b-s0")
    assert example_run(tmp_path / "runs" / "table") == first  # the first in name order
    assert example_run(tmp_path / "runs") == first  # a level further down
    assert is_folder_of_runs(tmp_path / "runs") and is_folder_of_runs(tmp_path / "runs" / "table")


def test_a_run_an_empty_folder_a_file_and_a_missing_path_are_not(tmp_path):
    run = _run(tmp_path / "run")
    _run(run / "inner")  # a run holding a run-like folder is still a run
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    assert not is_folder_of_runs(run)
    for path in (tmp_path / "empty", tmp_path / "file", tmp_path / "missing"):
        assert not is_folder_of_runs(path) and example_run(path) is None


def test_runs_deeper_than_two_levels_are_not_searched(tmp_path):
    _run(tmp_path / "a" / "b" / "c")
    assert example_run(tmp_path) is None and example_run(tmp_path / "a") == tmp_path / "a" / "b" / "c"
