"""Library code reports through `logging` (never print); the CLI turns the records into its printed lines."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from openlt.cli import console_logging

SRC = Path(__file__).resolve().parents[1] / "src" / "openlt"


def test_no_library_module_prints():
    printing = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ("cli.py", "__main__.py"):  # the command line is the one place that prints
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not printing, f"use logging.getLogger(__name__) instead of print: {printing}"


def test_records_print_only_while_a_command_runs(capsys):
    log = logging.getLogger("openlt.engine.train")
    root = logging.getLogger("openlt")
    before = root.level, root.propagate, list(root.handlers)
    log.info("outside")  # an embedding program decides: by default an INFO record shows nowhere
    with console_logging():
        log.info("epoch   1/1  loss 0.100")
        log.warning("disk almost full")
        logging.getLogger("other.library").info("not ours")
    out, err = capsys.readouterr()
    assert out == "epoch   1/1  loss 0.100\n"  # the line exactly as print wrote it
    assert err == "openlt: warning: disk almost full\n"
    assert (root.level, root.propagate, list(root.handlers)) == before


def test_a_closed_pipe_on_stdout_silences_the_console_not_the_command(tmp_path):
    """`openlt train ... | head -1`: once the reader has gone, the console handler points stdout at /dev/null and
    the command goes on (it writes its marker), without logging's "--- Logging error ---" report (trial 5)."""
    import os
    import subprocess
    import sys

    mark = tmp_path / "finished"
    script = ("import logging, sys\nfrom openlt.cli import console_logging\nlog = logging.getLogger('openlt.x')\n"
              "with console_logging():\n    for i in range(20000):\n        log.info('line %d ' + 'x' * 60, i)\n"
              "open(sys.argv[1], 'w').write('finished')\n")
    done = subprocess.run(f'"{sys.executable}" -c "$SCRIPT" "$MARK" | head -1', shell=True, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SCRIPT": script, "MARK": str(mark)})
    assert done.stdout == "line 0 " + "x" * 60 + "\n"
    assert "Logging error" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr[-2000:]
    assert mark.read_text() == "finished"
