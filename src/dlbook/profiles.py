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

# Chapter 1: NumPy networks from first principles. ANN vs CNN runs on the face-mask images at
# ``image_size`` px (``limit`` images, None: all) and on scikit-learn's digits, ``seeds`` times;
# ``init_*`` size the deep network of the initialisation study; the NumPy-vs-Keras speed comparison
# times ``benchmark_rounds`` rounds of ``benchmark_steps`` minibatches and keeps the best.
FUNDAMENTALS = {
    "smoke": {
        "image_size": 32,
        "color_mode": "rgb",
        "limit": 600,
        "seeds": 2,
        "face_mask_epochs": 2,
        "digits_epochs": 4,
        "batch_size": 64,
        "init_depth": 10,
        "init_width": 128,
        "init_batch": 256,
        "benchmark_steps": 8,
        "benchmark_rounds": 2,
    },
    "full": {
        "image_size": 32,
        "color_mode": "rgb",
        "limit": None,
        "seeds": 5,
        "face_mask_epochs": 8,
        "digits_epochs": 20,
        "batch_size": 64,
        "init_depth": 15,
        "init_width": 256,
        "init_batch": 512,
        "benchmark_steps": 30,
        "benchmark_rounds": 3,
    },
}

# Chapter 2: optimisers, learning rates, regularisation.
OPTIMIZATION = {
    "smoke": {
        "image_size": 12,
        "limit": 800,
        "path_steps": 1000,
        "sweep_optimizers": ("sgd", "momentum", "adam"),
        "lr_min": 0.001,
        "lr_max": 0.6,
        "lr_count": 3,
        "seeds": 2,
        "initializers": ("he", "xavier"),
        "epochs": 2,
        "batch_size": 64,
        "hidden": 16,
        "batch_sizes": (32, 128),
        "batch_base_lr": 0.05,
        "reg_methods": ("none", "l2", "batchnorm"),
        "reg_seeds": 3,
        "reg_train_size": 120,
        "reg_epochs": 8,
        "reg_hidden": 64,
        "high_lr_optimizers": ("sgd",),
        "high_lr_count": 1,
        "high_lr_variants": ("constant", "cosine", "clipnorm"),
    },
    "full": {
        "image_size": 16,
        "limit": None,
        "path_steps": 1000,
        "sweep_optimizers": ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"),
        "lr_min": 0.001,
        "lr_max": 0.6,
        "lr_count": 8,
        "seeds": 3,
        "initializers": ("he", "xavier"),
        "epochs": 5,
        "batch_size": 64,
        "hidden": 32,
        "batch_sizes": (32, 64, 128, 256),
        "batch_base_lr": 0.05,
        "reg_methods": (
            "none", "l1", "l2", "dropout", "batchnorm",
            "l2+dropout", "batchnorm+dropout", "batchnorm+l2",
        ),
        "reg_seeds": 10,
        "reg_train_size": 200,
        "reg_epochs": 25,
        "reg_hidden": 128,
        "high_lr_optimizers": ("sgd", "adam"),
        "high_lr_count": 2,
        "high_lr_variants": (
            "constant", "step", "cosine", "warmup_cosine", "one_cycle", "clipnorm", "clipvalue",
        ),
    },
}  # fmt: skip

