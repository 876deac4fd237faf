"""A Hugging Face encoder with a pooling + linear classification head.

The forward pass returns the small standard dict every distillation loss reads
(``logits``, ``pooled``, ``hidden``, ``attention``, ``mask``), so the losses never know the
architecture (TextBrewer's adaptor idea).

On disk a classifier is an ordinary HF encoder folder (``AutoModel`` / ``AutoTokenizer`` load
it; weights in safetensors) plus ``classifier_head.safetensors`` and ``xdistill_model.json``
(pooling, label names, text prefix, max length).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from ..errors import ModelError
from ..io_utils import atomic_write_json

MODEL_INFO = "xdistill_model.json"
HEAD_FILE = "classifier_head.safetensors"


def read_model_info(folder: str | Path) -> dict[str, Any]:
    """The xdistill metadata of a model folder, or {} for a plain HF folder."""
    path = Path(folder) / MODEL_INFO
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def check_model_folder(folder: str | Path, *, flag: str) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        hint = ""
        if "e5" in folder.name:
            hint = f"; create it with `xdistill models import e5-small --out {folder}`"
        raise ModelError(f"{flag}: {folder} is not a Hugging Face model folder (no config.json){hint}")
    return folder


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
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.encoder.config.id2label = dict(enumerate(self.labels))
        self.encoder.config.label2id = {name: i for i, name in enumerate(self.labels)}
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
        atomic_write_json(tmp / MODEL_INFO, info)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, flag: str = "model", attn_implementation: str | None = None):
        """Load a saved classifier and its tokenizer."""
        folder = check_model_folder(folder, flag=flag)
        info = read_model_info(folder)
        if info.get("kind") != "classifier" or not (folder / HEAD_FILE).is_file():
            kind = info.get("kind", "a plain encoder")
            raise ModelError(
                f"{flag}: {folder} is {kind}, not an xdistill classifier; "
                "train one with `xdistill teacher train` or point to a run's teacher/ or student/ folder"
            )
        encoder = load_encoder(folder, attn_implementation=attn_implementation)
        model = cls(
            encoder,
            info["labels"],
            pooling=info.get("pooling", "mean"),
            text_prefix=info.get("text_prefix", ""),
            max_length=int(info.get("max_length", 128)),
        )
        model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        return model, AutoTokenizer.from_pretrained(folder)


def load_encoder(folder: str | Path, *, attn_implementation: str | None = None) -> PreTrainedModel:
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        # add_pooling_layer=False: xdistill pools itself; BERT's pooler would be unused weights.
        return AutoModel.from_pretrained(folder, add_pooling_layer=False, **kwargs)
    except TypeError:
        return AutoModel.from_pretrained(folder, **kwargs)

