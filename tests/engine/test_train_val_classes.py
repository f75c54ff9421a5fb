"""Training says when the validation split has no image of some known class (own split files may leave a rare class
out): each epoch's validation top-1 per band, and the best checkpoint chosen on it, average over the classes it has
(was: no word while training; trial 19's leftover). The final table says it for the test split
(tests/reporting/test_run_report.py)."""

from types import SimpleNamespace

from openlt.data.splitfile import SplitEntries
from openlt.engine.train import _classes_without_val_images


def bundle(val_labels, names=("ant", "bee", "cat", "dog")):
    entries = {"val": SplitEntries(path=None, items=[f"x{i}.png" for i in range(len(val_labels))],
                                   labels=list(val_labels), lines=list(range(1, len(val_labels) + 1)))}
    return SimpleNamespace(entries=entries, num_classes=len(names), class_names=list(names))


def test_every_class_in_val_says_nothing():
    assert _classes_without_val_images(bundle([0, 1, 2, 3, 3])) == ""


def test_missing_classes_are_named():
    assert _classes_without_val_images(bundle([0, 1, 1])) == "2 classes (cat, dog)"
    assert _classes_without_val_images(bundle([0, 1, 2])) == "1 class (dog)"
    names = tuple(f"c{k}" for k in range(8))
    assert _classes_without_val_images(bundle([0], names)) == "7 classes (c1, c2, c3, c4, c5, ...)"


def test_no_val_split_file_says_nothing():
    assert _classes_without_val_images(SimpleNamespace(entries={}, num_classes=3, class_names=["a", "b", "c"])) == ""
