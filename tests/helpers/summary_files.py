"""What the `openlt summary` tests share: a metrics.json written into its own run folder, and the command run
in-process with its exit status and output."""

import json
from pathlib import Path

from openlt.cli import main


def write(folder: Path, name: str, data) -> Path:
    """`data` (a dict, or text as it is) as folder/name/metrics.json; the path."""
    path = folder / name / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def cli(args: list, capsys) -> tuple[int, str, str]:
    """`openlt summary ARGS`: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main(["summary", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err
