"""Distillation losses. Each is an ``nn.Module`` whose ``forward`` returns a dict of named
scalar tensors: ``"loss"`` (what the module contributes, before any outer weight) plus its
parts, so a training loop can log each one.

- :class:`SoftTargetLoss` — Hinton et al. 2015 soft targets + CE on labelled examples.
- :class:`HiddenStateMSELoss` — TinyBERT-style masked MSE between mapped hidden states.
- :class:`AttentionKLLoss` — MiniLM-style KL between mapped attention distributions.
- :class:`EmbeddingMSELoss` — Reimers & Gurevych 2020 MSE between sentence embeddings.
- :class:`TranslationRankingLoss` — in-batch ranking of translations (Yang et al. 2019, LaBSE).
- :class:`WordKDLoss` — Kim & Rush 2016 word-level KD for translation, mixed with token CE.
- :class:`GeneralizedJSDLoss` — Agarwal et al. 2024 (GKD) on-policy distillation for translation.
"""

from xdistill.losses.attention_kl import AttentionKLLoss
from xdistill.losses.embedding_mse import EmbeddingMSELoss
from xdistill.losses.generalized_jsd import GeneralizedJSDLoss
from xdistill.losses.hidden_mse import HiddenStateMSELoss
from xdistill.losses.soft_target import SoftTargetLoss
from xdistill.losses.translation_ranking import TranslationRankingLoss
from xdistill.losses.word_kd import WordKDLoss

__all__ = [
    "AttentionKLLoss",
    "EmbeddingMSELoss",
    "GeneralizedJSDLoss",
    "HiddenStateMSELoss",
    "SoftTargetLoss",
    "TranslationRankingLoss",
    "WordKDLoss",
]
