"""Transforms per dataset family: ImageNet-style (random-resized crop, flip, colour jitter as the OLTR
code), small-image (pad-and-crop, flip) for 28-32 px images, and face (aligned crops: flip only).
Inputs may be PIL images or tensors."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from openlt.errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# CIFAR: the LDAM-DRW code's values, used there for both CIFAR-10 and CIFAR-100, so that runs match the published
# recipe (that std is the one CIFAR code commonly copies; the per-pixel std of CIFAR-10 is 0.247/0.243/0.261).
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
STATS = {"fashion-mnist": ((0.2860,), (0.3530,)), "cifar10": CIFAR_STATS, "cifar100": CIFAR_STATS}


def normalisation(dataset: str, in_chans: int, family: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std), `in_chans` floats each, on the [0, 1] scale: 0.5 / 0.5 for the face family
    (pixels to [-1, 1], as ArcFace / insightface train on MS1M), else the data set's own statistics when they
    have `in_chans` channels (Fashion-MNIST; CIFAR: the LDAM-DRW code's), else ImageNet's for 3 channels,
    else 0.5 / 0.5."""
    if family == "face":
        return (0.5,) * in_chans, (0.5,) * in_chans
    if dataset in STATS and len(STATS[dataset][0]) == in_chans:
        return STATS[dataset]
    if in_chans == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * in_chans, (0.5,) * in_chans


class ScaleNormalize:
    """A uint8 (C, H, W) image -> float32 ``(x / 255 - mean) / std`` per channel: ``v2.ToDtype(torch.float32,
    scale=True)`` then ``v2.Normalize(mean, std)`` bit for bit (the same float operations in the same order), done
    in place on one contiguous float32 copy: 0.32 against 0.75 ms for a 224 px image on one thread, paid per image
    by the loader workers (session 17). Returns a plain float32 tensor; the input is not changed. Another dtype
    (or a non-tensor) goes through the two v2 transforms. `mean` / `std`: sequences of C floats; ValueError for a
    zero std (as v2.Normalize)."""

    def __init__(self, mean, std) -> None:
        if not all(float(s) for s in std):
            raise ValueError(f"std evaluated to zero, leading to division by zero: {list(std)}")
        self.mean = torch.tensor([float(m) for m in mean], dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor([float(s) for s in std], dtype=torch.float32).view(-1, 1, 1)
        self._general = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])

    def __call__(self, image):
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
            return self._general(image)
        x = image.as_subclass(torch.Tensor).contiguous().to(torch.float32).mul_(1.0 / 255)
        return x.sub_(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return f"ScaleNormalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def build_transform(family: str, train: bool, image_size: int, mean, std) -> v2.Compose:
    """The transform of `family`: a PIL image or uint8 (C, H, W) tensor -> float32 (C, image_size, image_size),
    scaled to [0, 1] and normalised with `mean` / `std` (sequences of C floats).

    small (28-32 px data): resize the short side to image_size and centre-crop, then for training a random
    crop with zero padding max(2, image_size // 8) and a horizontal flip. imagenet: for training
    RandomResizedCrop, horizontal flip and colour jitter 0.4 (as the OLTR code, Liu et al., CVPR 2019); for
    evaluation resize to image_size * 256/224 and centre-crop. face (112 x 112 aligned crops, MS1M-ArcFace):
    resize to image_size x image_size (a no-op at the crops' own size) and, for training, a horizontal flip
    only. ConfigError for another family."""
    if not train:  # one description of the evaluation transform: what a run saves, and what rebuilds it
        return eval_transform(eval_transform_spec(family, image_size, mean, std))
    to_float = [ScaleNormalize(mean, std)]
    if family == "small":
        ops = [v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size),
               v2.RandomCrop(image_size, padding=max(2, image_size // 8)), v2.RandomHorizontalFlip()]
        return v2.Compose(ops + to_float)
    if family == "imagenet":
        ops = [v2.ToImage(), v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip(),
               v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)]
        return v2.Compose(ops + to_float)
    if family == "face":  # aligned crops: a crop or colour jitter would undo the alignment; resize only if needed
        ops = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True), v2.RandomHorizontalFlip()]
        return v2.Compose(ops + to_float)
    raise ConfigError(f"unknown transform family {family!r}; known: {', '.join(FAMILIES)}")


FAMILIES = ("small", "imagenet", "face")


def eval_transform_spec(family: str, image_size: int, mean, std) -> dict:
    """The evaluation transform of `family` as JSON-ready data, enough to rebuild it without openlt: a PIL image
    converted to ``mode`` ("L" for 1 channel, else "RGB"); ``resize``: an int resizes the shorter side to it
    (aspect kept), [H, W] to exactly that size (bilinear, antialiased); ``crop``: [H, W] centre crop or None;
    pixels scaled to [0, 1] (uint8 / 255), then ``(x - mean) / std`` per channel; the result a float32
    (channels, size[0], size[1]) tensor. `mean` / `std`: sequences of C floats. ConfigError for an unknown
    family.

    small: resize the short side to image_size, centre-crop image_size; imagenet: resize to
    round(image_size * 256 / 224), centre-crop image_size; face: resize to image_size x image_size."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown transform family {family!r}; known: {', '.join(FAMILIES)}")
    resize: int | list[int] = {"small": image_size, "imagenet": int(round(image_size * 256 / 224)),
                               "face": [image_size, image_size]}[family]
    return {"family": family, "mode": "L" if len(mean) == 1 else "RGB", "channels": len(mean), "resize": resize,
            "crop": None if family == "face" else [image_size, image_size], "size": [image_size, image_size],
            "interpolation": "bilinear", "antialias": True, "scale": 1 / 255,
            "mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def eval_transform(spec: dict) -> v2.Compose:
    """The transform an :func:`eval_transform_spec` describes: a PIL image or uint8 (C, H, W) tensor -> float32
    (C, H, W) normalised tensor. `spec` is trusted (checked where it is read)."""
    resize = spec["resize"] if isinstance(spec["resize"], int) else tuple(spec["resize"])
    ops = [v2.ToImage(), v2.Resize(resize, antialias=True)]
    if spec["crop"] is not None:
        ops.append(v2.CenterCrop(tuple(spec["crop"])))
    return v2.Compose(ops + [ScaleNormalize(spec["mean"], spec["std"])])
