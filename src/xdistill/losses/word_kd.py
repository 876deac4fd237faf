"""Word-level knowledge distillation for translation, mixed with the usual token cross-entropy.

Kim & Rush (2016), "Sequence-Level Knowledge Distillation", EMNLP, section 3.1 (word-level KD):
at every target position the student matches the teacher's distribution over the vocabulary,
given the same target prefix (teacher forcing on the training target).

Formula (z_s, z_t: student / teacher logits over the shared vocabulary V at target position j of
sentence b; T: temperature; w: weight; y: the training target; M: the non-padding positions)::

    kd   = T² · (1/|M|) · Σ_{(b,j) ∈ M} Σ_{v ∈ V} p_t[b,j,v] · (log p_t[b,j,v] − log p_s[b,j,v])
    ce   = (1/|M|) · Σ_{(b,j) ∈ M} −log softmax(z_s[b,j])[y_bj]     (optionally label-smoothed)
    loss = (1 − w) · ce + w · kd,      p = softmax(z / T)

Teacher and student must share the vocabulary (same ids): the KL compares distributions id by id.
Shapes: logits (B, L, V); ``labels`` (B, L) with -100 at padding (Hugging Face convention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WordKDLoss(nn.Module):
    """``forward(student_logits, labels, teacher_logits=None) -> {"loss", "ce", "word_kd"}``."""

    def __init__(self, weight: float = 0.5, temperature: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"mt.word_kd_weight must be in [0, 1], got {weight:g}")
        if not temperature > 0:
            raise ValueError(f"mt.word_kd_temperature must be > 0, got {temperature:g}")
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)

    def forward(
        self, student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        mask = labels != -100
        n = mask.sum().clamp(min=1)
        vocab = student_logits.size(-1)
        ce = (
            F.cross_entropy(
                student_logits.reshape(-1, vocab),
                labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
                label_smoothing=self.label_smoothing,
            )
            / n
        )
        if teacher_logits is None or self.weight == 0:
            return {"loss": ce, "ce": ce}
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"word-level KD needs teacher and student logits of one shape (a shared vocabulary); "
                f"got {tuple(teacher_logits.shape)} and {tuple(student_logits.shape)}"
            )
        t = self.temperature
        log_p_s = F.log_softmax(student_logits[mask] / t, dim=-1)
        log_p_t = F.log_softmax(teacher_logits[mask].float() / t, dim=-1)
        kd = (log_p_t.exp() * (log_p_t - log_p_s)).sum() * (t * t) / n
        return {"loss": (1 - self.weight) * ce + self.weight * kd, "ce": ce, "word_kd": kd}
