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
