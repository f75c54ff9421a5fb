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


# ---------------------------------------------------------------------------------------------------- issue 14
@pytest.mark.parametrize("names,message", [
    (["cat", "cat ", "dog"], "the class folders 'cat' and 'cat ' differ only by spaces around the name"),
    ([" cat", "cat", "dog"], "the class folders ' cat' and 'cat' differ only by spaces around the name"),
    (["cat", "ｃａｔ", "dog"], "the class folders 'cat' and 'ｃａｔ' differ only by Unicode compatibility forms (code "
                              "points 'cat' and '\\uff43\\uff41\\uff54': full-width letters, ligatures and the like "
                              "are one name under NFKC)"),
    (["fish", "ﬁsh", "dog"], "the class folders 'fish' and 'ﬁsh' differ only by Unicode compatibility forms (code "
                             "points 'fish' and '\\ufb01sh': full-width letters, ligatures and the like are one name "
                             "under NFKC)"),
    (["Cat ", "cat", "dog"], "the class folders 'Cat ' and 'cat' differ only by spaces around the name and case"),
    (["ＣＡＴ", "cat", "dog"], "the class folders 'cat' and 'ＣＡＴ' differ only by Unicode compatibility forms and "
                              "case (code points 'cat' and '\\uff23\\uff21\\uff34': full-width letters, ligatures and "
                              "the like are one name under NFKC)"),
], ids=["trailing-space", "leading-space", "full-width", "ligature", "space-and-case", "full-width-upper"])
def test_class_folders_alike_by_spaces_or_nfkc_are_refused(tmp_path, capsys, names, message):
    """Issue 14: 'cat' and 'cat ', 'cat' and full-width 'ｃａｔ' were two classes printing alike."""
    root = folder(tmp_path / "imgs", names, n=4)
    code, out, err = split(capsys, root, tmp_path / "splits", "--open-classes", "0")
    assert code == 2 and out == "" and err == (f"openlt split: error: image folder {root}: {message}: they would be "
                                               f"two classes that look alike; merge them or rename one\n")
    assert not (tmp_path / "splits").exists()


CYR_C, GREEK_O = "\u0441", "\u03bf"  # Cyrillic small es, Greek small omicron: 'c' and 'o' to the eye


@pytest.mark.parametrize("names,message", [
    (["cat", f"{CYR_C}at", "dog"], f"the class folders 'cat' and '{CYR_C}at' differ only by letters of other scripts "
                                   f"that look like Latin ones (code points 'cat' and '\\u0441at': Cyrillic "
                                   f"'{CYR_C}' U+0441 looks like 'c')"),
    (["dog", f"d{GREEK_O}g"], f"the class folders 'dog' and 'd{GREEK_O}g' differ only by letters of other scripts "
                              f"that look like Latin ones (code points 'dog' and 'd\\u03bfg': Greek '{GREEK_O}' "
                              f"U+03BF looks like 'o')"),
    (["ONE", "\u039f\u039d\u0395"], "the class folders 'ONE' and '\u039f\u039d\u0395' differ only by letters of "
                                    "other scripts that look like Latin ones (code points 'ONE' and "
                                    "'\\u039f\\u039d\\u0395': Greek '\u039f' U+039F looks like 'O', Greek '\u039d' "
                                    "U+039D looks like 'N', Greek '\u0395' U+0395 looks like 'E')"),
    (["Cat", f"{CYR_C}at"], f"the class folders 'Cat' and '{CYR_C}at' differ only by letters of other scripts that "
                            f"look like Latin ones and case"),
    (["top", "\u03c4op"], "the class folders 'top' and '\u03c4op' differ only by letters of other scripts that look "
                          "like Latin ones (code points 'top' and '\\u03c4op': Greek '\u03c4' U+03C4 looks like 't')"),
], ids=["cyrillic-c", "greek-o", "greek-capitals", "cyrillic-and-case", "greek-tau"])
def test_class_folders_alike_by_letters_of_other_scripts_are_refused(tmp_path, capsys, names, message):
    """Issue 14: 'cat' and 'сat' (first letter Cyrillic) were two classes printing alike."""
    root = folder(tmp_path / "imgs", names, n=4)
    code, out, err = split(capsys, root, tmp_path / "splits", "--open-classes", "0")
    assert code == 2 and out == "" and err.startswith(f"openlt split: error: image folder {root}: {message}")
    assert err.endswith(": they would be two classes that look alike; merge them or rename one\n")
    assert err.count("\n") == 1
    assert not (tmp_path / "splits").exists()


