"""Chapter 4, section 6: every test error, and an audit of the labels.

cleanlab, run on out-of-fold probabilities, flags suspected label issues; each test error is
shown beside its nearest training image. The audit flags and never relabels: the manifest stays
the source of truth.
"""

from __future__ import annotations

import numpy as np

from dlbook.book import present
from dlbook.experiments.mask_detection.classifiers import display_name, plural
from dlbook.experiments.mask_detection.dataset import Chapter, images_for
from dlbook.experiments.mask_detection.evaluation import best_cv_model, interval_keys
from dlbook.facemask import audit, features
from dlbook.methods import metrics


def audit_labels(chapter: Chapter, models: dict, evaluation: dict, cv: dict) -> dict:
    """Suspected label issues (cleanlab on out-of-fold probabilities) and every test error (saved).

    The audit flags; it never relabels or drops: the manifest stays the source of truth, and
    accuracies are reported both as labelled and with the suspected issues set aside.

    Returns
    -------
    dict with ``issues`` (indices, most suspicious first), ``source`` (the model whose
    out-of-fold probabilities were audited), ``oof`` (those probabilities), ``errors``
    (indices of the best model's test errors), ``neighbour`` / ``neighbour_distance`` (each
    error's nearest training image by backbone features) and ``values``.
    """
    ds, best = chapter.images, evaluation["best"]
    run = models["runs"][best]
    source = best if best in cv["probs"] else best_cv_model(cv)
    oof = cv["probs"][source]
    issues = audit.label_issues(ds.labels, oof)
    flagged = np.zeros(len(ds), dtype=bool)
    flagged[issues] = True
    test = ds.split == "test"
    wrong = (run.probs >= 0.5) != ds.labels
    errors = np.flatnonzero(test & wrong)
    mixed = mixed_label_groups(ds.labels, ds.groups)
    keep = ~flagged
    fold_table = metrics.fold_metrics(ds.labels[keep], oof[keep], cv["folds"][keep])
    audited = metrics.summarise_folds(fold_table)["accuracy"]
    values = {
        "label_issues_suspected": int(len(issues)),
        "label_issues_model": source,
        "label_issues_labelled_with_mask": int(ds.labels[issues].sum()),
        "label_issues_labelled_without_mask": int(len(issues) - ds.labels[issues].sum()),
        "label_issues_in_test": int(flagged[test].sum()),
        f"{best}_accuracy_as_labelled": float((~wrong[test]).mean()),
        f"{best}_accuracy_audited": float((~wrong[test & keep]).mean()),
        f"{best}_test_errors_suspected": int(flagged[errors].sum()),
        f"{source}_cv_accuracy_as_labelled": float(cv["summary"][source]["accuracy"]["value"]),
        **interval_keys(f"{source}_cv_accuracy_audited", audited),
        "mixed_label_groups": int(len(np.unique(ds.groups[mixed]))),
        "test_errors": int(len(errors)),
        "test_error_groups": int(len(np.unique(ds.groups[errors]))),
        "test_errors_largest_group": int(np.bincount(ds.groups[errors]).max()) if len(errors) else 0,
        "test_errors_in_mixed_label_groups": int(mixed[errors].sum()),
    }  # fmt: skip
    feats = features.extract(run.backbone, images_for(chapter, run.backbone).images, progress=False)
    train = np.flatnonzero(ds.split == "train")
    nearest, distance = (np.zeros(0, np.int64), np.zeros(0))
    if len(errors):
        nearest, distance = audit.nearest_neighbours(feats[errors], feats[train])
        nearest = train[nearest]
    chapter.run.save(values)
    return {
        "issues": issues,
        "flagged": flagged,
        "source": source,
        "oof": oof,
        "best": best,
        "probs": run.probs,
        "errors": errors,
        "neighbour": nearest,
        "neighbour_distance": distance,
        "values": values,
    }


def mixed_label_groups(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Items whose near-duplicate group holds both labels, shape (N,), bool."""
    per_group = np.bincount(groups, weights=labels, minlength=groups.max() + 1)
    sizes = np.bincount(groups, minlength=groups.max() + 1)
    mixed = (per_group > 0) & (per_group < sizes)
    return mixed[groups]


def story_label_audit(audit_result: dict) -> str:
    v, best, source = audit_result["values"], audit_result["best"], audit_result["source"]
    n_errors = v["test_errors"]
    text = (
        f"cleanlab's `find_label_issues`, run on the out-of-fold probabilities of "
        f"{display_name(source)} "
        f"(each image scored by a model that never trained on it), flags "
        f"**{v['label_issues_suspected']}** of the images as suspected label issues "
        f"({v['label_issues_labelled_without_mask']} labelled without_mask, "
        f"{v['label_issues_labelled_with_mask']} labelled with_mask); "
        f"{v['label_issues_in_test']} of them are in the test split."
    )
    if n_errors == 0:
        return text + f" {display_name(best)} makes no error on the test split."
    mixed = v["test_errors_in_mixed_label_groups"]
    text += (
        f" Of the {n_errors} test errors of {display_name(best)}, "
        f"**{v[f'{best}_test_errors_suspected']}** are suspected label issues. They come from "
        f"{plural(v['test_error_groups'], 'near-duplicate group')} (the largest holds "
        f"{v['test_errors_largest_group']} of them); "
        + (
            "none sits in a group whose near-identical members carry both labels. "
            if mixed == 0
            else f"{mixed} sit in a group whose near-identical members carry both labels, so "
            "the data set itself disagrees on them. "
        )
    )
    text += (
        f"Test accuracy is {present.percent(v[f'{best}_accuracy_as_labelled'], 2)} as labelled "
        f"and {present.percent(v[f'{best}_accuracy_audited'], 2)} with the suspected issues "
        f"set aside; the cross-validated accuracy of {display_name(source)} moves from "
        f"{present.percent(v[f'{source}_cv_accuracy_as_labelled'], 2)} to "
        f"{present.percent(v[f'{source}_cv_accuracy_audited'], 2)}. The accuracies with the "
        "issues set aside are upper bounds, not measurements of the model: the audit flags "
        "exactly the images on which the models and the labels disagree, so they are only as "
        "right as the flags. The galleries above are the evidence; the manifest keeps every "
        "label as published."
    )
    return text
