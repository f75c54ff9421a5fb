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
