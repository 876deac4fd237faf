"""Sentence-embedding metrics as plain numbers: translation retrieval, MSE to a teacher, linear probe."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_accuracy(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Percent of queries whose nearest candidate by cosine is the aligned one (row i <-> row i).

    Ties are scored as misses unless the aligned candidate is the first of the tied ones
    (``argmax`` picks the lowest index), so identical embeddings cannot inflate the score.
    """
    q, c = np.asarray(queries), np.asarray(candidates)
    if q.ndim != 2 or c.ndim != 2 or q.shape != c.shape:
        raise ValueError(f"queries and candidates must both be (n, dim) and aligned, got {q.shape} and {c.shape}")
    if q.shape[0] == 0:
        raise ValueError("no sentence pairs to retrieve")
    sims = _unit(q) @ _unit(c).T
    return 100.0 * float(np.mean(sims.argmax(axis=1) == np.arange(q.shape[0])))


def bidirectional_retrieval(
    source: np.ndarray, target: np.ndarray, source_lang: str, target_lang: str
) -> dict[str, float]:
    """``{"en-es": source->target accuracy, "es-en": target->source accuracy}`` in percent."""
    return {
        f"{source_lang}-{target_lang}": retrieval_accuracy(source, target),
        f"{target_lang}-{source_lang}": retrieval_accuracy(target, source),
    }


def embedding_mse(student: np.ndarray, teacher: np.ndarray) -> float:
    """Mean squared difference over rows and dimensions (what EmbeddingMSELoss minimises)."""
    s, t = np.asarray(student, dtype=np.float64), np.asarray(teacher, dtype=np.float64)
    if s.shape != t.shape or s.ndim != 2:
        raise ValueError(f"embeddings must have the same (n, dim) shape, got {s.shape} and {t.shape}")
    if s.shape[0] == 0:
        raise ValueError("no embeddings to compare")
    return float(np.mean((s - t) ** 2))


def probe_accuracy(
    train_x: np.ndarray,
    train_y: Sequence[int],
    tests: Mapping[str, tuple[np.ndarray, Sequence[int]]],
    *,
    c: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Train a logistic regression on ``train_x`` (standardised features) and return its accuracy
    in percent on each named test set. Zero-shot transfer: the classifier never sees a test language."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(train_y)
    if len(np.unique(y)) < 2:
        raise ValueError("the probe's training data holds a single label; it needs at least two")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    clf.fit(np.asarray(train_x), y)
    return {
        name: 100.0 * float(np.mean(clf.predict(np.asarray(x)) == np.asarray(gold)))
        for name, (x, gold) in tests.items()
    }
