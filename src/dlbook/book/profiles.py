"""Run profiles, defined once for the whole book.

``smoke`` runs every chapter on small subsets with one or two epochs, so a bare notebook run and the
test suite take minutes on 2 CPU cores; ``full`` is what the book's numbers come from. Each chapter
has its own block below (chapter 4's face finding and chapter 4b's real photographs in
``profiles_scenes``, the shared features in ``profiles_base``); ``get(profile, chapter)`` returns a
copy of one chapter's settings.
"""

from __future__ import annotations

import copy

from dlbook.book.profiles_base import FEATURES, PROFILE_NAMES
from dlbook.book.profiles_scenes import DETECTION, REAL_PHOTOS

# Chapter 1: NumPy networks from first principles. The CNN-ANN gap is measured at each of
# ``cnn_ann_sizes`` px (face-mask images, ``limit`` images, None: all) for ``seeds`` seeds; each
# seed draws its own duplicate-grouped split, ``cnn_ann_train_fraction`` of its training split,
# initial weights and mini-batch order. Each family's learning rate is chosen once from
# ``cnn_ann_learning_rates`` on the validation images of a separate tuning split at the largest
# size; the claim is judged at the largest size. A run whose validation accuracy stays below the
# majority-class share plus ``cnn_ann_failure_margin`` learnt nothing and restarts from fresh
# initial weights, at most ``cnn_ann_restarts`` times. Both nets (Keras twins of the NumPy nets,
# checked equal at ``cnn_ann_check_size`` px) train to early stopping on validation
# (``cnn_ann_patience`` epochs without improvement, at most ``cnn_ann_epoch_cap``). The NumPy nets themselves train on
# scikit-learn's digits for ``digits_epochs``. ``init_*`` size the deep network of the
# initialisation study; the NumPy-vs-Keras speed comparison times ``benchmark_rounds`` rounds of
# ``benchmark_steps`` minibatches at ``image_size`` px and keeps the best.
FUNDAMENTALS = {
    "smoke": {
        "image_size": 32,
        "color_mode": "rgb",
        "limit": 600,
        "seeds": 2,
        "cnn_ann_sizes": (8, 16, 32),
        "cnn_ann_learning_rates": (1e-3, 3e-3),
        "cnn_ann_restarts": 1,
        "cnn_ann_failure_margin": 0.05,
        "cnn_ann_check_size": 16,
        "cnn_ann_train_fraction": 0.8,
        "cnn_ann_epoch_cap": 3,
        "cnn_ann_patience": 1,
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
        "seeds": 10,
        "cnn_ann_sizes": (16, 32, 64),
        "cnn_ann_learning_rates": (3e-4, 1e-3, 3e-3),
        "cnn_ann_restarts": 1,
        "cnn_ann_failure_margin": 0.05,
        "cnn_ann_check_size": 16,
        "cnn_ann_train_fraction": 0.8,
        "cnn_ann_epoch_cap": 20,
        "cnn_ann_patience": 3,
        "digits_epochs": 20,
        "batch_size": 64,
        "init_depth": 15,
        "init_width": 256,
        "init_batch": 512,
        "benchmark_steps": 30,
        "benchmark_rounds": 3,
    },
}

