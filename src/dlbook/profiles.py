"""Run profiles, defined once for the whole book.

``smoke`` runs every chapter on small subsets with one or two epochs, so a bare notebook run and the
test suite take minutes on 2 CPU cores; ``full`` is what the book's numbers come from. Each chapter
has its own block below; ``get(profile, chapter)`` returns a copy of one chapter's settings.
"""

from __future__ import annotations

import copy

PROFILE_NAMES = ("smoke", "full")

# Shared by chapters 3-6: which backbone's pooled features the later chapters reuse, at what input
# size, and how many images (None: all of them).
FEATURES = {
    "smoke": {"backbone": "efficientnet_lite0", "image_size": 128, "limit": 600},
    "full": {"backbone": "efficientnet_lite0", "image_size": 224, "limit": None},
}

# Chapter 1: NumPy networks from first principles.
FUNDAMENTALS = {
    "smoke": {},
    "full": {},
}

# Chapter 2: optimisers, learning rates, regularisation.
OPTIMIZATION = {
    "smoke": {},
    "full": {},
}

# Chapter 3: architecture families and pretrained backbones.
ARCHITECTURES = {
    "smoke": {},
    "full": {},
}

# Chapter 4: the face-mask classifier and detector.
MASK_DETECTION = {
    "smoke": {},
    "full": {},
}

# Chapter 5: active learning. The target is ``target_fraction`` of the full-pool accuracy; the
# weak pool (raw pixels) is the contrast where the features are not already near the ceiling.
ACTIVE_LEARNING = {
    "smoke": {
        "n_components": 32,
        "repeats": 3,
        "initial_size": 10,
        "batch_size": 10,
        "budget": 60,
        "target_fraction": 0.99,
        "n_boot": 200,
        "weak_image_size": 16,
        "weak_target_fraction": 0.97,
        "weak_strategies": ("random", "margin", "coreset", "badge"),
        "weak_repeats": 2,
        "weak_batch_size": 20,
        "weak_budget": 100,
        "sensitivity_repeats": 2,
        "sensitivity_initial_sizes": (2, 10),
        "sensitivity_batch_sizes": (10, 20),
        "crosscheck_trials": 2,
    },
    "full": {
        "n_components": 64,
        "repeats": 20,
        "initial_size": 10,
        "batch_size": 5,
        "budget": 100,
        "target_fraction": 0.99,
        "n_boot": 1000,
        "weak_image_size": 16,
        "weak_target_fraction": 0.97,
        "weak_strategies": ("random", "margin", "coreset", "badge"),
        "weak_repeats": 20,
        "weak_batch_size": 10,
        "weak_budget": 300,
        "sensitivity_repeats": 10,
        "sensitivity_initial_sizes": (2, 10, 40),
        "sensitivity_batch_sizes": (5, 20),
        "crosscheck_trials": 10,
    },
}

# Chapter 6: conformal prediction.
CONFORMAL = {
    "smoke": {},
    "full": {},
}

CHAPTER_PROFILES = {
    "features": FEATURES,
    "fundamentals": FUNDAMENTALS,
    "optimization": OPTIMIZATION,
    "architectures": ARCHITECTURES,
    "mask_detection": MASK_DETECTION,
    "active_learning": ACTIVE_LEARNING,
    "conformal": CONFORMAL,
}


def get(profile: str, chapter: str) -> dict:
    """Return a copy of ``chapter``'s settings under ``profile``.

    Raises
    ------
    ValueError
        If the profile or chapter is unknown; the message lists the accepted names.
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile={profile!r} is unknown; use one of {PROFILE_NAMES}")
    if chapter not in CHAPTER_PROFILES:
        raise ValueError(f"chapter={chapter!r} is unknown; use one of {tuple(CHAPTER_PROFILES)}")
    return copy.deepcopy(CHAPTER_PROFILES[chapter][profile])
