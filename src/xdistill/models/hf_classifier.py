"""A fine-tuned Hugging Face sequence-classification checkpoint used as it is (head included).

The teacher most users already have is such a folder (``config.json`` with ``architectures``
ending in ``ForSequenceClassification``: a BERT / XLM-R sentiment model with its trained head).
:class:`HFSequenceClassifier` wraps the ``AutoModelForSequenceClassification`` it loads into the
interface of :class:`~xdistill.models.classifier.EncoderClassifier` (TextBrewer's adaptor idea):
``forward`` returns ``logits``, ``pooled``, ``hidden``, ``attention`` and ``mask``, and
``encoder`` is the checkpoint's base encoder (what the student is copied from).

Labels are matched by name: the checkpoint's ``config.id2label`` onto ``data.labels``, ignoring
case and order, and the logits are reordered to ``data.labels`` order, so soft targets, the
teacher-output cache, agreement and evaluation work unchanged. Generic names (``LABEL_0``,
``LABEL_1``: what ``transformers`` writes when nobody named the classes) say nothing about which
class is which, so they are refused with what to write into the checkpoint's ``config.json``.

:func:`load_classifier` is the one loader for a classifier folder of either kind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ..errors import ModelError
from .classifier import EncoderClassifier
from .folder import check_model_folder, read_model_info, verify_weights

__all__ = ["HFSequenceClassifier", "checkpoint_labels", "is_hf_sequence_classifier", "load_classifier", "match_labels"]

GENERIC_LABEL = re.compile(r"^LABEL_\d+$", re.IGNORECASE)


def is_hf_sequence_classifier(folder: str | Path) -> bool:
    """Whether ``folder`` is a Hugging Face sequence-classification checkpoint (and not a
    classifier xdistill wrote): its config.json names a ``...ForSequenceClassification`` architecture."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list):
        return False
    if read_model_info(folder, optional=True).get("kind") == "classifier":
        return False
    return any(isinstance(a, str) and a.endswith("ForSequenceClassification") for a in architectures)


