"""Weight initialisers: ``init(shape, rng, dtype) -> ndarray``.

Fans follow Keras: for a dense kernel ``(fan_in, fan_out)``; for a convolution kernel
``(KH, KW, C_in, C_out)``, ``fan_in = KH * KW * C_in`` and ``fan_out = KH * KW * C_out``.

============== ===================================== ==================
initialiser    distribution                          fan used
============== ===================================== ==================
zeros          0                                     none
normal         N(0, 0.01^2)                          none
glorot_uniform U(-a, a), a = sqrt(6 / (in + out))    fan_in + fan_out
glorot_normal  N(0, 2 / (in + out))                  fan_in + fan_out
he_uniform     U(-a, a), a = sqrt(6 / in)            fan_in
he_normal      N(0, 2 / in)                          fan_in
============== ===================================== ==================

Glorot/Xavier keeps the variance of activations and of gradients roughly constant through
layers with a symmetric, unit-slope-at-zero activation (tanh); He doubles the variance to make up
for ReLU zeroing half of its inputs. Keras truncates its normal initialisers at two standard
deviations; these are plain normals, which is what the original papers analyse.
"""

from __future__ import annotations

import numpy as np


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a dense ``(in, out)`` or conv ``(KH, KW, C_in, C_out)`` kernel."""
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    if len(shape) == 4:
        receptive = int(shape[0] * shape[1])
        return receptive * int(shape[2]), receptive * int(shape[3])
    raise ValueError(f"shape={shape!r}: fans are defined for 2-d or 4-d kernels only")


def zeros(shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def normal(shape, rng: np.random.Generator, dtype=np.float32, std: float = 0.01) -> np.ndarray:
    """N(0, std^2), the same for every layer whatever its size."""
    return (std * rng.standard_normal(shape)).astype(dtype)


def glorot_uniform(shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    return (np.sqrt(2.0 / (fan_in + fan_out)) * rng.standard_normal(shape)).astype(dtype)


def he_uniform(shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    fan_in, _ = fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    fan_in, _ = fans(shape)
    return (np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)).astype(dtype)


INITIALIZERS = {
    "zeros": zeros,
    "normal": normal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
}
"""Name -> initialiser; ``xavier_*`` are accepted as aliases of ``glorot_*`` by ``get``."""


def get(name: str):
    """Look an initialiser up by name (``xavier_uniform`` / ``xavier_normal`` are aliases)."""
    key = name.replace("xavier", "glorot")
    if key not in INITIALIZERS:
        raise ValueError(f"initializer={name!r} is unknown; use one of {tuple(INITIALIZERS)}")
    return INITIALIZERS[key]
