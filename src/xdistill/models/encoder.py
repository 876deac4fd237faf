"""Loading a plain Hugging Face encoder folder and reading its extra weight files, with the
folder's checksums verified first (see ``folder.verify_weights``)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel, PreTrainedModel

from ..errors import ModelError
from .folder import safetensors_problem, verify_weights

__all__ = ["load_encoder", "load_weights_file", "mean_pool"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def load_encoder(folder: str | Path, *, attn_implementation: str | None = None) -> PreTrainedModel:
    """The HF encoder of ``folder`` without a pooler (sentence encoders pool themselves)."""
    verify_weights(folder)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        try:
            return AutoModel.from_pretrained(folder, add_pooling_layer=False, **kwargs)
        except TypeError:
            return AutoModel.from_pretrained(folder, **kwargs)
    except OSError as exc:
        reason = (str(exc).splitlines() or [repr(exc)])[0]
        raise ModelError(
            f"{folder}: the model cannot be loaded ({reason}); check that the folder is complete or re-create it"
        ) from None


def load_weights_file(folder: str | Path, name: str) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` of ``folder/name``; an unreadable file is one ModelError
    naming it (the folder's checksums are verified by ``load_encoder`` before this is called)."""
    path = Path(folder) / name
    problem = safetensors_problem(path)
    if problem is None:
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for damaged data
            problem = str(exc)
    raise ModelError(
        f"{folder}: weight file {name} cannot be read ({problem}); restore the folder or re-create the model"
    )
