"""Chapter-level experiments: loops over seeds, settings and models, one module per chapter."""

from __future__ import annotations

from collections.abc import Mapping


def cached_features(features: Mapping, data_dir=None, seed: int = 0):
    """The face-mask images' pooled backbone features under a ``profiles.FEATURES`` block.

    ``features`` gives ``backbone``, ``image_size`` and ``limit``; the images, labels and split
    come from ``data.load_face_mask``. The features are cached by content, so chapters share one
    extraction. Returns a ``backbones.FeatureSet``.
    """
    from dlbook import backbones, data

    images = data.load_face_mask(
        data_dir=data_dir,
        image_size=features["image_size"],
        limit=features["limit"],
        seed=seed,
        progress=False,
    )
    return backbones.FeatureSet(
        features=backbones.features(features["backbone"], images.images, progress=False),
        labels=images.labels,
        split=images.split,
        paths=list(images.paths),
        groups=images.groups,
        backbone=features["backbone"],
        image_size=features["image_size"],
    )
