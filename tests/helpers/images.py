"""Tiny generated image folders, so no test needs a download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, counts: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    """root/<class>/<i>.png with a class-specific colour and pattern, so a small net can learn them."""
    rng = np.random.default_rng(seed)
    for c, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([(c * 67) % 256, (c * 151) % 256, (c * 29 + 80) % 256], dtype=np.float32)
        for i in range(n):
            img = np.tile(base, (size, size, 1)) + rng.normal(0, 20, (size, size, 3))
            img[:, (c % size)] = 255  # a class-specific stripe
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root
