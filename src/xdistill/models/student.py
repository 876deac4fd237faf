"""Small students built from config: copied from chosen teacher layers, or random, with a trimmed vocabulary."""

from __future__ import annotations

import copy
import re
from typing import Iterable

import torch
from transformers import PreTrainedModel

from ..config import StudentConfig
from ..errors import ModelError
from .vocab_trim import select_pieces, trim_embeddings, trim_tokenizer

_LAYER_KEY = re.compile(r"(^|\.)(layer|layers)\.(\d+)\.")


def build_student(
    teacher: PreTrainedModel,
    tokenizer,
    cfg: StudentConfig,
    corpus: Iterable[str],
    *,
    text_prefix: str = "",
    progress: bool = True,
) -> tuple[PreTrainedModel, object, dict]:
    """Return (student, student tokenizer, info) for the given teacher model (an encoder, or a
    sequence-classification model: the student is then one too, its head copied with ``init: teacher``).

    ``corpus`` is the student's training text in every language; with ``trim_vocab`` only the
    pieces that occur in it (plus special tokens and a text prefix the tokenizer inserts) are
    kept, which is where most of a multilingual teacher's parameters are (e5-small: 96M of 117M
    are word embeddings).
    """
    info: dict = {"init": cfg.init}
    kept_ids = None
    if cfg.trim_vocab:
        # A string prefix (a sentence encoder's "query: ") must keep its pieces, or the student
        # would segment it differently from the teacher.
        kept_ids, coverage = select_pieces(
            tokenizer,
            corpus,
            min_count=cfg.vocab_min_count,
            progress=progress,
            keep_texts=[text_prefix] if text_prefix else (),
            keep_top=cfg.vocab_keep_top,
        )
        tokenizer = trim_tokenizer(tokenizer, kept_ids)
        info.update(vocab_before=teacher.config.vocab_size, vocab_after=len(kept_ids), vocab_coverage=coverage)

    if cfg.init == "teacher":
        student = _copy_layers(teacher, cfg.layers)
        if kept_ids is not None:
            trim_embeddings(student, kept_ids)
        info["teacher_layers"] = list(cfg.layers)
    else:
        student = _random_student(teacher, cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return student, tokenizer, info


def _copy_layers(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    n_teacher = teacher.config.num_hidden_layers
    bad = [i for i in layers if i >= n_teacher]
    if bad:
        raise ModelError(
            f"student.layers {layers} names layer(s) {bad}, but the teacher has {n_teacher} layers (0..{n_teacher - 1})"
        )
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    student = _instantiate(teacher, config)
    teacher_state = teacher.state_dict()
    new_state = {}
    for key in student.state_dict():
        match = _LAYER_KEY.search(key)
        source_key = key
        if match:
            idx = int(match.group(3))
            source_key = key[: match.start(3)] + str(layers[idx]) + key[match.end(3) :]
        if source_key not in teacher_state:
            raise ModelError(
                f"cannot copy student weight {key!r}: the teacher has no {source_key!r}; "
                "use student.init: random for this architecture"
            )
        new_state[key] = teacher_state[source_key].clone()
    student.load_state_dict(new_state)
    return student


def _random_student(teacher: PreTrainedModel, cfg: StudentConfig, *, vocab_size: int, pad_token_id) -> PreTrainedModel:
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = cfg.num_layers
    config.hidden_size = cfg.hidden_size or config.hidden_size
    config.num_attention_heads = cfg.num_heads or config.num_attention_heads
    config.intermediate_size = cfg.ffn_size or 4 * config.hidden_size
    config.vocab_size = vocab_size
    if pad_token_id is not None:
        config.pad_token_id = pad_token_id
    if config.hidden_size % config.num_attention_heads:
        raise ModelError(
            f"student.hidden_size {config.hidden_size} is not divisible by the number of heads "
            f"{config.num_attention_heads}; set student.num_heads"
        )
    return _instantiate(teacher, config)


def _instantiate(teacher: PreTrainedModel, config) -> PreTrainedModel:
    cls = type(teacher)
    try:
        model = cls(config, add_pooling_layer=False)
    except TypeError:
        model = cls(config)
    return model.to(torch.float32)