# Chapter 2: optimisers, learning rates, regularisation. The sweeps train one-hidden-layer networks
# on ``image_size`` px grayscale vectors; ``numpy_*`` size the from-scratch NumPy runs; ``reg_*`` the
# regulariser study: a small CNN (``reg_filters``, ``reg_dense``) at each of ``reg_train_sizes``
# training-set sizes (``reg_train_size``, declared before the runs, gives the headline keys), per
# seed at ``reg_image_size`` px RGB, each strength of ``reg_grid`` tried and chosen on validation,
# early stopping after ``reg_patience`` epochs without improvement, at most ``reg_epochs``.
OPTIMIZATION = {
    "smoke": {
        "image_size": 12,
        "limit": 800,
        "path_steps": 1000,
        "keras_match_steps": 15,
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
        "numpy_optimizers": ("sgd", "momentum", "rmsprop", "adam", "adamw"),
        "numpy_epochs": 2,
        "numpy_reg_epochs": 4,
        "reg_hidden": 64,
        "reg_methods": ("none", "l1", "l2", "dropout", "batchnorm"),
        "reg_grid": {"l1": (1e-3,), "l2": (1e-2,), "dropout": (0.5,)},
        "reg_seeds": 2,
        "reg_image_size": 16,
        "reg_train_size": 64,
        "reg_train_sizes": (32, 48, 64),
        "reg_epochs": 3,
        "reg_patience": 2,
        "reg_batch_size": 32,
        "reg_learning_rate": 2e-3,
        "reg_filters": (4, 8),
        "reg_dense": 16,
        "reg_bn_momentum": 0.9,
        "high_lr_optimizers": ("sgd",),
        "high_lr_count": 1,
        "high_lr_variants": ("constant", "cosine", "clipnorm"),
    },
    "full": {
        "image_size": 16,
        "limit": None,
        "path_steps": 1000,
        "keras_match_steps": 60,
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
        "numpy_optimizers": ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"),
        "numpy_epochs": 8,
        "numpy_reg_epochs": 30,
        "reg_hidden": 128,
        "reg_methods": ("none", "l1", "l2", "dropout", "batchnorm"),
        "reg_grid": {"l1": (1e-4, 1e-3), "l2": (1e-3, 1e-2), "dropout": (0.3, 0.6)},
        "reg_seeds": 10,
        "reg_image_size": 32,
        "reg_train_size": 256,
        "reg_train_sizes": (128, 256, 512),
        "reg_epochs": 30,
        "reg_patience": 6,
        "reg_batch_size": 32,
        "reg_learning_rate": 2e-3,
        "reg_filters": (8, 16),
        "reg_dense": 32,
        "reg_bn_momentum": 0.9,
        "high_lr_optimizers": ("sgd", "adam"),
        "high_lr_count": 2,
        "high_lr_variants": (
            "constant", "step", "cosine", "warmup_cosine", "one_cycle", "clipnorm", "clipvalue",
        ),
    },
}  # fmt: skip

# Chapter 3: architecture families and pretrained backbones. Every family trains under the same
# budget (image size, batch, optimiser, constant learning rate) until the validation loss has not
# improved for ``patience`` epochs, at most ``epoch_cap``; one run per seed. Accuracy at equal time
# is each run's validation accuracy after ``equal_time_seconds`` of training (raised to the
# slowest first epoch if need be). The chapter reports every registered backbone, available or
# not, and times feature extraction at the later chapters' input size.
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
        "epoch_cap": 2,
        "patience": 1,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "equal_time_seconds": 1.0,
        "latency_batch_sizes": (1, 32),
        "latency_max_seconds": 0.2,
        "reference_models": ("mobilenet_v2",),
        "reference_batch_sizes": (1,),
        "backbones": _ARCHITECTURES_BACKBONES,
        "backbone_benchmark_images": 16,
        "backbone_image_size": FEATURES["smoke"]["image_size"],
        "features_backbone": FEATURES["smoke"]["backbone"],
    },
    "full": {
        "families": ("ann", "cnn", "resnet", "inception", "mobilenet"),
        "image_size": 32,
        "limit": None,
        "seeds": (0, 1, 2),
        "epoch_cap": 12,
        "patience": 2,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "equal_time_seconds": 10.0,
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
        "backbone_image_size": FEATURES["full"]["image_size"],
        "features_backbone": FEATURES["full"]["backbone"],
    },
}

