"""Prediction reads high-bit images by their mode, never by their values (trial 10 D2): a float image with one
pixel at 1.01 (was: almost black, labelled without a word) is refused, naming the file on its line (CLI) or as a
DataError (`run.predict` with a PIL image), while a [0, 1] float image and a 16-bit PNG are labelled as their
8-bit equivalent."""

import numpy as np
import pytest
from PIL import Image

import openlt
from openlt.cli import main
from openlt.errors import DataError
from synthetic_run import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    made, _ = make_run(tmp_path_factory.mktemp("decoding") / "run")
    return made


def ramp() -> np.ndarray:
    return np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)


def test_a_float_image_outside_0_1_is_refused_by_predict_naming_the_file(run, tmp_path, capsys, single_thread):
    a = ramp()
    b = a.copy()
    b[15, 15] = 1.01
    Image.fromarray(a).save(tmp_path / "ok.tif")
    Image.fromarray(b).save(tmp_path / "over.tif")
    code = main(["predict", str(run.path), str(tmp_path / "ok.tif"), str(tmp_path / "over.tif")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 2 and "\terror:" not in lines[0]
    assert lines[1] == (f"{tmp_path / 'over.tif'}\terror: {tmp_path / 'over.tif'} is a float ('F') image with values "
                        f"from 0 to 1.01; openlt reads float images as [0, 1] (x 255): clip or rescale it to [0, 1], "
                        f"or save it as an 8- or 16-bit image")


def test_the_api_refuses_it_too_and_labels_float_and_16_bit_images_as_8_bit(run, tmp_path, single_thread):
    loaded = openlt.load_run(run.path, device="cpu")
    b = ramp()
    b[15, 15] = 1.01
    with pytest.raises(DataError, match=r"float \('F'\) image with values from 0 to 1.01"):
        loaded.predict(Image.fromarray(b))
    eight = (ramp() * 255).round().astype(np.uint8)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    want = loaded.predict(Image.fromarray(eight))[0]
    for given in (Image.fromarray(ramp()), str(tmp_path / "g16.png")):
        got = loaded.predict(given)[0]
        assert got["top_class"] == want["top_class"] and got["confidence"] == pytest.approx(want["confidence"], abs=1e-6)
