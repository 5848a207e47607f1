"""The judges of chapter 4's model claims: the custom CNN, the dissertation's transfer-learned
networks (as the book's ports of their ImageNet weights), the best transfer-learned model and
InceptionV3's "perfect recall". Each picks the intervals a claim is about; the verdict is
``table.decide``'s. Every claim of accuracy also carries the external test's figure.

A dissertation network is judged on its fine-tuned row (top blocks, ``<port>_finetuned_cv_*``)
when chapter 4 saved one, else on its frozen-feature head (``<port>_cv_*``): an order fixed in
advance, so no choice between the two looks at the folds that score them.
"""

from __future__ import annotations

from collections.abc import Callable

from dlbook.book import present
from dlbook.book.claims.dissertation import (
    DISSERTATION_MODELS,
    NO_PORT,
    PERFECT_RECALL,
    PORTS,
    STAND_IN,
    TRANSFER_NETWORKS,
)
from dlbook.book.claims.rules import budget_of, convergence_gaps, selection_gaps
from dlbook.book.claims.table import FOLDS, SEEDS, Part, decide
from dlbook.book.claims.verdicts import NOT_MEASURED, Verdict
from dlbook.book.claims.wording import human, interval_of, pct, sentences

MIN_CUSTOM_CNN_PIXELS = 64
"""Smallest input size at which the custom CNN can show the accuracy the dissertation states."""
METRICS = ("accuracy", "precision", "recall")


# ---------------------------------------------------------------------------------------------
# Reading a model's row


def _row(mask: dict, model: str, cv: bool = True) -> dict | None:
    """A model's figures: ``{"key": accuracy key, "prefix": metric prefix, "cv": bool}``.

    ``cv`` reads grouped cross-validation (``<model>_cv_accuracy``) and falls back to the
    single grouped split (``<model>_accuracy``) only when it is False or absent.
    """
    if cv and mask.get(f"{model}_cv_accuracy") is not None:
        return {"model": model, "prefix": f"{model}_cv_", "cv": True}
    if mask.get(f"{model}_accuracy") is not None:
        return {"model": model, "prefix": f"{model}_", "cv": False}
    return None


def network_row(mask: dict, network: str) -> dict | None:
    """The row a dissertation network is judged on: its port's fine-tuned cross-validated row,
    else the port's frozen-feature one (None when neither was saved)."""
    port = PORTS.get(network, network)
    for model in (f"{port}_finetuned", port):
        if mask.get(f"{model}_cv_accuracy") is not None:
            return {"model": model, "prefix": f"{model}_cv_", "cv": True}
    return None


def _parts(mask: dict, row: dict, claimed: dict) -> list[Part]:
    """The claim's accuracy, precision and recall beside the row's values and intervals."""
    parts = []
    for metric in METRICS:
        key = row["prefix"] + metric
        found = (mask.get(key), mask.get(f"{key}_ci_low"), mask.get(f"{key}_ci_high"))
        unit = "percent" if metric == "accuracy" else "fraction"
        parts.append(Part(metric, claimed[metric], *found, unit=unit))
    return parts


def _how(mask: dict, row: dict) -> str:
    if row.get("nested"):
        return (
            f"nested grouped {mask.get('nested_cv_folds', '?')}-fold cross-validation (backbone "
            "and head chosen inside each outer fold)"
        )
    if row["cv"]:
        return f"grouped {mask.get('cv_folds', '?')}-fold cross-validation"
    return "one grouped test split"


def _row_text(mask: dict, row: dict, label: str = "") -> str:
    """``label accuracy 99.6% (95% CI ...) on grouped 5-fold cross-validation, precision ...``."""
    key = row["prefix"] + "accuracy"
    text = f"{label}accuracy {pct(mask[key])}{interval_of(mask, key)} on {_how(mask, row)}"
    precision, recall = mask.get(row["prefix"] + "precision"), mask.get(row["prefix"] + "recall")
    if precision is not None and recall is not None:
        text += f", precision {precision:.3f}, recall {recall:.3f}"
    return text