# Chapter 4: the face-mask classifier and detector. Backbone features use the shared FEATURES
# image size and subset, so their cache is shared with chapters 3, 5 and 6. The custom CNN trains
# ``cnn_seeds`` times on grouped splits (its verdict) and ``cnn_random_seeds`` times on random ones,
# which only explain the gap to the dissertation (leakage); each training is about two and a half
# CPU minutes in the full profile, so seven fewer random-split ones pay for a 45-minute build
# (early stopping, at most ``cnn_epochs``); the best transfer model is refitted on ``transfer_repeats`` of each (a fine-tuned
# one on ``transfer_repeats_finetuned``); grouped cross-validation uses ``cv_folds`` folds and
# fine-tunes again per fold when ``cv_fine_tune`` (the smoke profile skips it): the ported
# networks named by ``cv_fine_tune_ports`` (their claims are judged on those folds) and
# ``fine_tune_backbone`` when ``cv_fine_tune_backbone``. The full profile leaves the latter out:
# its five fine-tunings of two EfficientNet-Lite0 blocks at 224 px ran all ten epochs, 520 s of
# chapter 4's wall time and about 470 CPU seconds of a cold build, the largest single cost in it
# that no verdict reads (the transfer claim is judged by nested cross-validation of the
# frozen-feature heads); the shipped model keeps its test-split and external-test figures.
# The dissertation's networks (ported torchvision MobileNetV2 and VGG16, the 2015 InceptionV3)
# run at ``backbone_image_sizes`` rather than ``image_size``: the crops' median short side is
# 140 px, so 128 px keeps their detail, and VGG16 (30 GFLOP an image at 224 px, 10 at 128) runs
# at 64 px to fit the build's budget. ``fine_tune_cuts`` gives each one's number of fine-tuned
# last blocks, ``fine_tune_ports`` which are fine-tuned (VGG16's last block, 7 M weights at 3x3,
# trains at about a minute an epoch on two cores even at 64 px: it stays frozen);
# ``cv_fine_tune_ports`` says which of them are fine-tuned
# again per fold ("all", "winner": the best on validation, "none"); ``cost_sample`` images time
# each network's extraction.
# ResNet50 stays listed: no ImageNet weights for it are reachable offline.
_MASK_BACKBONES = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet50",
    "mobilenet_v2_torchvision",
    "vgg16_torchvision",
    "inception_v3_fid",
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
        "cnn_seeds": 2,
        "cnn_random_seeds": 2,
        "transfer_repeats": 1,
        "transfer_repeats_finetuned": 1,
        "cv_folds": 5,
        "nested_inner_folds": 2,
        "cv_fine_tune": False,
        "cv_fine_tune_backbone": False,
        "fine_tune_epochs": 0,
        "fine_tune_backbone": "efficientnet_lite0",
        "fine_tune_blocks": 2,
        "fine_tune_patience": 2,
        "fine_tune_learning_rate": 1e-4,
        "backbone_image_sizes": {},
        "fine_tune_cuts": {},
        "fine_tune_ports": (),
        "cv_fine_tune_ports": "winner",
        "cost_sample": 32,
        "n_boot": 200,
        "severities": (3,),
        "robustness_limit": 60,
        "tflite_representative": 16,
        "tflite_test_limit": 40,
        "latency_repeats": 10,
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
        # ten seeds: a verdict on training runs rests on at least ten (the claims' rule table)
        "cnn_seeds": 10,
        "cnn_random_seeds": 3,
        "transfer_repeats": 3,
        "transfer_repeats_finetuned": 1,
        "cv_folds": 5,
        "nested_inner_folds": 3,
        "cv_fine_tune": True,
        "cv_fine_tune_backbone": False,
        "fine_tune_epochs": 10,
        "fine_tune_backbone": "efficientnet_lite0",
        "fine_tune_blocks": 2,
        "fine_tune_patience": 2,
        "fine_tune_learning_rate": 1e-4,
        "backbone_image_sizes": {
            "mobilenet_v2_torchvision": 128,
            "inception_v3_fid": 128,
            "vgg16_torchvision": 64,
        },
        "fine_tune_cuts": {
            "mobilenet_v2_torchvision": 2,
            "inception_v3_fid": 1,
            "vgg16_torchvision": 1,
        },
        "fine_tune_ports": ("mobilenet_v2_torchvision", "inception_v3_fid"),
        "cv_fine_tune_ports": "winner",
        "cost_sample": 64,
        "n_boot": 1000,
        "severities": (1, 3, 5),
        "robustness_limit": 120,
        "tflite_representative": 200,
        "tflite_test_limit": None,
        "latency_repeats": 50,
        "saliency_per_kind": 4,
    },
}

