"""Class folders whose names look alike, and open classes given by a text that is a class name and another class's
id (`data.datasets.image_folder_pool`, `data.splits._resolve_open_classes`), through `openlt split`."""

import json
import unicodedata

import numpy as np
import pytest
from PIL import Image

from openlt.cli import main
from openlt.data.datasets import image_folder_pool
from openlt.errors import DataError


def folder(root, names, n=8):
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), c * 20, np.uint8)).save(root / name / f"{i}.png")
    return root


def split(capsys, root, out, *extra):
    code = main(["split", "--dataset", "image-folder", "--root", str(root), "--out", str(out), "--profile", "none",
                 "--val-per-class", "1", "--test-per-class", "2", *map(str, extra)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


@pytest.mark.parametrize("names,message", [
    ([NFC, NFD, "dog"], f"the class folders {NFD!r} and {NFC!r} differ only by Unicode normalisation (code points "
                        f"'cafe\\u0301' and 'caf\\xe9': NFC / NFD forms of one name)"),
    (["Cat", "cat", "dog"], "the class folders 'Cat' and 'cat' differ only by case (one folder on a case-insensitive "
                            "file system: Windows, macOS)"),
    (["STRASSE", "straße", "dog"], "the class folders 'STRASSE' and 'straße' differ only by case (one folder on a "
                                    "case-insensitive file system: Windows, macOS)"),
], ids=["nfc-nfd", "case", "casefold"])
def test_lookalike_class_folders_are_refused(tmp_path, capsys, names, message):
    root = folder(tmp_path / "imgs", names)
    code, out, err = split(capsys, root, tmp_path / "splits", "--open-classes", "0")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err == f"openlt split: error: image folder {root}: {message}: they would be two classes that look alike; " \
                  f"merge them or rename one\n"
    assert not (tmp_path / "splits").exists()
    with pytest.raises(DataError, match="look alike"):
        image_folder_pool(root)


def test_distinct_names_are_accepted(tmp_path):
    root = folder(tmp_path / "imgs", [NFC, "cafe", "Cat", "dog"])
    assert image_folder_pool(root).class_names == ["Cat", "cafe", NFC, "dog"]


def test_a_class_name_that_is_another_class_id_is_ambiguous(tmp_path, capsys):
    """Folders 0..10 sort as 0, 1, 10, 2, ...: '2' names the folder '2' (id 3) and is the id of the folder '10'."""
    root = folder(tmp_path / "imgs", [str(c) for c in range(11)])
    out_dir = tmp_path / "splits"
    code, out, err = split(capsys, root, out_dir, "--open-classes", "2,3")
    assert code == 2 and out == "" and err == (
        "openlt split: error: data.split.open_classes (--open-classes) '2' is ambiguous: it names the class '2' (id 3) "
        "and is the id of the class '10' (ids follow the sorted class names); give ids as numbers in a list, "
        "--open-classes '[2]' (data.split.open_classes: [2]), or names quoted in a list, --open-classes '[\"2\"]' "
        "(data.split.open_classes: [\"2\"])\n")
    assert not out_dir.exists()
    assert split(capsys, root, out_dir, "--open-classes", "[2, 3]")[0] == 0  # numbers: ids
    assert json.loads((out_dir / "manifest.json").read_text())["open_class_names"] == ["10", "2"]
    assert split(capsys, root, out_dir, "--open-classes", '["2", "3"]', "--force")[0] == 0  # quoted: names
    assert json.loads((out_dir / "manifest.json").read_text())["open_class_names"] == ["2", "3"]
    assert split(capsys, root, out_dir, "--open-classes", "0,1", "--force")[0] == 0  # name and id agree: accepted
    assert json.loads((out_dir / "manifest.json").read_text())["open_class_names"] == ["0", "1"]