def external_test(results: dict[str, dict]) -> str:
    """The external test's figure in words: the shipped classifier on real-photo face crops."""
    real = results.get("real_photos", {})
    accuracy = real.get("external_test_accuracy")
    if accuracy is None:
        return "not measured: the real-photo chapter saved no external test"
    shipped = results.get("mask_detection", {}).get("best_model")
    count, width = real.get("external_test_n"), real.get("external_test_min_width")
    return (
        f"{pct(accuracy)}{interval_of(real, 'external_test_accuracy')} on "
        + (f"{present.number(count)} " if count is not None else "")
        + "face crops"
        + (f" at least {present.number(width)} px wide" if width is not None else "")
        + " from the test photos of the mask scenes, scored once by the shipped classifier"
        + (f" ({human(shipped)})" if shipped else "")
    )


# ---------------------------------------------------------------------------------------------
# The custom CNN


def _random_split_note(mask: dict, grouped: float, claimed: float) -> str:
    """The custom CNN on a plain random split, and what near-duplicate leakage adds to it."""
    random_acc = mask.get("custom_cnn_random_split_accuracy")
    if random_acc is None:
        return "The random-split comparison was not run"
    paired = mask.get("custom_cnn_random_minus_grouped_points")
    leak = paired / 100 if paired is not None else random_acc - grouped
    seeds = mask.get("custom_cnn_random_split_seeds")
    return (
        f"On a plain stratified random split (the usual practice) the same recipe reaches "
        f"{pct(random_acc)}{interval_of(mask, 'custom_cnn_random_split_accuracy')}"
        + (f" over {present.number(seeds)} seeds" if seeds is not None else "")
        + f" (the dissertation states {pct(claimed)}). "
        + (
            f"Near-duplicates shared between training and test images on that split "
            f"account for {present.points(100 * leak)} (random minus grouped split, on the "
            "seeds that ran both)"
            if leak > 0
            else "A random split gains nothing over the grouped one here"
        )
    )


def judge_custom_cnn(results: dict[str, dict], claim) -> Verdict:
    """The custom CNN's accuracy, precision and recall on the grouped test split, each with its
    interval over seeds, trained to early stopping at 64 px or more. The note says what a plain
    random split of the same data gives, and how much near-duplicate leakage explains."""
    mask = results.get("mask_detection", {})
    claimed = DISSERTATION_MODELS["custom_cnn"]
    row = _row(mask, "custom_cnn", cv=False)
    external = external_test(results)
    if row is None:
        return Verdict(
            "-", NOT_MEASURED, "the custom CNN was not trained in chapter 4", external=external
        )
    seeds = mask.get("custom_cnn_accuracy_seeds")
    label = f"mean of {seeds} seeds: " if seeds and seeds > 1 else ""
    regime = convergence_gaps(mask.get("custom_cnn_stopped_early_fraction"))
    pixels = mask.get("custom_cnn_image_size")
    if pixels is None:
        regime.append("the image size is not recorded")
    elif pixels < MIN_CUSTOM_CNN_PIXELS:
        regime.append(f"images of {pixels} px, below {MIN_CUSTOM_CNN_PIXELS} px")
    return decide(
        claim,
        _parts(mask, row, claimed),
        seeds,
        _row_text(mask, row, label),
        regime_gaps=regime,
        needed=(
            f"at least {SEEDS.minimum} seeds trained to early stopping on validation at "
            f"{MIN_CUSTOM_CNN_PIXELS} px or more, over several grouped splits"
        ),
        notes=[_random_split_note(mask, mask[row["prefix"] + "accuracy"], claimed["accuracy"])],
        budget=budget_of(
            mask,
            pixels="custom_cnn_image_size",
            epochs="custom_cnn_epochs_used",
            epoch_cap="custom_cnn_epoch_cap",
            seeds="custom_cnn_accuracy_seeds",
        ),
        external=external,
    )


# ---------------------------------------------------------------------------------------------
# The dissertation's networks