# Chapter 5: active learning. The target, declared here before any result is read, is
# ``target_fraction`` of the full-pool learner's validation accuracy; the 30% claim is read there,
# and ``target_fractions`` draw the saving against the target. The learner sees the backbone's
# full feature vectors (``n_components`` None) or a PCA projection. Of ``repeats`` repeats (each
# its own initial labelled set, model seed and pool order), the first ``selection_repeats`` choose
# the strategy on validation and the others report it on test. The weak pool (raw pixels) is the
# contrast where the features are not already near the ceiling; the sensitivity study varies the
# seed-set and batch sizes on validation only, up to ``sensitivity_budget`` labels.
ACTIVE_LEARNING = {
    "smoke": {
        "features": FEATURES["smoke"],
        "n_components": None,
        "repeats": 4,
        "selection_repeats": 2,
        "initial_size": 10,
        "batch_size": 20,
        "budget": 150,
        "target_fraction": 0.99,
        "target_fractions": (0.95, 0.97, 0.98, 0.99, 0.995),
        "n_boot": 200,
        "weak_image_size": 16,
        "weak_target_fraction": 0.97,
        "weak_strategies": ("random", "margin", "coreset", "badge"),
        "weak_repeats": 3,
        "weak_selection_repeats": 1,
        "weak_batch_size": 20,
        "weak_budget": 100,
        "sensitivity_repeats": 2,
        "sensitivity_initial_sizes": (2, 10),
        "sensitivity_batch_sizes": (10, 20),
        "sensitivity_budget": 60,
        "crosscheck_trials": 2,
    },
    "full": {
        "features": FEATURES["full"],
        "n_components": None,
        "repeats": 30,
        "selection_repeats": 10,
        "initial_size": 10,
        "batch_size": 50,
        "budget": 1000,
        "target_fraction": 0.99,
        "target_fractions": (0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995),
        "n_boot": 1000,
        "weak_image_size": 16,
        "weak_target_fraction": 0.97,
        "weak_strategies": ("random", "margin", "coreset", "badge"),
        # The weak-pool contrast and the sensitivity grid carry no verdict: fewer repeats there
        # pay for the 30 repeats of the main comparison (about 5 minutes of the cold build).
        "weak_repeats": 20,
        "weak_selection_repeats": 10,
        "weak_batch_size": 10,
        "weak_budget": 300,
        "sensitivity_repeats": 5,
        "sensitivity_initial_sizes": (2, 10, 40),
        "sensitivity_batch_sizes": (25, 50),
        "sensitivity_budget": 200,
        "crosscheck_trials": 10,
    },
}

