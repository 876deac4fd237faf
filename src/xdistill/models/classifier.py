"""Classifiers: a Hugging Face ``AutoModelForSequenceClassification`` behind xdistill's adaptor.

Every classifier xdistill trains, and every fine-tuned HF sequence-classification checkpoint a
user brings as a teacher, is the architecture's native ``...ForSequenceClassification`` class
(BERT: the [CLS] state, its pooler and a linear layer; XLM-R: the <s> state, a dense layer and a
projection). So a saved teacher or student is an ordinary HF folder: ``from_pretrained`` and
``pipeline("text-classification")`` give xdistill's own predictions, with no ``trust_remote_code``;
a text prefix (e5's ``"query: "``) lives in its tokenizer (:mod:`.text_prefix`), and
``xdistill_model.json`` adds labels, max length and provenance.

:class:`SequenceClassifier.forward` returns the small standard dict every distillation loss reads
(``logits``, ``pooled``, ``hidden``, ``attention``, ``mask``), so the losses never know the
architecture (TextBrewer's adaptor idea). A foreign checkpoint's labels are matched by name onto
``data.labels`` (ignoring case and order) and its logits reordered, so soft targets, the
teacher-output cache, agreement and evaluation work unchanged. Generic names (``LABEL_0``:
what ``transformers`` writes when nobody named the classes) say nothing about which class is
which, so they are refused with what to write into the checkpoint's ``config.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from ..errors import ModelError
from ..io_utils import atomic_dir
from .folder import check_model_folder, read_model_info, verify_weights, write_model_info

__all__ = [
    "SequenceClassifier",
    "checkpoint_labels",
    "is_hf_sequence_classifier",
    "load_classifier",
    "match_labels",
    "pair_segments",
    "reorder_head",
]

GENERIC_LABEL = re.compile(r"^LABEL_\d+$", re.IGNORECASE)
OLD_HEAD_FILE = "classifier_head.safetensors"  # xdistill < 0.4 kept its own head beside a bare encoder


def pair_segments(tokenizer) -> bool:
    """Whether ``tokenizer`` marks the second text of a pair with segment id 1 (BERT does; XLM-R
    and e5 do not), so the model must be given those segment ids to see what it was trained on."""
    try:
        return 1 in (tokenizer("a", "b").get("token_type_ids") or [])
    except (TypeError, ValueError):
        return False


class SequenceClassifier(nn.Module):
    """An ``AutoModelForSequenceClassification`` with xdistill's output dict.

    ``logits`` are the model's own head's, in ``labels`` order (``label_order`` maps a foreign
    checkpoint's classes onto them); ``pooled`` is the first-token ([CLS] / <s>) last hidden
    state, the sequence representation the head reads; ``hidden`` / ``attention`` are the hidden
    states / attentions when asked for. ``encoder`` is the base model (what students copy).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        labels: Sequence[str],
        *,
        order: Sequence[int] | None = None,
        max_length: int = 128,
        segments: bool = False,
        sep_token_id: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.labels = list(labels)
        self.label_order = [int(i) for i in order] if order is not None else list(range(len(self.labels)))
        self.register_buffer("order", torch.tensor(self.label_order, dtype=torch.long), persistent=False)
        self.max_length = max_length
        # encode_texts gives input ids only; for a BERT-style pair model segment B (after the first
        # separator) is derived here, as its tokenizer would mark it.
        self.sep_token_id = sep_token_id if segments else None

    @classmethod
    def from_encoder(
        cls,
        folder: str | Path,
        labels: Sequence[str],
        tokenizer,
        *,
        dropout: float = 0.1,
        max_length: int = 128,
    ) -> SequenceClassifier:
        """A new classifier over the encoder in ``folder`` (e.g. the imported e5-small): its native
        sequence-classification class, the encoder's weights, a new head (and pooler, if it has none)."""
        verify_weights(folder)
        verbosity = hf_logging.get_verbosity()
        # The new head (and pooler) are "missing from the checkpoint" by design: no warning table.
        hf_logging.set_verbosity_error()
        try:
            config = AutoConfig.from_pretrained(folder)
            kwargs = {"classifier_dropout": dropout} if hasattr(config, "classifier_dropout") else {}
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                folder,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)},
                output_loading_info=True,
                **kwargs,
            )
        except (OSError, ValueError) as exc:
            raise _unloadable(folder, exc, "model") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        _identity_pooler(model, loading.get("missing_keys") or [])
        return cls(
            model.float(),
            labels,
            max_length=max_length,
            segments=pair_segments(tokenizer),
            sep_token_id=tokenizer.sep_token_id,
        )

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

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: str | Path, tokenizer, extra_info: dict[str, Any] | None = None) -> Path:
        """Save as a native HF sequence-classification folder (+ xdistill_model.json); written to
        a temp folder and renamed, so never half-written."""
        if self.label_order != list(range(len(self.labels))):
            raise ModelError(
                "internal: a classifier with reordered logits (a foreign checkpoint) is saved by its owner"
            )
        folder = Path(folder)
        self.model.config.id2label = dict(enumerate(self.labels))
        self.model.config.label2id = {name: i for i, name in enumerate(self.labels)}
        # pipeline() truncates at the tokenizer's limit; make it the one xdistill trained with.
        tokenizer.model_max_length = self.max_length
        with atomic_dir(folder) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            info = {"kind": "classifier", "labels": self.labels, "max_length": self.max_length}
            info.update(extra_info or {})
            write_model_info(tmp, info)
        return folder

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
        """``(model, tokenizer)`` of a classifier folder xdistill wrote, or of a fine-tuned HF
        sequence-classification checkpoint. ``labels`` (``data.labels``) reorders a checkpoint's
        logits, None keeps its own order and names; ``max_length`` defaults to the recorded one
        (a checkpoint: the model's limit). An xdistill classifier keeps its own labels and length."""
        folder = check_model_folder(folder, flag=flag)
        info = read_model_info(folder, optional=True)
        if (folder / OLD_HEAD_FILE).is_file():
            raise ModelError(
                f"{flag}: {folder} was written by an older xdistill (a bare encoder + {OLD_HEAD_FILE}); "
                "classifiers are now native Hugging Face sequence-classification folders: re-run the "
                "stage that made it (`xdistill run CONFIG --resume never`)"
            )
        ours = info.get("kind") == "classifier"
        if not ours and not is_hf_sequence_classifier(folder):
            kind = info.get("kind", "a plain encoder")
            raise ModelError(
                f"{flag}: {folder} is {kind}, not a classifier; train one with `xdistill teacher train`, "
                "point to a run's teacher/ or student/ folder, or to a fine-tuned Hugging Face "
                "...ForSequenceClassification folder"
            )
        try:
            config = AutoConfig.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise _unloadable(folder, exc) from None
        names = checkpoint_labels(config)
        if ours:
            labels, order = list(info["labels"]), list(range(len(info["labels"])))
            max_length = int(info.get("max_length", 128))
        elif labels is None:
            labels, order = names, list(range(len(names)))
        else:
            order = match_labels(folder, names, labels, flag=flag)
        verify_weights(folder, info or None)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        try:
            model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise _unloadable(folder, exc) from None
        if max_length is None:
            limits = [512, getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
            max_length = min(int(x) for x in limits if isinstance(x, int) and x > 0)
        model = cls(
            model.float(),
            labels,
            order=order,
            max_length=max_length,
            segments=pair_segments(tokenizer),
            sep_token_id=tokenizer.sep_token_id,
        )
        return model.eval(), tokenizer


def _identity_pooler(model: PreTrainedModel, missing: Sequence[str]) -> None:
    """A pooler the encoder folder did not have (e5 was trained with mean pooling, so it ships
    none) starts as the identity map: the new head then reads the [CLS] state itself through
    tanh, instead of a random projection that shrinks it ~50x and makes a short fine-tuning
    (hundreds of steps) converge from a poor start."""
    for name, module in model.named_modules():
        if name.endswith("pooler.dense") and isinstance(module, nn.Linear) and f"{name}.weight" in set(missing):
            with torch.no_grad():
                module.weight.copy_(torch.eye(module.out_features, module.in_features))
                if module.bias is not None:
                    module.bias.zero_()


def reorder_head(model: PreTrainedModel, order: Sequence[int]) -> None:
    """Permute the classes of a sequence-classification model in place: class ``j`` becomes its
    old class ``order[j]`` (the output layer's rows and bias; ``config.id2label`` is set on save)."""
    n = model.config.num_labels
    outputs = [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == n and "classifier" in name
    ]
    if not outputs:
        raise ModelError(f"cannot find the output layer of {type(model).__name__} to reorder its classes")
    layer, index = outputs[-1], torch.as_tensor(list(order), dtype=torch.long)
    with torch.no_grad():
        layer.weight.copy_(layer.weight[index].clone())
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[index].clone())


load_classifier = SequenceClassifier.load  # the one loader for a classifier folder of either kind


def is_hf_sequence_classifier(folder: str | Path) -> bool:
    """Whether ``folder``'s config.json names a ``...ForSequenceClassification`` architecture (any
    fine-tuned HF checkpoint, and every classifier xdistill writes)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list):
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


def _unloadable(folder: Path, exc: Exception, what: str = "Hugging Face classifier") -> ModelError:
    reason = (str(exc).splitlines() or [repr(exc)])[0]
    return ModelError(
        f"{folder}: the {what} cannot be loaded ({reason}); "
        "check that the folder is complete (config.json, weights, tokenizer) or re-create it"
    )