def _not_run(mask: dict, network: str) -> str:
    """Why a dissertation network has no row, in words."""
    if network in NO_PORT:
        return f"{human(network)}: not measured, {NO_PORT[network]}"
    port = PORTS[network]
    if mask.get(f"{port}_available") is False:
        return (
            f"{human(network)}: not measured, its ImageNet weights ({human(port)}) were not "
            "found offline (python -m dlbook weights fetch installs them)"
        )
    return (
        f"{human(network)}: not measured, chapter 4 saved no cross-validated row for "
        f"{human(port)} in this build"
    )


def judge_network_claim(network: str) -> Callable[[dict, object], Verdict]:
    """Judge of "``network`` reaches the accuracy, precision and recall the dissertation states"
    (``DISSERTATION_MODELS[network]``), on the book's port of its ImageNet weights."""
    claimed = DISSERTATION_MODELS[network]

    def judge(results: dict[str, dict], claim) -> Verdict:
        mask = results.get("mask_detection", {})
        row = network_row(mask, network)
        external = external_test(results)
        if row is None:
            return Verdict(
                "-", NOT_MEASURED, sentences([_not_run(mask, network)]), None, {}, "", external
            )
        return decide(
            claim,
            _parts(mask, row, claimed),
            mask.get("cv_folds"),
            _row_text(mask, row, f"{human(row['model'])}: "),
            needed=f"at least {FOLDS.minimum} grouped folds",
            budget=budget_of(mask, folds="cv_folds"),
            external=external,
        )

    judge.__doc__ = (
        f"{human(network)}'s accuracy, precision and recall over grouped cross-validation folds, "
        f"on the book's port {human(PORTS[network])}: the fine-tuned row when saved, else the "
        "frozen-feature head (an order fixed in advance)."
    )
    return judge


def judge_perfect_recall(results: dict[str, dict], claim) -> Verdict:
    """InceptionV3's recall of masked faces over grouped cross-validation folds, on the book's
    port of Google's 2015 InceptionV3 (fine-tuned row when saved, else frozen-feature head)."""
    mask = results.get("mask_detection", {})
    row = network_row(mask, "inception_v3")
    if row is None:
        return Verdict("-", NOT_MEASURED, sentences([_not_run(mask, "inception_v3")]))
    key = row["prefix"] + "recall"
    found = (mask.get(key), mask.get(f"{key}_ci_low"), mask.get(f"{key}_ci_high"))
    part = Part("recall", PERFECT_RECALL, *found, unit="fraction")
    measured = "-"
    if found[0] is not None:
        interval = f" (95% CI {found[1]:.3f}-{found[2]:.3f})" if None not in found else ""
        measured = f"{human(row['model'])}: recall {found[0]:.3f}{interval} on {_how(mask, row)}"
    return decide(
        claim,
        [part],
        mask.get("cv_folds"),
        measured,
        needed=f"at least {FOLDS.minimum} grouped folds",
        budget=budget_of(mask, folds="cv_folds"),
    )


# ---------------------------------------------------------------------------------------------
# The best transfer-learned model


def networks_compared(mask: dict) -> list[str]:
    """The backbones chapter 4 compared (``transfer_networks_compared``, a list or a comma-
    separated string), else the dissertation's ports and the stand-in that have a row."""
    saved = mask.get("transfer_networks_compared")
    if isinstance(saved, str):
        saved = [s.strip() for s in saved.split(",") if s.strip()]
    if saved:
        return list(saved)
    candidates = [PORTS[n] for n in TRANSFER_NETWORKS if n in PORTS] + [STAND_IN]
    return [c for c in candidates if network_row(mask, c) is not None]


def comparison_text(mask: dict) -> str:
    """Every network compared, with its accuracy, and the dissertation's networks not run."""
    measured = []
    for name in networks_compared(mask):
        row = network_row(mask, name)
        if row is None:
            measured.append(f"{human(name)} not measured")
            continue
        key = row["prefix"] + "accuracy"
        measured.append(f"{human(row['model'])} {pct(mask[key])}{interval_of(mask, key)}")
    missing = [_not_run(mask, n) for n in TRANSFER_NETWORKS if network_row(mask, n) is None]
    if not measured and not missing:
        return ""
    text = "Networks compared over the grouped folds: " + ("; ".join(measured) or "none")
    return sentences([text, *missing])


