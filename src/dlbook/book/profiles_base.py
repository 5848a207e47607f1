"""Settings every chapter's block may build on: the profile names and the shared features.

``profiles`` re-exports both; a block defined outside ``profiles`` (``profiles_scenes``) imports
them from here, so neither module imports the other in a circle.
"""

from __future__ import annotations

PROFILE_NAMES = ("smoke", "full")

# Shared by chapters 3-6: which backbone's pooled features the later chapters reuse, at what input
# size, and how many images (None: all of them).
FEATURES = {
    "smoke": {"backbone": "efficientnet_lite0", "image_size": 128, "limit": 600},
    "full": {"backbone": "efficientnet_lite0", "image_size": 224, "limit": None},
}
