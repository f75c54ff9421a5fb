"""An export bundle describes how openlt decodes image files (trial 10 D11): openlt.json `decoding` (mode
conversion, 16-bit and float scaling, alpha, EXIF orientation not applied, channels) and README.md in words, so
that a 16-bit PNG read as the bundle says gives `openlt predict`'s input; `source.run` is an absolute path."""

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from openlt.data.datasets import open_image
from openlt.engine.export import export_run
from openlt.engine.inference import inference_spec
from openlt.engine.runtime import trained_config
from synthetic_run import make_run


def _decode_as_the_bundle_says(path, decoding: dict) -> Image.Image:
    """A reader without openlt, following openlt.json `decoding` to the letter."""
    img = Image.open(path)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        assert "/ 257" in decoding["sixteen_bit"]
        img = Image.fromarray(np.clip(np.rint(np.asarray(img) / 257.0), 0, 255).astype(np.uint8))
    return img.convert(decoding["mode"])


def test_the_bundle_records_the_decoding_and_an_absolute_source(tmp_path, monkeypatch, single_thread):
    run, _ = make_run(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    bundle = export_run(type(run)(Path(os.path.relpath(run.path))), "out")  # the run named relatively, as on a command line
    saved = json.loads((tmp_path / "out" / "openlt.json").read_text())
    assert saved["source"]["run"] == str(tmp_path / "run") and os.path.isabs(saved["source"]["run"])  # was "run"
    decoding = saved["decoding"]
    assert decoding == bundle["decoding"] and decoding["mode"] == saved["input"]["mode"] == "RGB"
    assert decoding["exif_orientation"].startswith("not applied")
    assert "x 255" in decoding["float"] and "refused" in decoding["float"]
    assert "dropped" in decoding["alpha"] and "repeated" in decoding["channels"]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert str(tmp_path / "run") in readme and "EXIF orientation: not applied" in readme
    assert "value / 257" in readme and "outside [0, 1] are refused" in readme and "(x - mean) / std" in readme

    ramp = (np.arange(256).reshape(16, 16) * 257).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")  # PIL's convert("RGB") alone clips it to white
    mine = np.asarray(_decode_as_the_bundle_says(tmp_path / "g16.png", decoding))
    assert np.array_equal(mine, np.asarray(open_image(tmp_path / "g16.png", "RGB")))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "g16.png").convert("RGB")), mine)
    spec = inference_spec(run, trained_config(run, "best", "export", stage1=False))
    assert saved["transform"] == spec.transform
