"""Regression metrics computed the way MMSA reports them for MOSI/MOSEI.

* Acc2 / F1 "has0": negative (< 0) vs non-negative (>= 0) over all samples;
* Acc2 / F1 "non0": negative vs positive, samples labelled exactly 0 excluded;
* Acc3 / Acc5 / Acc7: clip both to [-1, 1], [-2, 2], [-3, 3] and compare rounded values;
* MAE and Pearson correlation on the raw predictions.

F1 is the support-weighted F1 (scikit-learn's ``average='weighted'``), as MMSA uses.
"""

from __future__ import annotations

import numpy as np


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Support-weighted F1 over the classes present in ``truth`` or ``pred`` (boolean arrays)."""
    total = len(truth)
    if total == 0:
        return float("nan")
    score = 0.0
    for cls in (False, True):
        support = int((truth == cls).sum())
        if support == 0:
            continue
        tp = int(((pred == cls) & (truth == cls)).sum())
        fp = int(((pred == cls) & (truth != cls)).sum())
        fn = support - tp
        f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
        score += f1 * support / total
    return score


def _multiclass_acc(pred: np.ndarray, truth: np.ndarray, bound: float) -> float:
    return float(np.mean(np.round(np.clip(pred, -bound, bound)) == np.round(np.clip(truth, -bound, bound))))


REGRESSION_KEYS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_3", "Mult_acc_5",
                   "Mult_acc_7", "MAE", "Corr")
"""The keys ``regression_metrics`` gives, in its order."""


def regression_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All MMSA regression metrics; values rounded to 4 places as MMSA prints them."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    if pred.shape != truth.shape or pred.size == 0:
        raise ValueError(f"metrics need equal, non-empty arrays, got {pred.shape} and {truth.shape}")
    non0 = truth != 0
    has0_truth, has0_pred = truth >= 0, pred >= 0
    non0_truth, non0_pred = truth[non0] > 0, pred[non0] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        # undefined (NaN, written as null) for one sample or a constant side, not a correlation of 0
        corr = float(np.corrcoef(pred, truth)[0, 1]) if pred.std() > 0 and truth.std() > 0 else float("nan")
    results = {
        "Has0_acc_2": float(np.mean(has0_pred == has0_truth)),
        "Has0_F1_score": weighted_f1(has0_truth, has0_pred),
        "Non0_acc_2": float(np.mean(non0_pred == non0_truth)) if non0.any() else float("nan"),
        "Non0_F1_score": weighted_f1(non0_truth, non0_pred) if non0.any() else float("nan"),
        "Mult_acc_3": _multiclass_acc(pred, truth, 1.0),
        "Mult_acc_5": _multiclass_acc(pred, truth, 2.0),
        "Mult_acc_7": _multiclass_acc(pred, truth, 3.0),
        "MAE": float(np.mean(np.abs(pred - truth))),
        "Corr": corr,
    }
    return {k: round(v, 4) for k, v in results.items()}


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 of an emotion head over samples with a known class (>= 0)."""
    known = labels >= 0
    if not known.any():
        return {}
    pred = logits[known].argmax(1)
    truth = labels[known]
    f1s = []
    for cls in np.unique(np.concatenate([truth, pred])):
        tp = int(((pred == cls) & (truth == cls)).sum())
        fp = int(((pred == cls) & (truth != cls)).sum())
        fn = int(((pred != cls) & (truth == cls)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"Class_acc": round(float(np.mean(pred == truth)), 4), "Class_macro_F1": round(float(np.mean(f1s)), 4)}
