"""The `openlt` command starts light: importing openlt.cli, `openlt --help` and `openlt eval --help` load none of
torch, torchvision, matplotlib, scikit-learn, scipy or pandas (issue 17: an evaluation imports matplotlib only to
draw its report, and each command imports the engine it runs)."""

import subprocess
import sys

HEAVY = ("torch", "torchvision", "matplotlib", "sklearn", "scipy", "pandas", "pytorch_ood")
PROBE = ("import sys, runpy\n"
         "sys.argv = ['openlt'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('openlt', run_name='__main__')\n"
         "except SystemExit as exit:\n    code = exit.code\n"
         "print('LOADED', ' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))\n")


def _loaded(*args: str) -> list[str]:
    code = PROBE.format(heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].split()[1:]


def test_import_openlt_cli_loads_no_heavy_module():
    code = f"import sys, openlt.cli; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_loads_no_heavy_module():
    assert _loaded("--help") == []
    assert _loaded("eval", "--help") == []


def test_a_wrong_run_path_is_said_before_any_heavy_module_loads(tmp_path):
    """`openlt eval /wrong/path` took 6 CPU-seconds (load_registries imports torch, torchvision, scikit-learn...)
    to say the run directory is not there: the RUN of eval, predict, export, features, identify and report is
    checked with the shared options, before them (session 24)."""
    (tmp_path / "images").mkdir()
    for args in (["eval", str(tmp_path / "nowhere")], ["features", str(tmp_path / "nowhere")],
                 ["predict", str(tmp_path / "nowhere"), str(tmp_path / "images")],
                 ["report", str(tmp_path / "images")],  # a folder, no run: the same line, as light
                 ["export", str(tmp_path / "nowhere"), str(tmp_path / "bundle")]):
        done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                              text=True, check=True)
        assert done.stdout.strip().splitlines()[-1] == "LOADED", (args, done.stdout)
        assert f"openlt {args[0]}: error: " in done.stderr and str(tmp_path) in done.stderr, done.stderr
    # an empty RUN (an unset shell variable) is not the current folder (trial 24c: `openlt report ''` reported it)
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), "report", ""], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    assert "openlt report: error: the run directory is an empty string" in done.stderr, done.stderr


def test_an_identify_request_without_probe_or_pairs_is_said_before_any_heavy_module_loads(tmp_path):
    """`openlt identify RUN` with neither --probe nor --pairs said so after 6 s of imports: its option checks
    (engine/identify_request.py) run with the shared options, before load_registries (session 26)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")  # open_run's test: a folder with a config.yaml
    cases = {(): "give a probe list (--probe) and/or a pairs file (--pairs)",
             ("--pairs", "p.txt", "--gallery", "g.txt"): "--gallery needs a probe list (--probe)",
             ("--probe", "p.txt", "--distractor-root", str(tmp_path)): "--distractor-root is where the distractor",
             ("--probe", "p.txt", "--root", str(tmp_path / "nowhere")): f"--root {tmp_path / 'nowhere'}: no such",
             ("--probe", "p.txt", "--chunk-size", "0"): "--chunk-size must be >= 1, got 0",
             # session 27 (a fresh helper's hostile try): these were said only after torch had loaded
             ("--probe", "p.txt", "--many-above", "0"): "--many-above must be >= 1",
             ("--probe", "p.txt", "--root", ""): "--root is an empty string",
             ("--probe", str(tmp_path / "none.txt")): f"--probe {tmp_path / 'none.txt'}: no such file",
             ("--probe", "p.txt", "--tag", "a/b"): "--tag 'a/b': use 1 to 100 ASCII letters",
             ("data.root", "--probe", "p.txt"): "override 'data.root' is not of the form key=value",
             ("=", "--probe", "p.txt"): "override '=' has no key before '='",
             ("train.lr=0.1", "--probe", "p.txt"): "train.lr is not an identify setting"}
    for options, message in cases.items():
        done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), "identify", str(run), *options],
                              capture_output=True, text=True, check=True, cwd=tmp_path)
        assert done.stdout.strip().splitlines()[-1] == "LOADED", (options, done.stdout)
        assert f"openlt identify: error: {message}" in done.stderr, (options, done.stderr)


def test_an_override_evaluation_does_not_use_is_said_before_any_heavy_module_loads(tmp_path):
    """`openlt eval RUN train.lr=0.1` was refused after the imports; the keys evaluation may override are in the
    light engine/override_scope.py (session 27)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), "eval", str(run), "train.lr=0.1"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "LOADED", done.stdout
    assert "openlt eval: error: train.lr is not an evaluation setting" in done.stderr, done.stderr


def test_an_override_value_or_a_missing_data_folder_is_said_before_any_heavy_module_loads(tmp_path):
    """`openlt eval RUN eval.batch_size=0` or `data.root=/nonexistent` was refused after 6 s of imports; the values
    and the run's data folders are checked with the keys (override_scope.check_run_overrides, session 28)."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "split").mkdir()
    (run / "config.yaml").write_text(f"data: {{split_dir: {tmp_path / 'split'}, root: {tmp_path}}}\n")
    moved = tmp_path / "moved"
    (moved / "config.yaml").parent.mkdir()
    (moved / "config.yaml").write_text(f"data: {{split_dir: {tmp_path / 'gone'}}}\n")
    cases = [(["eval", str(run), "eval.batch_size=0"],
              "openlt eval: error: override 'eval.batch_size=0': config key 'eval.batch_size' must be >= 1"),
             (["eval", str(run), "data.root=/nonexistent-openlt"], "openlt eval: error: data.root=/nonexistent-openlt: "
                                                                   "no such folder"),
             (["eval", str(run), "--threshold", "0.5", "eval.open_score=msp", "train.device=cuda:x"],
              "config key 'train.device' must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
             (["eval", str(moved)], f"{moved / 'config.yaml'}: data.split_dir {tmp_path / 'gone'} is not a folder; "
                                    f"`openlt eval` reads the run's data there: if the data moved, pass "
                                    f"data.split_dir=NEW_FOLDER"),
             (["identify", str(run), "--probe", str(run / "config.yaml"), "eval.batch_size=-3"],
              "openlt identify: error: override 'eval.batch_size=-3'"),
             (["identify", str(moved), "--probe", str(run / "config.yaml")],
              "`openlt identify` reads the run's data there (the training images' features are the templates")]
    for args, said in cases:
        done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                              text=True, check=True)
        assert done.stdout.strip().splitlines()[-1] == "LOADED", (args, done.stdout, done.stderr)
        assert said in done.stderr, (args, done.stderr)