# Chapter 3: architecture families and pretrained backbones. Every family trains under the same
# budget (image size, epochs, batch, optimiser, learning rate); one run per seed. The chapter reports
# every registered backbone, available or not.
_ARCHITECTURES_BACKBONES = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet50",
    "vgg16",
    "inception_v3",
    "mobilenet_v2",
)
ARCHITECTURES = {
    "smoke": {
        "families": ("ann", "cnn", "resnet", "inception", "mobilenet"),
        "image_size": 32,
        "limit": 600,
        "seeds": (0,),
        "epochs": 1,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "lr_schedule": "cosine",
        "latency_batch_sizes": (1, 32),
        "latency_max_seconds": 0.2,
        "reference_models": ("mobilenet_v2",),
        "reference_batch_sizes": (1,),
        "backbones": _ARCHITECTURES_BACKBONES,
        "backbone_benchmark_images": 16,
    },
    "full": {
        "families": ("ann", "cnn", "resnet", "inception", "mobilenet"),
        "image_size": 48,
        "limit": None,
        "seeds": (0, 1, 2),
        "epochs": 3,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "lr_schedule": "cosine",
        "latency_batch_sizes": (1, 32),
        "latency_max_seconds": 1.0,
        "reference_models": (
            "resnet50",
            "vgg16",
            "inception_v3",
            "mobilenet_v2",
            "efficientnet_lite0",
        ),
        "reference_batch_sizes": (1, 32),
        "backbones": _ARCHITECTURES_BACKBONES,
        "backbone_benchmark_images": 64,
    },
}

# Chapter 4: the face-mask classifier and detector. Backbone features use the shared FEATURES
# image size and subset, so their cache is shared with chapters 3, 5 and 6. The custom CNN trains
# ``cnn_seeds`` times on grouped splits and as many on random ones (early stopping, at most
# ``cnn_epochs``); the best transfer model is refitted on ``transfer_repeats`` of each (a fine-tuned
# one on ``transfer_repeats_finetuned``); grouped cross-validation uses ``cv_folds`` folds and
# fine-tunes again per fold only when ``cv_fine_tune`` (five fine-tunings do not fit the budget).
_MASK_BACKBONES = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet50",
    "vgg16",
    "inception_v3",
    "mobilenet_v2",
)
MASK_DETECTION = {
    "smoke": {
        "image_size": FEATURES["smoke"]["image_size"],
        "limit": FEATURES["smoke"]["limit"],
        "cnn_image_size": 64,
        "backbones": ("efficientnet_lite0",),
        "cnn_filters": (16, 32, 64),
        "cnn_epochs": 2,
        "cnn_patience": 2,
        "cnn_min_epochs": 1,
        "cnn_seeds": 1,
        "transfer_repeats": 1,
        "transfer_repeats_finetuned": 1,
        "cv_folds": 5,
        "cv_fine_tune": False,
        "fine_tune_epochs": 0,
        "fine_tune_backbone": "efficientnet_lite0",
        "fine_tune_blocks": 2,
        "fine_tune_patience": 2,
        "fine_tune_learning_rate": 1e-4,
        "n_boot": 200,
        "severities": (3,),
        "robustness_limit": 60,
        "tflite_representative": 16,
        "tflite_test_limit": 40,
        "latency_repeats": 10,
        "detectors": ("mtcnn",),
        "scenes": 3,
        "scene_pool": 30,
        "saliency_per_kind": 1,
    },
    "full": {
        "image_size": FEATURES["full"]["image_size"],
        "limit": FEATURES["full"]["limit"],
        "cnn_image_size": 64,
        "backbones": _MASK_BACKBONES,
        "cnn_filters": (16, 32, 64),
        "cnn_epochs": 25,
        "cnn_patience": 4,
        "cnn_min_epochs": 8,
        "cnn_seeds": 3,
        "transfer_repeats": 3,
        "transfer_repeats_finetuned": 1,
        "cv_folds": 5,
        "cv_fine_tune": False,
        "fine_tune_epochs": 10,
        "fine_tune_backbone": "efficientnet_lite0",
        "fine_tune_blocks": 2,
        "fine_tune_patience": 2,
        "fine_tune_learning_rate": 1e-4,
        "n_boot": 1000,
        "severities": (1, 3, 5),
        "robustness_limit": 120,
        "tflite_representative": 200,
        "tflite_test_limit": None,
        "latency_repeats": 50,
        "detectors": ("haar_default", "mtcnn"),
        "scenes": 40,
        "scene_pool": 300,
        "saliency_per_kind": 4,
    },
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
