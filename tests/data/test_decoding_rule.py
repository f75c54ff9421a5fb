"""The scaling of high-bit images depends on the mode alone, never on the pixel values (trial 10 D2): a float
('F') image is read as [0, 1] and refused outside it, a 32-bit integer ('I') image as 16-bit and refused outside
0..65535, naming the file, in every reader (the split check, the loaders, predict) and for PIL images given to
the API; datasets.decoding describes the rule as data (an export bundle's openlt.json)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from openlt.data.datasets import check_decodable, convert_image, decoding, open_image
from openlt.errors import DataError


def _gray(img: Image.Image) -> np.ndarray:
    return np.asarray(convert_image(img, "L"))


def test_a_float_image_is_read_as_0_to_1_whatever_one_pixel_holds():
    a = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    assert _gray(Image.fromarray(a)).max() == 255 and _gray(Image.fromarray(a)).min() == 0
    dark = a * 0.5  # a dark [0, 1] image stays dark (was: the same, but only while every value was in [0, 1])
    assert _gray(Image.fromarray(dark)).max() == 128


@pytest.mark.parametrize("value, found", [(1.01, "values from 0 to 1.01"), (-0.5, "values from -0.5 to"),
                                          (255.0, "values from 0 to 255"), (np.nan, "non-finite values")])
def test_a_float_image_outside_0_1_is_refused_naming_the_file_and_its_range(tmp_path, value, found):
    a = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    a[0, 1] = 0.0
    a[0, 0] = value  # one overshoot made the whole image almost black (max 1 of 255) without a word
    with pytest.raises(DataError, match="the image is a float \\('F'\\) image with ") as exc:
        convert_image(Image.fromarray(a), "RGB")
    assert found in str(exc.value) and "[0, 1]" in str(exc.value)
    Image.fromarray(a).save(tmp_path / "f.tif")
    for read in (lambda: open_image(tmp_path / "f.tif", "L"), lambda: open_image(tmp_path / "f.tif", None),
                 lambda: check_decodable([tmp_path / "f.tif"], ["train.txt, line 3"])):
        with pytest.raises(DataError) as exc:
            read()
        assert f"{tmp_path / 'f.tif'} is a float ('F') image with {found}" in str(exc.value)


def test_a_32_bit_integer_image_is_16_bit_whatever_its_maximum():
    x = (np.arange(256).reshape(16, 16) * 250 // 255).astype(np.int32)  # max 250: was read as 8-bit (x 257 brighter)
    y = x.copy()
    y[0, 0] = 300  # was: now 16-bit, /257
    assert _gray(Image.fromarray(x)).max() == 1 and _gray(Image.fromarray(y)).max() == 1
    ramp = (np.arange(256).reshape(16, 16) * 257).astype(np.int32)
    assert np.array_equal(_gray(Image.fromarray(ramp)), np.arange(256).reshape(16, 16))
    assert np.array_equal(_gray(Image.fromarray(ramp.astype(np.uint16))), np.arange(256).reshape(16, 16))  # I;16


@pytest.mark.parametrize("value", [70000, -1])
def test_a_32_bit_integer_image_outside_16_bits_is_refused_naming_the_file(tmp_path, value):
    x = np.zeros((16, 16), np.int32)
    x[3, 3] = value  # was: rescaled from its own min..max (the scaling chosen by the data)
    Image.fromarray(x).save(tmp_path / "i.tif")
    with pytest.raises(DataError) as exc:
        open_image(tmp_path / "i.tif", "RGB")
    assert str(exc.value).startswith(f"{tmp_path / 'i.tif'} is a 32-bit integer ('I') image with values from ")
    assert "openlt reads 'I' images as 16-bit (0..65535, / 257)" in str(exc.value)


def test_16_bit_files_of_every_format_are_scaled_alike(tmp_path):
    ramp = (np.arange(256).reshape(16, 16) * 257).astype(np.uint16)
    for name in ("g.png", "g.pgm", "g.tif"):
        Image.fromarray(ramp).save(tmp_path / name)
        assert np.array_equal(np.asarray(open_image(tmp_path / name, "L")), np.arange(256).reshape(16, 16)), name


def test_the_decoding_description_states_the_rule_and_exif():
    gray, rgb = decoding("L"), decoding("RGB")
    assert gray["mode"] == "L" and rgb["mode"] == "RGB" and "luma" in gray["channels"] and "repeated" in rgb["channels"]
    assert "/ 257" in rgb["sixteen_bit"] and "refused" in rgb["sixteen_bit"]
    assert "x 255" in rgb["float"] and "outside [0, 1] are refused" in rgb["float"]
    assert rgb["exif_orientation"].startswith("not applied")