# Chapter 6: conformal prediction. Re-splits mix the calib and test splits' cached probabilities;
# the shift study corrupts a subset of that pool (new features for it are the slow part).
CONFORMAL = {
    "smoke": {
        "features": FEATURES["smoke"],
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
        "features": FEATURES["full"],
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

# Chapter 7: the dissertation's future work, made real. Federated learning: ``clients`` simulated
# sites train a softmax head on the shared FEATURES for ``rounds`` rounds of ``local_epochs`` each
# on Flower's Ray simulation engine (``ray_cpus`` cores, ``client_cpus`` per client); non-IID
# partitions use Dirichlet label skew at each of ``alphas`` with log-normal sizes
# (``size_sigma``); DP runs clip each update to ``clipping_norm`` and add Gaussian noise at each
# of ``noise_multipliers``. Mask fit: synthetic masks on up to ``fit_train_faces`` /
# ``fit_test_faces`` without-mask faces (landmarks found at ``fit_work_size`` px).
# ``sources``: clients by image source (``experiments.future_work_sources``), crops at
# ``image_size`` px (scene faces at least ``min_face_px`` wide; ``face_mask_limit``,
# ``scene_photos`` and ``maskedfacenet_limit`` subsample, None: all), the backbone's last
# convolution + pooling + a softmax head trained for ``rounds`` x ``local_epochs`` epochs
# (momentum SGD at ``learning_rate``), over ``seeds`` seeds.
FUTURE_WORK = {
    "smoke": {
        "features": FEATURES["smoke"],
        "clients": 10,
        "rounds": 2,
        "local_epochs": 4,
        "learning_rate": 0.05,
        "batch_size": 16,
        "alphas": (0.1, 1.0),
        "size_sigma": 0.5,
        "min_client_size": 5,
        "strategies": ("fedavg", "fedprox"),
        "proximal_mu": 0.5,
        "server_learning_rate": 0.05,
        "noise_multipliers": (0.3,),
        "clipping_norm": 2.0,
        "dp_delta": 1e-3,
        "ray_cpus": 2,
        "client_cpus": 1.0,
        "n_boot": 200,
        "fit_train_faces": 40,
        "fit_test_faces": 20,
        "fit_work_size": 224,
        "fit_c": 0.1,
        "fit_gallery": 8,
        "save_fit_model": False,
        "sources": {
            "sources": ("face_mask", "scenes", "maskedfacenet"),
            "backbone": "efficientnet_lite0",
            "image_size": 96,
            "face_mask_limit": 300,
            "scene_photos": {"train": 30, "test": 15},
            "min_face_px": 16,
            "maskedfacenet_limit": 60,
            "maskedfacenet_test_share": 0.3,
            "seeds": 2,
            "rounds": 2,
            "local_epochs": 1,
            "learning_rate": 0.01,
            "batch_size": 32,
            "strategies": ("fedavg", "fedprox"),
            "proximal_mu": 0.1,
            "ray_cpus": 2,
            "client_cpus": 1.0,
            "examples": 6,
        },
    },
    "full": {
        "features": FEATURES["full"],
        "clients": 10,
        "rounds": 10,
        "local_epochs": 5,
        "learning_rate": 0.05,
        "batch_size": 16,
        "alphas": (0.1, 1.0),
        "size_sigma": 0.5,
        "min_client_size": 10,
        "strategies": ("fedavg", "fedprox", "fedadam"),
        "proximal_mu": 0.5,
        "server_learning_rate": 0.05,
        "noise_multipliers": (0.3, 1.0),
        "clipping_norm": 2.0,
        "dp_delta": 1e-3,
        "ray_cpus": 2,
        "client_cpus": 1.0,
        "n_boot": 1000,
        "fit_train_faces": 300,
        "fit_test_faces": 120,
        "fit_work_size": 224,
        "fit_c": 0.1,
        "fit_gallery": 12,
        "save_fit_model": True,
        "sources": {
            "sources": ("face_mask", "scenes", "maskedfacenet"),
            "backbone": "efficientnet_lite0",
            # 96 px: 3x3 maps under the top, about half the cost of 4x4 at 128 px; two thirds
            # of the scene faces are under 32 px wide anyway
            "image_size": 96,
            "face_mask_limit": None,
            "scene_photos": None,
            "min_face_px": 16,
            "maskedfacenet_limit": None,
            "maskedfacenet_test_share": 0.3,
            "seeds": 10,
            "rounds": 5,
            "local_epochs": 1,
            "learning_rate": 0.02,
            "batch_size": 128,
            "strategies": ("fedavg", "fedprox"),
            "proximal_mu": 0.1,
            "ray_cpus": 2,
            "client_cpus": 1.0,
            "examples": 6,
        },
    },
}

# ``python -m dlbook bench``: how much work each measurement does (``smoke`` takes seconds once
# caches exist): images through each feature runtime, files through predict (and one at a time),
# NumPy-vs-Keras CNN training steps and rounds, and the matrix-product probe's size.
BENCH = {
    "smoke": {
        "feature_images": 32,
        "predict_images": 48,
        "predict_reference_images": 16,
        "cnn_steps": 4,
        "cnn_rounds": 1,
        "matmul_size": 512,
    },
    "full": {
        "feature_images": 256,
        "predict_images": 512,
        "predict_reference_images": 96,
        "cnn_steps": 30,
        "cnn_rounds": 3,
        "matmul_size": 2048,
    },
}

CHAPTER_PROFILES = {
    "features": FEATURES,
    "fundamentals": FUNDAMENTALS,
    "optimization": OPTIMIZATION,
    "architectures": ARCHITECTURES,
    "mask_detection": MASK_DETECTION,
    "detection": DETECTION,
    "real_photos": REAL_PHOTOS,
    "active_learning": ACTIVE_LEARNING,
    "conformal": CONFORMAL,
    "future_work": FUTURE_WORK,
    "bench": BENCH,
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
