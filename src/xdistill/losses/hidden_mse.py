"""Intermediate-layer distillation: MSE between mapped student and teacher hidden states.

Jiao et al. (2020), "TinyBERT: Distilling BERT for Natural Language Understanding",
Findings of EMNLP 2020 (arXiv:1909.10351); the learned width projection also follows
Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", and Sun et al. (2020), "MobileBERT".

Formula, for a layer map M = [(s₁, t₁), …, (s_K, t_K)] and attention mask m ∈ {0,1}^(B×L)::

    h̃_s = H_s[s] · W        (W: learned Hs×Ht matrix, only when Hs ≠ Ht; otherwise h̃_s = H_s[s])
    mse(s, t) = Σ_{b,l} m[b,l] · Σ_d (h̃_s[b,l,d] − H_t[t][b,l,d])²  /  (Σ_{b,l} m[b,l] · Ht)
    loss = (1/K) · Σ_k mse(s_k, t_k)

Shapes: ``student_hidden`` and ``teacher_hidden`` are sequences of (B, L, Hs) / (B, L, Ht)
tensors, indexed as Hugging Face returns ``hidden_states`` (index 0 = embedding output,
index i = output of layer i), so a model with N layers has N + 1 entries.
``attention_mask`` is (B, L), 1/True for real tokens. Student and teacher must be run on
the same token sequence (same tokenizer), since positions are compared one to one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def validate_layer_map(layer_map, flag: str = "distill.layer_map") -> list[tuple[int, int]]:
    """Normalise a layer map (e.g. a YAML list of 2-lists) to a list of (student, teacher)
    int pairs, raising ValueError that names ``flag`` when it is malformed."""
    if layer_map is None or len(layer_map) == 0:
        raise ValueError(f"{flag} must list at least one (student_layer, teacher_layer) pair")
    pairs: list[tuple[int, int]] = []
    for i, pair in enumerate(layer_map):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{flag}[{i}] must be a (student_layer, teacher_layer) pair, got {pair!r}")
        s, t = pair
        # bool is an int subclass; `True` as a layer index is certainly a config mistake.
        for which, idx in (("student", s), ("teacher", t)):
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise ValueError(f"{flag}[{i}]: {which} layer index must be an int, got {idx!r}")
            if idx < 0:
                raise ValueError(
                    f"{flag}[{i}]: {which} layer index must be >= 0, got {idx} "
                    "(negative indices are not allowed, so that the map means the same for "
                    "every model depth)"
                )
        pairs.append((s, t))
    return pairs


def check_layer_index(idx: int, available: int, who: str, what: str, flag: str) -> None:
    """Raise a ValueError that says which index is out of range and how many entries exist."""
    if idx >= available:
        raise ValueError(
            f"{flag}: {who} layer index {idx} is out of range; the {who} model returned "
            f"{available} {what}, so valid indices are 0..{available - 1}"
        )


class HiddenStateMSELoss(nn.Module):
    """Masked MSE between mapped hidden states, with a learned projection when widths differ.

    ``mse(s, t) = Σ_valid (h_s W − h_t)² / (valid_tokens · Ht)``, averaged over the layer map.
    One projection ``W`` (``nn.Linear(student_dim, teacher_dim, bias=False)``) is shared by all
    mapped layers; it exists only when ``student_dim != teacher_dim`` (``self.projection`` is
    ``None`` otherwise) and must be given to the optimizer together with the student.
    See the module docstring for the citation and shape conventions.

    ``forward`` returns ``{"loss", "hidden_{s}_{t}" for each mapped pair}``.
    """

    def __init__(self, student_dim: int, teacher_dim: int, layer_map: list[tuple[int, int]]):
        super().__init__()
        for name, dim in (("student_dim", student_dim), ("teacher_dim", teacher_dim)):
            if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
                raise ValueError(f"{name} must be a positive int, got {dim!r}")
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim
        self.layer_map = validate_layer_map(layer_map)
        self.projection = nn.Linear(student_dim, teacher_dim, bias=False) if student_dim != teacher_dim else None

    def extra_repr(self) -> str:
        return f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}, layer_map={self.layer_map}"

    def forward(
        self,
        student_hidden: Sequence[torch.Tensor],
        teacher_hidden: Sequence[torch.Tensor],
        attention_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if student_hidden is None or teacher_hidden is None:
            raise ValueError(
                "hidden-state distillation needs hidden states from both models; "
                "run them with output_hidden_states=True"
            )
        n_s, n_t = len(student_hidden), len(teacher_hidden)
        for s, t in self.layer_map:
            what = "hidden states (embedding output + one per layer)"
            check_layer_index(s, n_s, "student", what, "distill.layer_map")
            check_layer_index(t, n_t, "teacher", what, "distill.layer_map")

        parts: dict[str, torch.Tensor] = {}
        total = None
        for s, t in self.layer_map:
            h_s, h_t = student_hidden[s], teacher_hidden[t]
            if h_s.shape[:2] != h_t.shape[:2]:
                raise ValueError(
                    f"hidden states {s} (student) and {t} (teacher) differ in (batch, length): "
                    f"{tuple(h_s.shape[:2])} vs {tuple(h_t.shape[:2])}; hidden-state "
                    "distillation needs both models to see the same tokens (same tokenizer)"
                )
            if h_s.shape[-1] != self.student_dim or h_t.shape[-1] != self.teacher_dim:
                raise ValueError(
                    f"hidden widths {h_s.shape[-1]} (student) / {h_t.shape[-1]} (teacher) do not "
                    f"match the configured student_dim={self.student_dim} / "
                    f"teacher_dim={self.teacher_dim}"
                )
            if self.projection is not None:
                h_s = self.projection(h_s.to(self.projection.weight.dtype))
            # float32 because squared errors summed over many tokens overflow/round in fp16.
            h_s = h_s.float()
            # The teacher is a fixed target; detaching keeps gradients out of it even if the
            # caller did not run it under no_grad.
            h_t = h_t.detach().float()
            sq = (h_s - h_t).pow(2).sum(dim=-1)  # (B, L)
            if attention_mask is None:
                valid = torch.ones_like(sq, dtype=torch.bool)
            else:
                if attention_mask.shape != sq.shape:
                    raise ValueError(
                        f"attention_mask shape {tuple(attention_mask.shape)} does not match "
                        f"hidden states (batch, length) {tuple(sq.shape)}"
                    )
                valid = attention_mask.bool()
            # where() rather than boolean indexing keeps shapes static (no device sync) and
            # drops whatever sits at padded positions, even inf; the clamp guards an
            # all-padding batch.
            sse = torch.where(valid, sq, torch.zeros_like(sq)).sum()
            n_valid = valid.sum().to(sq.dtype).clamp_min(1.0)
            mse = sse / (n_valid * self.teacher_dim)
            parts[f"hidden_{s}_{t}"] = mse
            total = mse if total is None else total + mse
        loss = total / len(self.layer_map)
        return {"loss": loss, **parts}
