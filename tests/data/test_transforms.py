"""Input size, transform and stem: small images (at most 64 px) train at their own size by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from images import make_image_folder
from PIL import Image

from openlt.config import build_config
from openlt.data.build import SMALL_IMAGES, native_image_size, prepare_data
from openlt.data.splitfile import SplitEntries
from openlt.data.transforms import build_transform
from openlt.models.model import build_model

SPLIT = ["data.dataset=image-folder", "data.split.n_max=12", "data.split.n_min=4", "data.split.open_classes=0",
         "data.split.val_per_class=2", "data.split.test_per_class=2", "data.split.order=label"]


def prepare(images: Path, tmp: Path, *overrides: str):
    cfg = build_config(None, [f"data.root={images}", *SPLIT, *overrides])
    return cfg, prepare_data(cfg, default_split_dir=tmp / f"splits-{len(list(tmp.iterdir()))}")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    return make_image_folder(tmp / "images", {"ant": 16, "bee": 10, "cat": 8}, size=20), tmp


def test_small_images_train_at_their_own_size_with_the_small_transform_and_stem(small):
    images, tmp = small
    cfg, data = prepare(images, tmp)
    assert (data.image_size, data.family) == (20, "small")
    assert cfg.data.image_size == 20  # recorded in the config a run saves
    assert "input 20 px (the training images' own size" in data.input_note and "small-input stem" in data.input_note
    image, _ = data.dataset("train", train=True)[0]
    assert image.shape == (3, 20, 20) and image.dtype == torch.float32  # not upsampled to 224
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    assert model.backbone.small_input


def test_a_given_size_or_family_is_kept(small):
    images, tmp = small
    cfg, data = prepare(images, tmp, "data.image_size=32")
    assert (data.image_size, data.family) == (32, "small") and "(data.image_size)" in data.input_note
    cfg, data = prepare(images, tmp, "data.transform=imagenet")  # asked for ImageNet-style: the old default size
    assert (data.image_size, data.family) == (224, "imagenet") and cfg.data.image_size is None
    assert "ImageNet stem" in data.input_note
    cfg, data = prepare(images, tmp, "model.small_input=false")
    assert data.image_size == 20 and data.input_note.endswith("small transform, ImageNet stem")


def test_large_images_keep_the_imagenet_default(tmp_path):
    images = make_image_folder(tmp_path / "images", {"ant": 16, "bee": 10, "cat": 8}, size=SMALL_IMAGES + 1)
    cfg, data = prepare(images, tmp_path)
    assert (data.image_size, data.family) == (224, "imagenet") and cfg.data.image_size is None
    assert f"larger than {SMALL_IMAGES} px" in data.input_note and "ImageNet stem" in data.input_note


def test_native_size_reads_headers_of_evenly_spaced_images_and_skips_unreadable_ones(tmp_path):
    sizes = [(20, 30), (28, 28), (10, 12), (64, 40)]
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    loader = type("Loader", (), {"root": tmp_path})()
    entries = SplitEntries(tmp_path / "train.txt", [f"{i}.png" for i in range(4)] + ["bad.png"], [0] * 5, [1] * 5)
    assert native_image_size(loader, entries) == (64, 40)  # largest side, largest shorter side
    assert native_image_size(loader, entries, count=2) == (30, 20)  # images 0 and 2 of 5
    empty = SplitEntries(tmp_path / "train.txt", ["bad.png"], [0], [1])
    assert native_image_size(loader, empty) == (0, 0)


def test_small_transform_keeps_the_native_size_and_normalises():
    image = Image.fromarray(np.full((20, 20), 255, np.uint8))
    out = build_transform("small", False, 20, (0.5,), (0.5,))(image)
    assert out.shape == (1, 20, 20) and torch.allclose(out, torch.ones(1, 20, 20))
    train = build_transform("small", True, 20, (0.5,), (0.5,))(image)
    assert train.shape == (1, 20, 20)  # pad-and-crop keeps the size



# ScaleNormalize: the last step of every transform, v2.ToDtype(scale) + v2.Normalize bit for bit, faster per image
@pytest.mark.parametrize("shape, crop", [((3, 40, 50), None), ((3, 256, 300), (16, 240, 20, 244)),
                                         ((1, 28, 28), None), ((1, 32, 32), (2, 30, 1, 29))])
def test_scale_normalize_equals_todtype_then_normalize_bit_for_bit(shape, crop):
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from openlt.data.transforms import IMAGENET_MEAN, IMAGENET_STD, STATS, ScaleNormalize

    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if shape[0] == 3 else STATS["fashion-mnist"]
    gen = torch.Generator().manual_seed(shape[1])
    image = tv_tensors.Image(torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen))
    if crop is not None:  # a centre crop's view: not contiguous
        image = image[:, crop[0]:crop[1], crop[2]:crop[3]]
    before = image.clone()
    expected = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])(image)
    got = ScaleNormalize(mean, std)(image)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert torch.equal(got, expected.as_subclass(torch.Tensor))
    assert torch.equal(image, before)  # the input is not changed


def test_scale_normalize_takes_other_dtypes_the_v2_way_and_refuses_a_zero_std():
    from torchvision.transforms import v2

    from openlt.data.transforms import ScaleNormalize

    floats = torch.rand(3, 8, 8)
    expected = v2.Normalize((0.5,) * 3, (0.25,) * 3)(floats)
    assert torch.equal(ScaleNormalize((0.5,) * 3, (0.25,) * 3)(floats), expected)
    with pytest.raises(ValueError, match="std evaluated to zero"):
        ScaleNormalize((0.5,), (0.0,))


@pytest.mark.parametrize("family, size", [("imagenet", 224), ("small", 28), ("face", 112)])
def test_the_evaluation_transform_gives_the_pixels_of_the_v2_pipeline(family, size):
    from torchvision.transforms import v2

    from openlt.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    rng = np.random.default_rng(size)
    image = Image.fromarray(rng.integers(0, 256, (size + 13, size + 29, 3), dtype=np.uint8))
    resize = {"imagenet": 256, "small": size, "face": (size, size)}[family]
    reference = [v2.ToImage(), v2.Resize(resize, antialias=True)]
    reference += [] if family == "face" else [v2.CenterCrop(size)]
    reference += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    got = build_transform(family, False, size, IMAGENET_MEAN, IMAGENET_STD)(image)
    assert torch.equal(got, v2.Compose(reference)(image).as_subclass(torch.Tensor))
