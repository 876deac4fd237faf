"""Soft-target (logit) distillation plus the supervised loss on labelled examples.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network",
arXiv:1503.02531.

Formula (z_s, z_t: student / teacher logits; T: temperature; α: alpha; y: gold label)::

    p_t = softmax(z_t / T)          p_s = softmax(z_s / T)
    kd  = T² · (1/B) · Σ_b Σ_c p_t[b,c] · (log p_t[b,c] − log p_s[b,c])      = T² · KL(p_t ‖ p_s)
    ce  = (1/N) · Σ_{b labelled} −log softmax(z_s[b])[y_b]                    N = number labelled
    loss = α · ce + (1 − α) · kd

Special cases: no labelled example in the batch → ce = 0 and loss = (1 − α) · kd;
no teacher (``teacher_logits=None``, the no-distillation baseline) → kd = 0 and loss = ce.

Shapes: ``student_logits`` and ``teacher_logits`` are (B, C); ``labels`` is (B,) long;
``label_mask`` is (B,) bool. Without a mask, an example is labelled when its label is >= 0
(-100 marks "no label", as in Hugging Face).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftTargetLoss(nn.Module):
    """Hinton soft-target KD mixed with cross-entropy on the gold labels.

    ``loss = α · CE(z_s, y) + (1 − α) · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))``, KL summed over
    classes and averaged over the batch, CE averaged over the labelled examples only.
    See the module docstring for the full formula, citation and shape conventions.

    ``forward`` returns ``{"loss", "kd", "ce"}``, each a scalar tensor; ``loss`` is what this
    module contributes before any outer weight.
    """

    def __init__(self, temperature: float = 2.0, alpha: float = 0.5):
        super().__init__()
        temperature = float(temperature)
        alpha = float(alpha)
        # `not (x > 0)` also rejects NaN, which a plain `x <= 0` would let through.
        if not temperature > 0:
            raise ValueError(f"distill.temperature must be > 0, got {temperature:g}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distill.alpha must be in [0, 1], got {alpha:g}")
        self.temperature = temperature
        self.alpha = alpha

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}, alpha={self.alpha:g}"

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if student_logits.dim() != 2:
            raise ValueError(f"student_logits must be (batch, classes), got shape {tuple(student_logits.shape)}")
        # Softmax/log-softmax in half precision loses the small probabilities KD depends on,
        # so the loss is always computed in float32 whatever the autocast dtype.
        z_s = student_logits.float()
        batch = z_s.shape[0]

        if teacher_logits is not None:
            if teacher_logits.shape != student_logits.shape:
                raise ValueError(
                    f"teacher_logits shape {tuple(teacher_logits.shape)} does not match "
                    f"student_logits shape {tuple(student_logits.shape)}; teacher and student "
                    "must share the same label set"
                )
            t = self.temperature
            # The teacher is a fixed target: no gradient should flow into it even if the
            # caller forgot to run it under no_grad.
            z_t = teacher_logits.detach().float()
            kd = F.kl_div(
                F.log_softmax(z_s / t, dim=-1),
                F.log_softmax(z_t / t, dim=-1),
                log_target=True,
                reduction="batchmean",
            )
            # Soft-target gradients scale as 1/T², so T² keeps their size comparable to the
            # hard-label term when T changes (Hinton et al., section 2).
            kd = kd * (t * t)
        else:
            kd = None

        if label_mask is not None and labels is None:
            raise ValueError("label_mask was given without labels")
        if labels is not None:
            if labels.shape != (batch,):
                raise ValueError(
                    f"labels must have shape ({batch},) to match student_logits, got {tuple(labels.shape)}"
                )
            if label_mask is None:
                valid = labels >= 0
            else:
                if label_mask.shape != (batch,):
                    raise ValueError(f"label_mask must have shape ({batch},), got {tuple(label_mask.shape)}")
                valid = label_mask.bool()
            # Unlabelled rows may hold -100 or any placeholder; give them a harmless index
            # so cross_entropy never sees an out-of-range target, then zero them out.
            safe_labels = torch.where(valid, labels, torch.zeros_like(labels))
            per_example = F.cross_entropy(z_s, safe_labels, reduction="none")
            weights = valid.to(per_example.dtype)
            # Dividing by max(N, 1) instead of branching on N avoids a device→host sync, and
            # gives exactly ce = 0 (still in the graph) when nothing in the batch is labelled.
            ce = (per_example * weights).sum() / weights.sum().clamp_min(1.0)
        else:
            ce = z_s.sum() * 0.0

        if kd is None:
            loss = ce
            kd = ce.new_zeros(())
        else:
            loss = self.alpha * ce + (1.0 - self.alpha) * kd
        return {"loss": loss, "kd": kd, "ce": ce}
