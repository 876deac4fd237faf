"""Classification metrics as plain JSON-ready dicts (percentages, Python numbers, lists)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], num_labels: int, ordinal: bool = False
) -> dict:
    """Accuracy, macro-F1 and confusion matrix for label indices in ``range(num_labels)``.

    Returns ``{"n", "accuracy", "macro_f1", "confusion"}`` plus ``"mae"`` when ``ordinal``.
    ``accuracy`` and ``macro_f1`` are percentages (0-100). Macro-F1 averages over *all*
    ``num_labels`` classes, so a class absent from both ``y_true`` and ``y_pred`` counts as
    F1 0 rather than silently dropping out of the average. ``confusion[i][j]`` counts true
    label ``i`` predicted as ``j``. ``mae`` is the mean absolute error in label-index units
    (only meaningful when the labels are ordered, e.g. 1-5 stars).
    """
    t, p = _as_label_arrays(y_true, y_pred, num_labels)
    labels = list(range(num_labels))
    out = {
        "n": int(t.size),
        "accuracy": 100.0 * float(accuracy_score(t, p)),
        "macro_f1": 100.0 * float(f1_score(t, p, labels=labels, average="macro", zero_division=0)),
        "confusion": confusion_matrix(t, p, labels=labels).tolist(),
    }
    if ordinal:
        out["mae"] = float(np.mean(np.abs(t - p)))
    return out


def agreement(pred_a: Sequence[int], pred_b: Sequence[int]) -> float:
    """Percentage (0-100) of positions where the two prediction lists agree."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    _check_same_nonempty(a, b, "pred_a", "pred_b")
    return 100.0 * float(np.mean(a == b))


def _as_label_arrays(y_true, y_pred, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    _check_same_nonempty(t, p, "y_true", "y_pred")
    # An out-of-range index means the label list and the predictions disagree; sklearn would
    # drop it from the confusion matrix without a word and skew every number.
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = arr[(arr < 0) | (arr >= num_labels)]
        if bad.size:
            raise ValueError(f"{name} holds label index {int(bad[0])}, outside 0..{num_labels - 1}")
    return t, p


def _check_same_nonempty(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"{name_a} and {name_b} must be flat sequences")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has {a.size} items but {name_b} has {b.size}")
    if a.size == 0:
        raise ValueError(f"{name_a} and {name_b} are empty: no examples to score")
