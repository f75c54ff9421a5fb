"""An optional split file (val, open) that lists no images is refused with its way out (trial 16 D13: an empty
open.txt was "split file .../open.txt lists no images", with no word that data.open_split=null trains without an
open set); an empty train or test file has none."""

from __future__ import annotations

import pytest

from openlt.cli import main
from openlt.config import build_config
from openlt.data.build import prepare_data
from openlt.errors import DataError

from images import make_image_folder

SPLIT = ["--dataset", "image-folder", "--profile", "none", "--open-classes", "1", "--val-per-class", "2",
         "--test-per-class", "2"]
INPUT = ["data.dataset=image-folder", "data.image_size=16"]


@pytest.mark.parametrize("split,said", [
    ("open", "; data.open_split=null trains without an open set"),
    ("val", "; data.val_split=null trains without a validation split"),
    ("test", ""),
])
def test_an_empty_split_file_says_how_to_do_without_it(tmp_path, split, said):
    make_image_folder(tmp_path / "data", {"ant": 12, "bee": 10, "cat": 8})
    assert main(["split", *SPLIT, "--root", str(tmp_path / "data"), "--out", str(tmp_path / "s")]) == 0
    (tmp_path / "s" / f"{split}.txt").write_text("# emptied\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        prepare_data(build_config(None, [*INPUT, f"data.split_dir={tmp_path / 's'}"]))
    assert str(caught.value) == f"split file {tmp_path / 's' / f'{split}.txt'} lists no images{said}"
    if said:  # the way out works
        data = prepare_data(build_config(None, [*INPUT, f"data.split_dir={tmp_path / 's'}", f"data.{split}_split=null"]))
        assert not data.has(split)