def checkpoint_labels(config) -> list[str]:
    """The class names of a loaded HF config, in the order of its logits."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]


def match_labels(
    folder: str | Path, names: Sequence[str], wanted: Sequence[str], *, flag: str = "teacher"
) -> list[int]:
    """For each of ``wanted`` (``data.labels``), the index of the checkpoint's logit with that name
    (case-insensitive); a ModelError naming the folder, both label lists and the fix otherwise."""
    folder = Path(folder)
    lower = [n.strip().lower() for n in names]
    want = [w.strip().lower() for w in wanted]
    if len(set(lower)) == len(lower) and sorted(lower) == sorted(want):
        return [lower.index(w) for w in want]
    config = folder / "config.json"
    if names and all(GENERIC_LABEL.match(n.strip()) for n in names):
        example = json.dumps({str(i): w for i, w in enumerate(wanted)}, ensure_ascii=False)
        raise ModelError(
            f"{flag}: the Hugging Face classifier {folder} has only generic label names {list(names)}, so which "
            f'of data.labels {list(wanted)} each class is cannot be known; set "id2label" (and "label2id") '
            f'in {config} to the real class names in the model\'s order, e.g. "id2label": {example} if class 0 '
            "is the first of data.labels, or fine-tune a new head on its encoder with teacher.finetune: true"
        )
    raise ModelError(
        f"{flag}: the labels of the Hugging Face classifier {folder} {list(names)} do not match data.labels "
        f"{list(wanted)} (labels are matched by name, ignoring case and order); rename data.labels to the "
        f'checkpoint\'s names, or edit "id2label" (and "label2id") in {config} so each class is named after '
        "one of data.labels"
    )


class HFSequenceClassifier(nn.Module):
    """An ``AutoModelForSequenceClassification`` behind the ``EncoderClassifier`` interface.

    ``logits`` are the checkpoint's own head's, reordered to ``labels``; ``pooled`` is the
    first-token ([CLS] / <s>) last hidden state, the sequence representation the HF head reads;
    ``hidden`` / ``attention`` are the model's hidden states / attentions when asked for.

    ``head`` is None: an HF head (BERT's pooler + linear, XLM-R's dense + projection, in the
    checkpoint's label order) does not fit the student's linear head over ``pooling``, so a
    student starts with a new head and learns it from the teacher's soft targets.
    """

    pooling = "cls"  # the student pools as the checkpoint's head does: the first token
    text_prefix = ""

    def __init__(
        self,
        model: PreTrainedModel,
        labels: Sequence[str],
        order: Sequence[int],
        *,
        max_length: int = 128,
        sep_token_id: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.labels = list(labels)
        self.label_order = [int(i) for i in order]  # logits[:, j] is the checkpoint's class label_order[j]
        self.register_buffer("order", torch.tensor(self.label_order, dtype=torch.long), persistent=False)
        self.max_length = max_length
        self.head = None
        # BERT-style pair models read segment ids; encode_texts gives input ids only, so segment B
        # (after the first separator) is derived here, as the tokenizer would mark it.
        uses_segments = (getattr(model.config, "type_vocab_size", 1) or 1) > 1
        self.sep_token_id = sep_token_id if uses_segments else None

    @property
    def encoder(self) -> PreTrainedModel:
        return self.model.base_model

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        if token_type_ids is None and self.sep_token_id is not None:
            sep = (input_ids == self.sep_token_id).long()
            token_type_ids = ((sep.cumsum(-1) - sep) > 0).long() * attention_mask
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        return {
            "logits": out.logits.index_select(-1, self.order),
            "pooled": out.hidden_states[-1][:, 0],
            "hidden": out.hidden_states if output_hidden_states else None,
            "attention": out.attentions if output_attentions else None,
            "mask": attention_mask,
        }

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        flag: str = "model",
        labels: Sequence[str] | None = None,
        attn_implementation: str | None = None,
        max_length: int | None = None,
    ):
        """Load the checkpoint and its tokenizer; ``labels`` (``data.labels``) reorders the logits,
        None keeps the checkpoint's own order and names."""
        folder = check_model_folder(folder, flag=flag)
        try:
            config = AutoConfig.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise _unloadable(folder, exc) from None
        names = checkpoint_labels(config)
        if labels is None:
            labels, order = names, list(range(len(names)))
        else:
            order = match_labels(folder, names, labels, flag=flag)
        verify_weights(folder)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        try:
            model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise _unloadable(folder, exc) from None
        if max_length is None:
            limits = [512, getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
            max_length = min(int(x) for x in limits if isinstance(x, int) and x > 0)
        model = cls(model.float(), labels, order, max_length=max_length, sep_token_id=tokenizer.sep_token_id)
        return model.eval(), tokenizer


def _unloadable(folder: Path, exc: Exception) -> ModelError:
    reason = (str(exc).splitlines() or [repr(exc)])[0]
    return ModelError(
        f"{folder}: the Hugging Face classifier cannot be loaded ({reason}); "
        "check that the folder is complete (config.json, weights, tokenizer) or re-download it"
    )


def load_classifier(
    folder: str | Path,
    *,
    flag: str = "model",
    labels: Sequence[str] | None = None,
    attn_implementation: str | None = None,
    max_length: int | None = None,
):
    """``(model, tokenizer)`` of a classifier folder: an :class:`EncoderClassifier` for a folder
    xdistill wrote, an :class:`HFSequenceClassifier` for a fine-tuned HF sequence-classification
    checkpoint (its logits in ``labels`` order when given; ``max_length`` defaults to the model's
    limit). ``labels`` and ``max_length`` do not change an xdistill classifier, which records its own."""
    if is_hf_sequence_classifier(folder):
        return HFSequenceClassifier.load(
            folder, flag=flag, labels=labels, attn_implementation=attn_implementation, max_length=max_length
        )
    return EncoderClassifier.load(folder, flag=flag, attn_implementation=attn_implementation)
