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

# Chapter 5: active learning.
ACTIVE_LEARNING = {
    "smoke": {},
    "full": {},
}

# Chapter 6: conformal prediction. Re-splits mix the calib and test splits' cached probabilities;
# the shift study corrupts a subset of that pool (new features for it are the slow part).
CONFORMAL = {
    "smoke": {
        "alphas": (0.05, 0.1, 0.2),
        "resplits": 200,
        "operating_alphas": (0.05, 0.1, 0.15, 0.2, 0.3),
        "operating_alpha": 0.05,
        "raps": {"lam": 0.01, "k_reg": 1},
        "shift": (("blur", 3), ("noise", 3)),
        "shift_limit": 120,
        "shift_alphas": (0.1,),
    },
    "full": {
        "alphas": (0.01, 0.02, 0.05, 0.1, 0.2),
        "resplits": 500,
        "operating_alphas": (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3),
        "operating_alpha": 0.05,
        "raps": {"lam": 0.01, "k_reg": 1},
        "shift": (("blur", 3), ("noise", 3)),
        "shift_limit": 300,
        "shift_alphas": (0.05, 0.1),
    },
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
