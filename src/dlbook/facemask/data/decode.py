"""Decoding image files into arrays.

Decoding copes with the real files' mix of formats and modes; an unreadable file is reported by
name and skipped, never fatal. Decoded arrays are cached on disk by (data fingerprint, image size,
colour mode).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dlbook.core import cache, paths
from dlbook.facemask.data.manifest import DataError

COLOR_MODES = {"rgb": 3, "grayscale": 1}
BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto white."""


class ImageDecodeError(DataError):
    """One file could not be decoded; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason


def _to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB image, compositing transparency onto white and scaling 16-bit to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.uint32)
        scaled = (values >> 8) if values.max(initial=0) > 255 else values
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    elif image.mode == "F":
        values = np.clip(np.asarray(image, dtype=np.float32), 0, 255)
        image = Image.fromarray(values.astype(np.uint8), mode="L")
    has_alpha = (
        image.mode in ("RGBA", "LA", "PA")
        or (image.mode == "P" and "transparency" in image.info)
        or (image.mode in ("L", "RGB") and "transparency" in image.info)
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(
    path: str | os.PathLike, image_size: int | None = 64, color_mode: str = "rgb"
) -> np.ndarray:
    """Decode one image file into a uint8 array.

    Parameters
    ----------
    path : path of the file; its format is read from its content, not its extension.
    image_size : side of the square output (the image is resized without cropping), or None to
        keep the original size.
    color_mode : "rgb" or "grayscale".

    Returns
    -------
    ndarray, shape (image_size, image_size, C), uint8, C = 3 (rgb) or 1 (grayscale).

    Raises
    ------
    ImageDecodeError
        For an empty, truncated, unrecognised or otherwise undecodable file.
    """
    if color_mode not in COLOR_MODES:
        raise ValueError(
            f"color_mode={color_mode!r} is not supported; use one of {tuple(COLOR_MODES)}"
        )
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ImageDecodeError(path, f"cannot read the file ({error.strerror})") from error
    if size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            if image_size and image.format == "JPEG":
                image.draft("RGB", (image_size, image_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                image = _to_rgb(image)
    except UnidentifiedImageError as error:
        raise ImageDecodeError(path, "not an image in a format Pillow recognises") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(path, f"corrupt or truncated image ({error})") from error
    if image_size:
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    if color_mode == "grayscale":
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]
    return np.asarray(image, dtype=np.uint8)


def decode_images(
    data_dir: str | os.PathLike,
    rel_paths: list[str],
    image_size: int,
    color_mode: str,
    progress: bool = True,
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Decode ``rel_paths``; return (images (N, S, S, C) uint8, decoded paths, skipped).

    Unreadable files are reported on stderr with the reason and listed in ``skipped`` as
    ``(path, reason)``; the others are decoded.
    """
    channels = COLOR_MODES[color_mode]
    images = np.empty((len(rel_paths), image_size, image_size, channels), dtype=np.uint8)
    kept, skipped = [], []
    from dlbook.core import logs

    with logs.progress(
        len(rel_paths), desc=f"decoding {image_size}px {color_mode}", unit="img", enabled=progress
    ) as bar:
        for rel in rel_paths:
            bar.update(1)
            try:
                images[len(kept)] = decode_image(Path(data_dir) / rel, image_size, color_mode)
            except ImageDecodeError as error:
                print(f"skipped {error.path}: {error.reason}", file=sys.stderr)
                skipped.append((rel, error.reason))
                continue
            kept.append(rel)
    return images[: len(kept)], kept, skipped


def _cached_decode(data_dir, rel_paths, fingerprint, image_size, color_mode, progress):
    cache_file = paths.cache_dir() / "images" / f"{fingerprint}-{image_size}-{color_mode}.npz"
    if cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as stored:
            skipped = list(
                zip(
                    stored["skipped_paths"].tolist(),
                    stored["skipped_reasons"].tolist(),
                    strict=True,
                )
            )
            for rel, reason in skipped:
                print(f"skipped {Path(data_dir) / rel}: {reason}", file=sys.stderr)
            return stored["images"], stored["paths"].tolist(), skipped
    images, kept, skipped = decode_images(data_dir, rel_paths, image_size, color_mode, progress)
    stored = {
        "images": images,
        "paths": np.array(kept, dtype=str),
        "skipped_paths": np.array([s[0] for s in skipped], dtype=str),
        "skipped_reasons": np.array([s[1] for s in skipped], dtype=str),
    }
    cache.write_atomically(cache_file, lambda tmp: np.savez(tmp, **stored))
    return images, kept, skipped
