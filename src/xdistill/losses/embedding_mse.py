"""Sentence-embedding distillation: MSE between student and teacher sentence vectors.

Reimers & Gurevych (2020), "Making Monolingual Sentence Embeddings Multilingual using
Knowledge Distillation", EMNLP 2020 (arXiv:2004.09813). There the student is trained so that
both a source sentence and its translation map onto the teacher's embedding of the source
sentence; this module computes one such term and the caller pairs the inputs.

Formula (e_s: student embedding, e_t: teacher embedding)::

    ẽ_s  = e_s · W        (W: learned Ds×Dt matrix, only when Ds ≠ Dt; otherwise ẽ_s = e_s)
    loss = (1/(B·Dt)) · Σ_b Σ_d (ẽ_s[b,d] − e_t[b,d])²

Shapes: ``student_embedding`` is (B, Ds), ``teacher_embedding`` is (B, Dt).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingMSELoss(nn.Module):
    """MSE between (projected) student and teacher sentence embeddings, averaged over batch
    and dimensions.

    When ``student_dim != teacher_dim`` a learned ``nn.Linear(student_dim, teacher_dim,
    bias=False)`` is created as ``self.projection`` (``None`` otherwise); it must be given to
    the optimizer together with the student. See the module docstring for the citation.

    ``forward`` returns ``{"loss"}``.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        for name, dim in (("student_dim", student_dim), ("teacher_dim", teacher_dim)):
            if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
                raise ValueError(f"{name} must be a positive int, got {dim!r}")
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim
        self.projection = nn.Linear(student_dim, teacher_dim, bias=False) if student_dim != teacher_dim else None

    def extra_repr(self) -> str:
        return f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}"

    def forward(self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        if student_embedding.dim() != 2 or teacher_embedding.dim() != 2:
            raise ValueError(
                "embeddings must be (batch, dim), got student "
                f"{tuple(student_embedding.shape)} and teacher {tuple(teacher_embedding.shape)}"
            )
        if student_embedding.shape[0] != teacher_embedding.shape[0]:
            raise ValueError(
                f"student and teacher batch sizes differ: {student_embedding.shape[0]} vs {teacher_embedding.shape[0]}"
            )
        if student_embedding.shape[1] != self.student_dim or teacher_embedding.shape[1] != self.teacher_dim:
            raise ValueError(
                f"embedding widths {student_embedding.shape[1]} (student) / "
                f"{teacher_embedding.shape[1]} (teacher) do not match the configured "
                f"student_dim={self.student_dim} / teacher_dim={self.teacher_dim}"
            )
        e_s = student_embedding
        if self.projection is not None:
            e_s = self.projection(e_s.to(self.projection.weight.dtype))
        # float32 so the mean of many small squared differences is not rounded away in
        # half precision; the teacher is a fixed target, hence detach.
        loss = F.mse_loss(e_s.float(), teacher_embedding.detach().float(), reduction="mean")
        return {"loss": loss}
