"""A Hugging Face encoder with a pooling + linear classification head.

The forward pass returns the small standard dict every distillation loss reads
(``logits``, ``pooled``, ``hidden``, ``attention``, ``mask``), so the losses never know the
architecture (TextBrewer's adaptor idea).

On disk a classifier is an ordinary HF encoder folder (``AutoModel`` / ``AutoTokenizer`` load
it; weights in safetensors) plus ``classifier_head.safetensors`` and ``xdistill_model.json``
(pooling, label names, text prefix, max length).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from ..errors import ModelError
from ..io_utils import atomic_dir
from .folder import (
    MODEL_INFO,
    check_model_folder,
    read_model_info,
    safetensors_problem,
    verify_weights,
    write_model_info,
)

__all__ = [
    "MODEL_INFO",
    "HEAD_FILE",
    "EncoderClassifier",
    "check_model_folder",
    "load_encoder",
    "mean_pool",
    "read_model_info",
]

HEAD_FILE = "classifier_head.safetensors"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class EncoderClassifier(nn.Module):
    def __init__(
        self,
        encoder: PreTrainedModel,
        labels: list[str],
        *,
        pooling: str = "mean",
        dropout: float = 0.1,
        text_prefix: str = "",
        max_length: int = 128,
    ):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ModelError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder = encoder
        self.labels = list(labels)
        self.pooling = pooling
        self.text_prefix = text_prefix
        self.max_length = max_length
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, len(labels))

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        hidden = out.last_hidden_state
        pooled = mean_pool(hidden, attention_mask) if self.pooling == "mean" else hidden[:, 0]
        return {
            "logits": self.head(self.dropout(pooled)),
            "pooled": pooled,
            "hidden": out.hidden_states,
            "attention": out.attentions,
            "mask": attention_mask,
        }

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: str | Path, tokenizer, extra_info: dict[str, Any] | None = None) -> Path:
        """Save as an HF folder + head; written to a temp folder and renamed, so never half-written."""
        folder = Path(folder)
        self.encoder.config.id2label = dict(enumerate(self.labels))
        self.encoder.config.label2id = {name: i for i, name in enumerate(self.labels)}
        with atomic_dir(folder) as tmp:
            self.encoder.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            head = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
            save_file(head, str(tmp / HEAD_FILE))
            info = {
                "kind": "classifier",
                "labels": self.labels,
                "pooling": self.pooling,
                "text_prefix": self.text_prefix,
                "max_length": self.max_length,
            }
            info.update(extra_info or {})
            write_model_info(tmp, info)
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, flag: str = "model", attn_implementation: str | None = None):
        """Load a saved classifier and its tokenizer."""
        folder = check_model_folder(folder, flag=flag)
        info = read_model_info(folder, optional=True)
        if info.get("kind") != "classifier" or not (folder / HEAD_FILE).is_file():
            kind = info.get("kind", "a plain encoder")
            raise ModelError(
                f"{flag}: {folder} is {kind}, not an xdistill classifier; "
                "train one with `xdistill teacher train` or point to a run's teacher/ or student/ folder "
                "(or to a fine-tuned Hugging Face ...ForSequenceClassification folder)"
            )
        encoder = load_encoder(folder, attn_implementation=attn_implementation)
        model = cls(
            encoder,
            info["labels"],
            pooling=info.get("pooling", "mean"),
            text_prefix=info.get("text_prefix", ""),
            max_length=int(info.get("max_length", 128)),
        )
        model.head.load_state_dict(load_weights_file(folder, HEAD_FILE))
        return model, AutoTokenizer.from_pretrained(folder)


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


def load_encoder(folder: str | Path, *, attn_implementation: str | None = None) -> PreTrainedModel:
    """The HF encoder of ``folder``, after checking its weight files (see ``folder.verify_weights``)."""
    verify_weights(folder)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        try:
            # add_pooling_layer=False: xdistill pools itself; BERT's pooler would be unused weights.
            return AutoModel.from_pretrained(folder, add_pooling_layer=False, **kwargs)
        except TypeError:
            return AutoModel.from_pretrained(folder, **kwargs)
    except OSError as exc:
        reason = (str(exc).splitlines() or [repr(exc)])[0]
        raise ModelError(
            f"{folder}: the model cannot be loaded ({reason}); check that the folder is complete or re-create it"
        ) from None