@pytest.mark.parametrize("letters", ["\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u0501\u051b\u051d",
                                     "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423",
                                     "\u03bf\u03b1\u03bd\u03c1\u03c4",
                                     "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4"
                                     "\u03a5\u03a7"], ids=["cyrillic-small", "cyrillic-capital", "greek-small",
                                                            "greek-capital"])
def test_every_listed_lookalike_letter_reads_as_its_latin_twin(letters):
    from openlt.data.datasets import latin_lookalikes

    latin = {"cyrillic-small": "aeopcyxijsdqw", "cyrillic-capital": "ABEKMHOPCTXY", "greek-small": "oavpt",
             "greek-capital": "ABEZHIKMNOPTYX"}
    twins = latin_lookalikes(letters)
    assert twins.isascii() and twins in latin.values(), (letters, twins)


def test_a_name_mixing_latin_and_cyrillic_in_one_word_is_warned_about_once(tmp_path, capsys):
    root = folder(tmp_path / "imgs", [f"{CYR_C}at", "dog", "\u041c\u043e\u0441\u043a\u0432\u0430"], n=4)
    code, out, err = split(capsys, root, tmp_path / "splits", "--open-classes", "0")
    assert code == 0
    assert err.count("warning") == 1 and (
        f"openlt: warning: image folder {root}: the class folder '{CYR_C}at' mixes Latin letters with letters of "
        f"another script that look like Latin ones inside one word (Cyrillic '{CYR_C}' U+0441 looks like 'c'; code "
        f"points '\\u0441at'); rename it if that is a slip\n") in err  # a Cyrillic name alone ('Москва'): no warning
    image_folder_pool(root)
    assert "warning" not in capsys.readouterr().err  # once per process and folder


def test_names_of_one_other_script_and_accented_latin_names_are_accepted(tmp_path):
    names = ["\u041c\u043e\u0441\u043a\u0432\u0430", "Moskva", "caf\xe9", "cafe", "\u03b1\u03b2", "ab2"]
    root = folder(tmp_path / "imgs", names, n=2)
    assert image_folder_pool(root).class_names == sorted(names)


def test_names_that_differ_inside_are_still_two_classes(tmp_path):
    root = folder(tmp_path / "imgs", ["cat", "c at", "cat2", "ca"], n=4)
    assert image_folder_pool(root).class_names == ["c at", "ca", "cat", "cat2"]


@pytest.mark.parametrize("typed,readings", [
    ("3", "a number of held-out classes (3 classes chosen with the seed) or the class '3'"),
    (" 3 ", "a number of held-out classes (3 classes chosen with the seed) or the class '3'"),
    ("0", "a number of held-out classes (none held out) or the class '0'"),
])
def test_a_count_that_is_a_class_name_is_ambiguous(tmp_path, capsys, typed, readings):
    """Issue 14: `--open-classes 3` among folders 0..9 held out 3 random classes, while the folder '3' exists."""
    root = folder(tmp_path / "imgs", [str(c) for c in range(10)], n=4)
    out_dir = tmp_path / "splits"
    code, out, err = split(capsys, root, out_dir, "--open-classes", typed)
    n = typed.strip()
    assert code == 2 and out == "" and err == (
        f"openlt split: error: --open-classes {n} is ambiguous: {readings} (a class folder has that name); write "
        f"--open-classes count:{n} for the number, or --open-classes '[\"{n}\"]' for the class (names quoted in a "
        f"list)\n")
    assert not out_dir.exists()


def test_the_two_unambiguous_forms_of_a_count_and_a_name(tmp_path, capsys):
    root = folder(tmp_path / "imgs", [str(c) for c in range(10)], n=4)
    out_dir = tmp_path / "splits"
    assert split(capsys, root, out_dir, "--open-classes", "count:3")[0] == 0
    held = json.loads((out_dir / "manifest.json").read_text())["open_class_names"]
    assert len(held) == 3 and held != ["3"]
    assert split(capsys, root, out_dir, "--open-classes", " COUNT : 0 ", "--force")[0] == 0
    assert json.loads((out_dir / "manifest.json").read_text())["open_class_names"] == []
    assert split(capsys, root, out_dir, "--open-classes", '["3"]', "--force")[0] == 0
    assert json.loads((out_dir / "manifest.json").read_text())["open_class_names"] == ["3"]


