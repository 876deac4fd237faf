"""Attention-distribution distillation: KL between teacher and student self-attention maps.

Wang et al. (2020), "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression
of Pre-Trained Transformers", NeurIPS 2020 (arXiv:2002.10957).

Formula, for a layer map M = [(s₁, t₁), …, (s_K, t_K)], attention probabilities
A ∈ [0,1]^(B×H×L×L) (rows sum to 1 over keys) and attention mask m ∈ {0,1}^(B×L)::

    kl[b,h,q] = Σ_k A_t[b,h,q,k] · (log max(A_t[b,h,q,k], ε) − log max(A_s[b,h,q,k], ε))
    att(s, t) = Σ_{b,h,q} m[b,q] · kl[b,h,q]  /  (H · Σ_{b,q} m[b,q])
    loss      = (1/K) · Σ_k att(s_k, t_k)

i.e. KL(A_t ‖ A_s) averaged over valid query positions, heads and mapped layers. When the
two models have different head counts, each model's heads are first averaged,
Ā = (1/H) Σ_h A[:, h], and the KL is taken between Ā_t and Ā_s (H = 1 above).

Shapes: ``student_attentions`` / ``teacher_attentions`` are sequences of (B, H, L, L) tensors
indexed as Hugging Face returns ``attentions`` (index 0 = first layer; a model with N
layers has N entries), already softmaxed. ``attention_mask`` is (B, L), 1/True for real
tokens. Both models must see the same token sequence (same tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xdistill.losses.hidden_mse import check_layer_index, validate_layer_map

_NO_ATTENTIONS = (
    "attention distillation needs attention probabilities from both models; run them with "
    "output_attentions=True and load them with attn_implementation='eager' (fused SDPA / "
    "flash attention kernels do not return attention maps)"
)


class AttentionKLLoss(nn.Module):
    """MiniLM-style KL(A_t ‖ A_s) over attention distributions, masked over query positions.

    See the module docstring for the formula, citation and shape conventions. ``eps`` is the
    floor applied to probabilities before the log (exact zeros, e.g. at masked keys, would
    otherwise give log 0 = −inf and 0 · −inf = NaN).

    ``forward`` returns ``{"loss", "attention_{s}_{t}" for each mapped pair}``.
    """

    def __init__(self, layer_map: list[tuple[int, int]], eps: float = 1e-12):
        super().__init__()
        self.layer_map = validate_layer_map(layer_map)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.eps = float(eps)

    def extra_repr(self) -> str:
        return f"layer_map={self.layer_map}, eps={self.eps:g}"

    def forward(
        self,
        student_attentions: Sequence[torch.Tensor],
        teacher_attentions: Sequence[torch.Tensor],
        attention_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if student_attentions is None or teacher_attentions is None:
            raise ValueError(_NO_ATTENTIONS)
        n_s, n_t = len(student_attentions), len(teacher_attentions)
        what, flag = "attention maps (one per layer)", "distill.layer_map"
        for s, t in self.layer_map:
            check_layer_index(s, n_s, "student", what, flag)
            check_layer_index(t, n_t, "teacher", what, flag)

        parts: dict[str, torch.Tensor] = {}
        total = None
        for s, t in self.layer_map:
            a_s, a_t = student_attentions[s], teacher_attentions[t]
            if a_s is None or a_t is None:
                raise ValueError(_NO_ATTENTIONS)
            if a_s.dim() != 4 or a_t.dim() != 4:
                raise ValueError(
                    "attention maps must be (batch, heads, length, length), got "
                    f"{tuple(a_s.shape)} (student layer {s}) and "
                    f"{tuple(a_t.shape)} (teacher layer {t})"
                )
            if (a_s.shape[0], *a_s.shape[2:]) != (a_t.shape[0], *a_t.shape[2:]):
                raise ValueError(
                    f"attention maps of student layer {s} {tuple(a_s.shape)} and teacher layer {t} "
                    f"{tuple(a_t.shape)} differ in batch or length; attention distillation needs "
                    "both models to see the same tokens (same tokenizer)"
                )
            # float32: log of small probabilities in fp16/bf16 is too coarse for a KL.
            a_s = a_s.float()
            a_t = a_t.detach().float()  # fixed target, no gradient into the teacher
            if a_s.shape[1] != a_t.shape[1]:
                # Heads have no one-to-one correspondence across models of different widths,
                # so there is no pairing to compare per head. The head mean of each model is
                # still a probability distribution over keys (a mixture of its heads' rows),
                # so a KL between the two means is well defined and compares what each model
                # as a whole attends to.
                a_s = a_s.mean(dim=1, keepdim=True)
                a_t = a_t.mean(dim=1, keepdim=True)
            kl = (a_t * (a_t.clamp_min(self.eps).log() - a_s.clamp_min(self.eps).log())).sum(-1)
            batch, heads, length = kl.shape  # (B, H, L): one KL per head and query
            if attention_mask is None:
                valid = torch.ones(batch, length, dtype=torch.bool, device=kl.device)
            else:
                if attention_mask.shape != (batch, length):
                    raise ValueError(
                        f"attention_mask shape {tuple(attention_mask.shape)} does not match "
                        f"attention maps (batch, length) {(batch, length)}"
                    )
                valid = attention_mask.bool()
            # Padded query rows are excluded with where() (static shapes, no device sync);
            # padded keys need no masking because the teacher puts ~0 probability on them.
            valid_q = valid.unsqueeze(1).expand_as(kl)
            summed = torch.where(valid_q, kl, torch.zeros_like(kl)).sum()
            n_valid = valid.sum().to(kl.dtype).clamp_min(1.0)
            att = summed / (n_valid * heads)
            parts[f"attention_{s}_{t}"] = att
            total = att if total is None else total + att
        loss = total / len(self.layer_map)
        return {"loss": loss, **parts}
