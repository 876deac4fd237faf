"""Generalised Jensen-Shannon divergence for on-policy distillation of translation models.

Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from Self-Generated
Mistakes" (GKD), ICLR, section 3: the student is trained on sequences it sampled itself, towards
the teacher's token distributions on them, with the generalised JSD

    m      = β · p_t + (1 − β) · p_s
    JSD_β  = β · KL(p_t ‖ m) + (1 − β) · KL(p_s ‖ m)
    loss   = (1/|M|) · Σ_{(b,j) ∈ M} JSD_β(p_t[b,j] ‖ p_s[b,j])

at every target position j of sentence b that is not padding (M), p = softmax(z / T). β near 0
behaves like forward KL(p_t ‖ p_s) scaled by β, β near 1 like reverse KL scaled by 1 − β; β = 0.5
is the symmetric JSD. The gradient flows through p_s only (the teacher is fixed). Teacher and
student must share the vocabulary (same ids), as in word-level KD.
Shapes: logits (B, L, V); ``labels`` (B, L) with -100 at padding (Hugging Face convention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GeneralizedJSDLoss(nn.Module):
    """``forward(student_logits, teacher_logits, labels) -> {"loss", "gkd_jsd"}``."""

    def __init__(self, beta: float = 0.5, temperature: float = 1.0):
        super().__init__()
        if not 0.0 < beta < 1.0:
            raise ValueError(f"mt.on_policy_beta must be in (0, 1), got {beta:g}")
        if not temperature > 0:
            raise ValueError(f"mt.on_policy_temperature must be > 0, got {temperature:g}")
        self.beta, self.temperature = float(beta), float(temperature)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                "on-policy distillation needs teacher and student logits of one shape (a shared vocabulary); "
                f"got {tuple(teacher_logits.shape)} and {tuple(student_logits.shape)}"
            )
        mask = labels != -100
        n = mask.sum().clamp(min=1)
        log_p_s = F.log_softmax(student_logits[mask].float() / self.temperature, dim=-1)
        log_p_t = F.log_softmax(teacher_logits[mask].float() / self.temperature, dim=-1)
        b = self.beta
        # log m = logsumexp(log β + log p_t, log(1 − β) + log p_s), stable for tiny probabilities.
        log_m = torch.logsumexp(torch.stack([log_p_t + math.log(b), log_p_s + math.log(1 - b)]), dim=0)
        kl_t = (log_p_t.exp() * (log_p_t - log_m)).sum()
        kl_s = (log_p_s.exp() * (log_p_s - log_m)).sum()
        jsd = (b * kl_t + (1 - b) * kl_s) / n
        return {"loss": jsd, "gkd_jsd": jsd}