def test_a_count_with_no_such_class_name_is_a_count(tmp_path, capsys):
    """Folders 0..9: 12 is no class name (a count, refused as too many); folders a..d: 2 is a count."""
    root = folder(tmp_path / "digits", [str(c) for c in range(10)], n=4)
    code, out, err = split(capsys, root, tmp_path / "s1", "--open-classes", "12")
    assert code == 2 and "open_classes=12: need fewer open classes than the 10 classes" in err
    root = folder(tmp_path / "letters", ["a", "b", "c", "d"], n=4)
    assert split(capsys, root, tmp_path / "s2", "--open-classes", "2")[0] == 0
    assert len(json.loads((tmp_path / "s2" / "manifest.json").read_text())["open_class_names"]) == 2


@pytest.mark.parametrize("typed", ["count:", "count:x", "count:-1", "count:1.5"])
def test_a_count_form_without_a_whole_number_is_refused(tmp_path, capsys, typed):
    root = folder(tmp_path / "imgs", ["a", "b", "c", "d"], n=4)
    code, out, err = split(capsys, root, tmp_path / "splits", "--open-classes", typed)
    assert code == 2 and err == (f"openlt split: error: --open-classes {typed!r}: after count: give a whole number of "
                                 f"held-out classes (count:3; count:0 for none)\n")


def _build(root, out, overrides, config=None):
    from openlt.config import build_config
    from openlt.data.build import _build_splits

    cfg = build_config(config, ["data.dataset=image-folder", f"data.root={root}", "data.split.profile=none",
                                "data.split.val_per_class=1", "data.split.test_per_class=2", *overrides])
    _build_splits(cfg, out)
    return json.loads((out / "manifest.json").read_text())["open_class_names"]


def test_data_split_open_classes_that_is_a_folder_name_is_ambiguous_in_a_config(tmp_path, capsys):
    """The same through `openlt train` (data.split.open_classes given as an override or in the config file), with
    count:N and ["N"] accepted; the default (2, not given) stays a number."""
    from openlt.errors import ConfigError

    root = folder(tmp_path / "imgs", [str(c) for c in range(10)], n=4)
    with pytest.raises(ConfigError) as info:
        _build(root, tmp_path / "a", ["data.split.open_classes=3"])
    assert str(info.value) == (
        "data.split.open_classes=3 (override 'data.split.open_classes=3') is ambiguous: a number of held-out classes "
        "(3 classes chosen with the seed) or the class '3' (a class folder has that name); write "
        "data.split.open_classes: count:3 for the number, or data.split.open_classes: [\"3\"] for the class (names "
        "quoted in a list)")
    (tmp_path / "c.yaml").write_text("name: c\ndata:\n  split:\n    open_classes: 0\n")
    with pytest.raises(ConfigError, match=rf"^data.split.open_classes=0 \({tmp_path / 'c.yaml'}, line 4\) is "
                                          r"ambiguous: a number of held-out classes \(none held out\) or the class '0'"):
        _build(root, tmp_path / "b", [], config=tmp_path / "c.yaml")
    held = _build(root, tmp_path / "c", ["data.split.open_classes=count:3"])
    assert len(held) == 3 and held != ["3"]
    assert _build(root, tmp_path / "d", ['data.split.open_classes=["3"]']) == ["3"]
    assert len(_build(root, tmp_path / "e", [])) == 2  # the default: a number, whatever the folder names
    with pytest.raises(ConfigError, match=r"^data.split.open_classes 'count:x': after count: give a whole number"):
        _build(root, tmp_path / "f", ["data.split.open_classes=count:x"])
    code = main(["train", str(tmp_path / "c.yaml"), "data.dataset=image-folder", f"data.root={root}",
                 f"out_dir={tmp_path / 'runs'}", "data.split.profile=none", "data.split.val_per_class=1",
                 "data.split.test_per_class=2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "data.split.open_classes=0 (" in err and "ambiguous" in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("folder_form, typed", [(NFD, NFC), (NFC, NFD)])
def test_an_open_class_typed_in_the_other_normal_form_is_that_class(tmp_path, capsys, folder_form, typed):
    """A class folder in NFD (macOS writes names so) held out as typed on a keyboard, NFC (was: `open class 'café'
    is not a class of this dataset (did you mean 'café'?)`, two names that print alike): the same class, whose
    folder name the manifest keeps as written. Folders that differ by normal form alone are refused already."""
    root = folder(tmp_path / "imgs", [folder_form, "dog", "emu"])
    code, _, err = split(capsys, root, tmp_path / "s", "--open-classes", typed)
    assert code == 0, err
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["open_class_names"] == [folder_form] and manifest["class_names"] == ["dog", "emu"]
