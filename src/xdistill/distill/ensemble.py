"""Multi-teacher soft targets: several teachers' class probabilities, averaged.

The ensemble's distribution is the weighted mean of the teachers' softmax outputs (the usual
ensemble of classifiers, Hinton et al. 2015, section 2; Fukuda et al. 2017 for distilling from
several teachers). Its log is handed to the soft-target loss as the teacher's logits, so the
loss, its temperature and the cache see one teacher: ``softmax(log p / T)`` is that mean
distribution, softened by T like any teacher's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["ensemble_logits", "normalised_weights"]


def normalised_weights(n_teachers: int, weights: Sequence[float] | None) -> np.ndarray:
    """``weights`` summing to 1 (equal ones when empty)."""
    w = np.asarray(list(weights) if weights else [1.0] * n_teachers, dtype=np.float64)
    return w / w.sum()


def ensemble_logits(logits: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """log(sum_i w_i softmax(logits_i)) per row: the log-probabilities of the weighted mixture."""
    if len(logits) == 1:
        return np.asarray(logits[0], dtype=np.float32)
    w = normalised_weights(len(logits), weights)
    mixture = 0.0
    for wi, z in zip(w, logits):
        z = np.asarray(z, dtype=np.float64)
        z = z - z.max(-1, keepdims=True)
        p = np.exp(z)
        mixture = mixture + wi * p / p.sum(-1, keepdims=True)
    return np.log(np.clip(mixture, 1e-12, None)).astype(np.float32)
