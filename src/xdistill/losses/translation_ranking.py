"""In-batch translation ranking: each sentence must be closer to its own translation than to the
other translations in the batch.

Yang et al. (2019), "Improving Multilingual Sentence Embedding using Bi-directional Dual Encoder
with Additive Margin Softmax" (IJCAI 2019), as used by LaBSE (Feng et al., ACL 2022) and
sentence-transformers' MultipleNegativesRankingLoss. Optional companion of EmbeddingMSELoss in
sentence-embedding distillation: the MSE pulls both sides of a pair onto the teacher's vector,
this term directly rewards what translation retrieval measures.

Formula, for B aligned pairs with source embeddings u and target embeddings v::

    S[i, j] = scale · cos(u_i, v_j)
    loss    = ½ · (CE(S, diag) + CE(Sᵀ, diag))      (CE: mean cross-entropy over the B rows)

``forward`` returns ``{"loss", "accuracy"}`` (accuracy: share of rows whose best match is the
aligned one, source -> target, a detached tensor for logging).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TranslationRankingLoss(nn.Module):
    def __init__(self, scale: float = 20.0):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = float(scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        if source.dim() != 2 or source.shape != target.shape:
            raise ValueError(
                f"source and target must both be (batch, dim) and aligned, got "
                f"{tuple(source.shape)} and {tuple(target.shape)}"
            )
        sims = self.scale * F.normalize(source.float(), dim=-1) @ F.normalize(target.float(), dim=-1).T
        gold = torch.arange(sims.shape[0], device=sims.device)
        loss = 0.5 * (F.cross_entropy(sims, gold) + F.cross_entropy(sims.T, gold))
        accuracy = (sims.detach().argmax(dim=1) == gold).float().mean()
        return {"loss": loss, "accuracy": accuracy}
