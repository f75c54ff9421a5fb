"""What the `openlt summary` tests share: a metrics.json written into its own run folder (with a config.yaml, as
`openlt train` leaves one), and the command run in-process with its exit status and output."""

import hashlib
import json
from pathlib import Path

from openlt.cli import main


def write(folder: Path, name: str, data, config: bool = True) -> Path:
    """`data` (a dict, or text as it is) as folder/name/metrics.json; the path. With `config`, a run's config.yaml
    beside it (one recipe, a seed of the folder's own: summary refuses a metrics file without one in a row of
    several runs, and a repeated seed); without, a lone metrics file."""
    path = folder / name / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    if config:
        seed = int(hashlib.sha256(str(path.parent).encode()).hexdigest()[:8], 16)
        (path.parent / "config.yaml").write_text(f"name: plain\nseed: {seed}\ntrain:\n  epochs: 12\n")
    return path


def cli(args: list, capsys) -> tuple[int, str, str]:
    """`openlt summary ARGS`: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main(["summary", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def rounded(value):
    """A metrics dict (or any JSON value) with every float rounded to 3 digits, as a user's tool might re-save it:
    the consistency checks must still accept it."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return [rounded(v) for v in value] if isinstance(value, list) else value


def edit_at(keys, value):
    """An edit of a metrics dict: the value at the path of `keys` set to `value` (for parametrized refusal tests)."""
    def edit(m):
        for key in keys[:-1]:
            m = m[key]
        m[keys[-1]] = value
    return edit


def edited_file_refusal(path: Path, metrics: dict, edit, message: str, capsys):
    """metrics.json at `path` rewritten with `edit` applied to `metrics`: `load_metrics` refuses it in one line
    starting with the path and `message`, and `openlt summary` of it prints that line alone (exit 2). The error."""
    import pytest

    from openlt.errors import RunDirError
    from openlt.reporting.summary import load_metrics

    edit(metrics)
    path.write_text(json.dumps(metrics))
    with pytest.raises(RunDirError) as err:
        load_metrics(path)
    assert str(err.value).startswith(f"{path} {message}") and "\n" not in str(err.value), str(err.value)
    code, out, err_text = cli([f"E={path}"], capsys)
    assert code == 2 and out == "" and err_text.strip().splitlines() == [f"openlt summary: error: {err.value}"]
    return err.value
