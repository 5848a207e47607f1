"""A tiny synthetic dataset in the face-mask folder format, for tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from dlbook.facemask.data.manifest import CLASS_NAMES


def make_synthetic_dataset(
    root: str | os.PathLike, n_per_class: int = 20, image_size: int = 48, seed: int = 0
) -> Path:
    """Write a tiny two-class dataset in the face-mask folder format and return ``root``.

    A ``without_mask`` image is a skin-coloured oval face on a random background; a
    ``with_mask`` image adds a coloured band over the lower half of the face. Files alternate
    between JPEG and PNG so both decoders are exercised.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
    for label, class_name in enumerate(CLASS_NAMES):
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for index in range(n_per_class):
            cx, cy = rng.uniform(0.4, 0.6, size=2)
            face = ((xx - cx) / 0.28) ** 2 + ((yy - cy) / 0.36) ** 2 <= 1
            image = np.empty((image_size, image_size, 3), dtype=np.float64)
            image[:] = rng.uniform(0, 255, size=3)
            image[face] = np.array([224, 172, 140]) * rng.uniform(0.7, 1.1)
            if label == 1:
                band = face & (yy > cy + 0.02)
                image[band] = rng.uniform(0, 255, size=3)
            image += rng.normal(0, 6, size=image.shape)
            pixels = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
            suffix = "jpg" if index % 2 == 0 else "png"
            pixels.save(root / class_name / f"{class_name}_{index:03d}.{suffix}")
    return root
