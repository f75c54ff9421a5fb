"""`openlt identify`'s header check of every listed image (identify.check_headers) runs on datasets.check_each, the
threaded core of the split check (check_decodable): PIL's DecompressionBombWarning is silenced around its threads
(an image between PIL's warning and error limits passes, without PIL's raw warning), a bad image is named with its
list file and line, the first one in list order."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
from PIL import Image

from openlt.data.datasets import FileImageLoader
from openlt.data.splitfile import SplitEntries
from openlt.engine.identify import check_headers
from openlt.errors import DataError


# test_datasets_decode.py's `folder` fixture (images a-c 16 x 16, big 20 x 20: above PIL's warning limit, lowered to
# 300 pixels; error limit 600), loaded from its file (the tests are no package: --import-mode=importlib)
_spec = importlib.util.spec_from_file_location("datasets_decode_tests", Path(__file__).parents[1] / "data" /
                                               "test_datasets_decode.py")
_decode_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_decode_tests)
folder = _decode_tests.folder


def entries(folder, items):
    return SplitEntries(folder / "dis.txt", items, [-1] * len(items), list(range(3, 3 + len(items))))


def test_a_large_image_passes_the_header_check_without_pils_warning(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning from a header thread would fail the check
        check_headers(entries(folder, ["a.png", "big.png", "b.png", "c.png"] * 10), FileImageLoader(folder))


def test_the_first_bad_image_in_list_order_is_named_with_its_list_file_and_line(folder):
    (folder / "empty.png").write_bytes(b"")
    (folder / "page.png").write_bytes(b"<html></html>")
    Image.new("RGB", (25, 25)).save(folder / "bomb.png")  # 625 > 2 x 300
    loader = FileImageLoader(folder)
    with pytest.raises(DataError) as caught:
        check_headers(entries(folder, ["a.png", "page.png", "empty.png"]), loader)
    assert str(caught.value).startswith(f"{folder / 'dis.txt'}, line 4: image 'page.png' under {folder} is not an "
                                        f"image PIL can read: ")
    with pytest.raises(DataError) as caught:
        check_headers(entries(folder, ["a.png", "b.png", "empty.png", "page.png"]), loader)
    assert str(caught.value) == f"{folder / 'dis.txt'}, line 5: image 'empty.png' is an empty file (0 bytes) under {folder}"
    with pytest.raises(DataError, match=r"dis.txt, line 3: image too large: .*bomb.png has 625 pixels, above PIL's "
                                        r"limit of 600"):
        check_headers(entries(folder, ["bomb.png"]), loader)
