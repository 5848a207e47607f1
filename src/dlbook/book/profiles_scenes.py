"""Run profiles of chapter 4's face finding and chapter 4b's real photographs (see ``profiles``).

Kept apart from ``profiles`` for its length only; ``profiles.get`` and ``CHAPTER_PROFILES`` serve
these blocks like every other.
"""

from __future__ import annotations

from dlbook.book.profiles_base import FEATURES

# Chapter 4, finding faces (``experiments.detection``): detectors compared on scenes of 640x480
# composed from ``scene_pool`` faces of each split, ``faces_per_scene`` faces of ``face_size`` px
# (longer side); BlazeFace thresholds (``min_scores``) and the detector are chosen on
# ``val_scenes`` (precision at least ``min_precision``), scored on ``test_scenes``; the pipeline is timed on
# ``pipeline_frames`` further scenes with the winner and each of ``pipeline_alternatives``.
DETECTION = {
    "smoke": {
        "detectors": ("blazeface_full", "tiled_blazeface_short", "blazeface_two_scales"),
        "min_precision": 0.95,
        "min_scores": (0.3, 0.4, 0.5),
        "scene_pool": 40,
        "val_scenes": 4,
        "test_scenes": 6,
        "faces_per_scene": (2, 4),
        "face_size": (60, 220),
        "pipeline_frames": 5,
        "pipeline_alternatives": ("blazeface_full",),
    },
    "full": {
        "detectors": (
            "haar_default",
            "mtcnn",
            "blazeface_full",
            "blazeface_short",
            "coarse_tiled_blazeface_short",
            "tiled_blazeface_short",
            "tiled_blazeface_full",
            "blazeface_union",
            "blazeface_two_scales",
            "tiled_blazeface_union",
            "blazeface_mtcnn_union",
        ),
        "min_precision": 0.95,
        "min_scores": (0.3, 0.35, 0.4, 0.45, 0.5),
        "scene_pool": 300,
        "val_scenes": 150,
        "test_scenes": 150,
        "faces_per_scene": (2, 4),
        "face_size": (60, 220),
        "pipeline_frames": 30,
        "pipeline_alternatives": ("tiled_blazeface_short", "blazeface_full"),
    },
}

# Chapter 4b, real photographs (``experiments.real_photos``): ``photos`` per part of the committed
# mask-scenes split (None: all), ``image_size`` and ``backbone`` of the real-photo head's crops and
# features, ``background_per_photo`` "not a face" boxes per train/val photo, the head strengths
# tried on validation, ``n_boot`` photo resamples per interval, ``min_width`` of the external test,
# ``gallery`` test photos drawn, ``maskedfacenet_limit`` fit-training faces (None: all 1,054), ``speed_frames`` test photos at 640x480 timed on one core through the
# shipped pipeline, which is first checked against the chapter's boxes on ``ship_check_photos``;
# ``tile_shares``: tile sides (share of the shorter side) for the off-the-shelf detector compared.
REAL_PHOTOS = {
    "smoke": {
        "photos": {"train": 12, "val": 6, "test": 6},
        "image_size": FEATURES["smoke"]["image_size"],
        "backbone": FEATURES["smoke"]["backbone"],
        "background_per_photo": 3,
        "strengths": (0.1, 1.0),
        "n_boot": 20,
        "min_width": 32,
        "gallery": 2,
        "maskedfacenet_limit": 80,
        "speed_frames": 3,
        "ship_check_photos": 3,
        "tile_shares": (0.45, 0.3),
        # (b) the book's own detector: boxes the real-photo head judges score at least
        # ``own_head_min_score`` (the lowest cut validation tries for the detector alone)
        "own_head_min_score": 0.1,
        "own_detector": {
            "backbone": "efficientnet_lite0",
            "input_sizes": (320,),
            "width": 32,
            "depth": 1,
            "epochs": 4,
            "eval_every": 2,
            "batch": 4,
            "learning_rate": 0.002,
            "size_weight": 1.0,
            "dropout": 0.2,
            "weight_decay": 0.001,
            "schedule": "constant",
            "class_balance": 0.0,
            "average": 0.0,
            "min_score": 0.02,
            "max_boxes": 200,
            "thresholds": (0.1, 0.2, 0.3, 0.4, 0.5),
            "max_ious": (1.0, 0.5),
        },
    },
    "full": {
        "photos": {"train": None, "val": None, "test": None},
        # two thirds of the faces are under 32 px wide: 128-px crops hold all they show, at
        # about a third of the backbone's cost at 224 px
        "image_size": 128,
        "backbone": FEATURES["full"]["backbone"],
        "background_per_photo": 3,
        "strengths": (0.01, 0.1, 1.0),
        "n_boot": 100,
        "min_width": 32,
        "gallery": 6,
        "maskedfacenet_limit": None,
        "speed_frames": 30,
        "ship_check_photos": 10,
        "tile_shares": (0.45, 0.3, 0.2),
        "own_head_min_score": 0.1,
        # 512 px: the photos' long side is at most 400 px; scaled by 1.28 an 8 px face spans about
        # 10 px, more than one stride-8 cell (640 px was no better on validation, and dearer)
        "own_detector": {
            "backbone": "efficientnet_lite0",
            "input_sizes": (512,),
            "width": 64,
            "depth": 2,
            "epochs": 24,
            "eval_every": 2,
            "batch": 8,
            "learning_rate": 0.002,
            "size_weight": 1.0,
            "dropout": 0.2,
            "weight_decay": 0.001,
            "schedule": "constant",
            "class_balance": 0.0,
            "average": 0.0,
            "min_score": 0.02,
            "max_boxes": 300,
            "thresholds": (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6),
            # overlapping boxes suppressed above this IoU (1: none), chosen on validation
            "max_ious": (1.0, 0.7, 0.5, 0.3),
        },
    },
}
