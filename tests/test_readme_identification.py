"""README's MS1M-LT section says what identification.json records of its inputs (trial 12 D4): each key
`openlt identify` writes for them (engine/identify.py: `run`, list_files's `files` / `files_sha256`, `data` with
identified_data's `list_root` / `distractor_root` beyond metrics.json's folders) is named there."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from openlt.engine.evaluate import evaluated_data
from openlt.engine.identify import identified_data, list_files

README = Path(__file__).resolve().parents[1] / "README.md"


def _identify_paragraph() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("`openlt identify` matches the pooled feature")
    return text[start:text.index("- **Gallery**", start)]


def test_the_readme_names_every_input_identification_json_records(tmp_path):
    paragraph = " ".join(_identify_paragraph().split())
    probe = tmp_path / "probe.txt"
    probe.write_text("a.jpg 0\n")
    lists = list_files({"probe": probe, "pairs": None})
    assert list(lists) == ["files", "files_sha256"]
    cfg = SimpleNamespace(data=SimpleNamespace(root=str(tmp_path), open_root=None))
    data = identified_data(cfg, SimpleNamespace(split_dir=str(tmp_path)), None, None)
    folders = [key for key in data if key not in evaluated_data(cfg, str(tmp_path))]
    assert folders == ["list_root", "distractor_root"]
    for key in ("run", *lists, "data", *folders):
        assert f"`{key}`" in paragraph, key
    assert "It records its inputs: `run` (absolute), `files` (the lists and the pairs file, absolute)" in paragraph