def _audit_note(mask: dict, best: str, cv: bool) -> str:
    """The accuracy with suspected label issues set aside: a check of the audit, not evidence."""
    audited = mask.get(f"{best}_cv_accuracy_audited" if cv else f"{best}_accuracy_audited")
    if audited is None:
        return ""
    issues = mask.get("label_issues_suspected")
    count = f"the {issues} " if issues is not None else "the "
    return (
        f"Not evidence: with {count}suspected label issues set aside, accuracy is {pct(audited)}; "
        "the issues are the model's own out-of-fold errors, so setting them aside raises "
        "accuracy by construction (a test needs the labels re-checked blind to the model)"
    )


def judge_best_transfer_model(results: dict[str, dict], claim) -> Verdict:
    """The accuracy, precision and recall of the best transfer-learned model (chosen on
    validation among the networks compared) over grouped cross-validation folds, against
    InceptionV3's 99.5%, precision 0.99 and recall 1.00."""
    mask = results.get("mask_detection", {})
    best = mask.get("best_model")
    row = _row(mask, best) if best else None
    if mask.get("cv_nested") and mask.get("nested_cv_accuracy") is not None:
        # The headline's own protocol: every choice made inside each outer fold.
        row = {"model": "nested", "prefix": "nested_cv_", "cv": True, "nested": True}
    external = external_test(results)
    comparison = comparison_text(mask)
    if row is None:
        return Verdict(
            "-",
            NOT_MEASURED,
            sentences(["no transfer-learned model was evaluated in chapter 4", comparison]),
            external=external,
        )
    regime = selection_gaps(mask.get("selected_on"))
    if not row["cv"]:
        regime.append("the chosen model was scored on one test split, not on grouped folds")
    notes = [
        comparison,
        f"Chosen on validation: {human(best)}",
        f"The dissertation's network that won on validation: {human(ported)}"
        if (ported := mask.get("ported_model_won_validation"))
        else "",
        f"Stand-ins for the dissertation's networks: {human(PORTS['inception_v3'])}, "
        f"{human(PORTS['mobilenet_v2'])} and {human(PORTS['vgg16'])} (ports of ImageNet weights "
        f"that install offline), and {human(STAND_IN)}, added by the book",
    ]
    if not mask.get("cv_nested"):
        notes.append(
            "The winner was chosen on a validation split whose images also sit in the "
            "cross-validation test folds; nested folds would keep them apart"
        )
    if row.get("nested"):
        choices = str(mask.get("nested_cv_choices", "")).split(",")
        notes.append("Chosen per outer fold: " + ", ".join(human(c) for c in choices if c))
    else:
        notes.append(_audit_note(mask, best, row["cv"]))
    single = f"{best}_accuracy"
    if row["cv"] and mask.get(single) is not None:
        notes.append(
            f"On the single grouped test split declared in advance: {pct(mask[single])}"
            f"{interval_of(mask, single)}"
        )
    random_acc = mask.get(f"{best}_random_split_accuracy")
    if random_acc is not None:
        notes.append(f"On a plain random split: {pct(random_acc)}")
    return decide(
        claim,
        _parts(mask, row, DISSERTATION_MODELS["inception_v3"]),
        mask.get("nested_cv_folds" if row.get("nested") else "cv_folds") if row["cv"] else None,
        _row_text(mask, row, "Nested choice: " if row.get("nested") else f"{human(best)}: "),
        regime_gaps=regime,
        needed=f"the winner chosen on validation and scored by at least {FOLDS.minimum} grouped folds",
        notes=notes,
        budget=budget_of(mask, folds="nested_cv_folds" if row.get("nested") else "cv_folds"),
        external=external,
    )
