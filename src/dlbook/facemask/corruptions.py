"""Image corruptions at graded severities, for robustness and distribution-shift experiments."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)

# Parameter of each corruption at severity 1..5.
_BLUR_SIGMA = (0.5, 1.0, 1.5, 2.5, 4.0)  # pixels at 64 px, scaled up for larger images
_NOISE_STD = (8, 16, 28, 44, 64)  # grey levels
_BRIGHTNESS_SHIFT = (20, 40, 70, 100, 140)  # grey levels added
_CONTRAST_FACTOR = (0.8, 0.6, 0.45, 0.3, 0.2)  # multiplies the deviation from the mean
_JPEG_QUALITY = (60, 35, 20, 10, 5)
_ROTATION_DEGREES = (5, 10, 20, 30, 45)
_OCCLUSION_SIDE = (0.15, 0.25, 0.35, 0.45, 0.55)  # fraction of the image side


def _check(images: np.ndarray, severity: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 of shape (N, H, W, C); got {images.dtype} {images.shape}"
        )
    if severity not in SEVERITIES:
        raise ValueError(f"severity={severity!r} must be one of {SEVERITIES}")
    return images


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def blur(images, severity, rng):
    sigma = _BLUR_SIGMA[severity - 1] * max(1.0, images.shape[1] / 64)
    return _to_uint8(ndimage.gaussian_filter(images.astype(np.float32), (0, sigma, sigma, 0)))


def noise(images, severity, rng):
    return _to_uint8(images + rng.normal(0, _NOISE_STD[severity - 1], size=images.shape))


def brightness(images, severity, rng):
    return _to_uint8(images.astype(np.float32) + _BRIGHTNESS_SHIFT[severity - 1])


def contrast(images, severity, rng):
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8(mean + (images - mean) * _CONTRAST_FACTOR[severity - 1])


def jpeg(images, severity, rng):
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        pil.save(buffer, format="JPEG", quality=_JPEG_QUALITY[severity - 1])
        decoded = np.asarray(Image.open(buffer))
        out[i] = decoded[..., None] if image.shape[-1] == 1 else decoded
    return out


def rotation(images, severity, rng):
    degrees = _ROTATION_DEGREES[severity - 1]
    angles = rng.choice([-degrees, degrees], size=len(images))
    return np.stack(
        [
            ndimage.rotate(image, angle, axes=(0, 1), reshape=False, order=1, mode="nearest")
            for image, angle in zip(images, angles, strict=True)
        ]
    )


def occlusion(images, severity, rng):
    out = images.copy()
    height, width = images.shape[1:3]
    side = max(1, int(round(_OCCLUSION_SIDE[severity - 1] * min(height, width))))
    tops = rng.integers(0, height - side + 1, size=len(images))
    lefts = rng.integers(0, width - side + 1, size=len(images))
    for image, top, left in zip(out, tops, lefts, strict=True):
        image[top : top + side, left : left + side] = 127
    return out


CORRUPTIONS = {
    "blur": blur,
    "noise": noise,
    "brightness": brightness,
    "contrast": contrast,
    "jpeg": jpeg,
    "rotation": rotation,
    "occlusion": occlusion,
}


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """Return a corrupted copy of ``images``.

    Parameters
    ----------
    images : ndarray, shape (N, H, W, C), uint8
    kind : one of ``CORRUPTIONS`` ("blur", "noise", "brightness", "contrast", "jpeg",
        "rotation", "occlusion").
    severity : 1 (mild) to 5 (severe).
    seed : seed of the random parts (noise, rotation direction, occluder position).

    Returns
    -------
    ndarray, shape (N, H, W, C), uint8
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind={kind!r} is unknown; use one of {tuple(CORRUPTIONS)}")
    images = _check(images, severity)
    return CORRUPTIONS[kind](images, severity, np.random.default_rng(seed))
