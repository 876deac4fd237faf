"""The classification / sentiment recipe: fine-tune a teacher, then distil a student.

Transfer settings (``distill.transfer``) decide which training streams the student sees:

* source: the labelled source-language data; teacher soft labels + gold labels (mixed by alpha);
* unlabelled: target-language text; teacher soft labels only (a multilingual teacher reads it);
* parallel: the teacher reads the source side, the student the target side; soft labels only;
* target labelled: k per class (``semi``) or all (``supervised``) target labels, plus soft labels.

``unsupervised`` uses the first three and never a target label.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import RunConfig, TrainConfig, resolve_path
from ..data.examples import Example
from ..data.splits import RunData, load_dev, load_training_data, text_pairs
from ..distributed import compute_device
from ..errors import ConfigError
from ..fingerprints import fingerprint_folder
from ..layout import logs_dir, student_dir, teacher_dir
from ..losses import AttentionKLLoss, EmbeddingMSELoss, HiddenStateMSELoss, SoftTargetLoss
from ..metrics.classification import agreement, classification_metrics
from ..models.batches import encode_texts, pad_ids, pad_token_id, predict
from ..models.classifier import (
    SequenceClassifier,
    is_hf_sequence_classifier,
    load_classifier,
    pair_segments,
    reorder_head,
)
from ..models.folder import check_model_folder, read_model_info
from ..models.student import build_student
from ..models.text_prefix import with_text_prefix
from ..models.tiny import RANDOM_PREFIX, resolve_random_encoder
from ..models.translators import load_translator
from .cache import TeacherCache
from .ensemble import ensemble_logits
from .fit import FitResult, fit
from .translate import seqkd_pairs

log = logging.getLogger(__name__)
NO_LABEL = -100


# ---------------------------------------------------------------------------------------------
# Teacher fine-tuning
# ---------------------------------------------------------------------------------------------


def teacher_base_path(cfg: RunConfig, data: RunData) -> Path:
    """The encoder the teacher starts from; ``random:SIZE`` builds a tiny random one (smoke runs)."""
    if not cfg.teacher.path.startswith(RANDOM_PREFIX):
        return Path(cfg.teacher.path)
    texts = [e.text for e in data.train]
    texts += [e.text for exs in (*data.unlabelled.values(), *data.dev.values()) for e in exs]
    return resolve_random_encoder(cfg.teacher.path, cfg.cache_dir, texts, seed=cfg.seed)


def train_teacher(cfg: RunConfig, *, progress: bool = True) -> FitResult:
    """Fine-tune the teacher encoder + a classification head on the source-language labels."""
    from transformers import AutoTokenizer

    tcfg = cfg.teacher
    data = load_training_data(cfg, with_targets=tcfg.path.startswith(RANDOM_PREFIX))
    path = teacher_base_path(cfg, data)
    if read_model_info(path, optional=True).get("kind") == "classifier" or is_hf_sequence_classifier(path):
        # Fine-tuning a classifier further (an xdistill teacher, or an HF checkpoint's own head).
        model, tokenizer = load_classifier(path, flag="teacher.path", labels=cfg.data.labels)
        if model.label_order != sorted(model.label_order):
            reorder_head(model.model, model.label_order)
            model = SequenceClassifier(model.model, cfg.data.labels, max_length=tcfg.max_length)
        model.max_length = tcfg.max_length
    else:
        check_model_folder(path, flag="teacher.path")
        # The prefix goes into the tokenizer, so the saved teacher (and every student copied
        # from it) applies it wherever it is loaded: pipeline(), from_pretrained, xdistill.
        tokenizer = with_text_prefix(AutoTokenizer.from_pretrained(path), tcfg.text_prefix)
        model = SequenceClassifier.from_encoder(
            path, cfg.data.labels, tokenizer, dropout=tcfg.dropout, max_length=tcfg.max_length
        )
    if tcfg.freeze_embeddings:
        # Source-only fine-tuning moves only the source language's token embeddings, pulling them
        # away from the shared multilingual space; freezing them keeps zero-shot transfer (and saves
        # the optimiser state of ~96M embedding weights in e5-small).
        for p in model.encoder.get_input_embeddings().parameters():
            p.requires_grad = False

    pad = pad_token_id(tokenizer)
    items = _labelled_items(data.train, tokenizer, tcfg.max_length)
    loss_fn = SoftTargetLoss(temperature=1.0, alpha=1.0)
    select_lang = tcfg.train.select_lang or cfg.data.source_lang
    # Only the dev sets selection needs: the teacher's target-language scores stay zero-shot.
    needed = cfg.data.target_langs if select_lang == "targets" else [select_lang]
    dev = {lang: data.dev[lang] for lang in needed if lang in data.dev}
    evaluator = DevEvaluator(dev, tokenizer, tcfg.max_length, cfg) if dev else None
    out = teacher_dir(cfg)

    def step(batch: dict, trained: torch.nn.Module) -> dict[str, torch.Tensor]:
        logits = trained(batch["input_ids"], batch["attention_mask"])["logits"]
        return loss_fn(logits, None, batch["labels"])

    return fit(
        model,
        items,
        _Collate(pad),
        step,
        cfg=tcfg.train,
        seed=tcfg.train.seed or cfg.seed,
        run_dir=logs_dir(out),
        evaluate_fn=(lambda: evaluator(model)) if evaluator else None,
        select_key=f"{select_lang}/{tcfg.train.select_metric}" if evaluator else None,
        save_fn=lambda: model.save(
            out, tokenizer, {"role": "teacher", "base_model": str(path), "prefix_in_tokenizer": tcfg.text_prefix}
        ),
        lengths=[len(it["ids"]) for it in items],
        progress=progress,
        desc="teacher",
    )


# ---------------------------------------------------------------------------------------------
# Student distillation
# ---------------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One source of training examples for the student."""

    name: str
    student_texts: list[str]
    teacher_texts: list[str]
    labels: list[int]
    student_pairs: list[str | None] | None = None
    teacher_pairs: list[str | None] | None = None
    same_text: bool = True
    teacher_logits: np.ndarray | None = field(default=None, repr=False)
    teacher_pooled: np.ndarray | None = field(default=None, repr=False)


def build_streams(cfg: RunConfig, data: RunData) -> list[Stream]:
    d = cfg.distill
    streams = []

    def from_examples(name: str, examples: list[Example]) -> Stream:
        pairs = [ex.text_pair for ex in examples] if any(ex.text_pair for ex in examples) else None
        texts = [ex.text for ex in examples]
        labels = [ex.label if ex.label is not None else NO_LABEL for ex in examples]
        return Stream(name, texts, texts, labels, pairs, pairs)

    if d.use_source or not d.use_teacher:
        streams.append(from_examples(f"source-{cfg.data.source_lang}", data.train))
    for lang, examples in data.target_labelled.items():
        streams.append(from_examples(f"labelled-{lang}", examples))
    if d.use_teacher:
        if d.use_unlabelled:
            for lang, examples in data.unlabelled.items():
                stream = from_examples(f"unlabelled-{lang}", examples)
                stream.labels = [NO_LABEL] * len(examples)
                streams.append(stream)
        if d.use_parallel:
            for lang, pairs in data.parallel.items():
                streams.append(
                    Stream(
                        f"parallel-{cfg.data.source_lang}-{lang}",
                        student_texts=[p.target for p in pairs],
                        teacher_texts=[p.source for p in pairs],
                        labels=[NO_LABEL] * len(pairs),
                        same_text=False,
                    )
                )
    return [s for s in streams if s.student_texts]


def student_streams(cfg: RunConfig, data: RunData, *, progress: bool = True) -> list[Stream]:
    """Every stream the student trains on: :func:`build_streams`, plus the translated source
    texts of ``distill.translate_source`` (they need the teacher, which labels them)."""
    streams = build_streams(cfg, data)
    if cfg.distill.use_teacher:
        streams += [s for s in translated_streams(cfg, data, progress=progress) if s.student_texts]
    return streams


def translated_streams(cfg: RunConfig, data: RunData, *, progress: bool = True) -> list[Stream]:
    """Translation-augmented transfer: data.train's texts translated into each language of
    ``distill.translate_source`` (cached in cache_dir), as unlabelled target-language text."""
    streams = []
    for lang, spec in cfg.distill.translate_source.items():
        flag = f"distill.translate_source.{lang}"
        if any(e.text_pair for e in data.train):
            raise ConfigError(
                f"{flag}: translating text pairs is not supported; remove distill.translate_source for a pair task"
            )
        folder = resolve_path(spec)
        if folder.is_dir():
            if not (folder / "config.json").is_file():
                raise ConfigError(f"{flag}: {folder} is a folder but not a Hugging Face seq2seq model (no config.json)")
            translator = load_translator(str(folder), max_length=cfg.mt.max_length, decoding=cfg.mt.decoding)
        else:
            translator = load_translator(
                command=spec, batch_size=cfg.mt.command_batch_size, timeout_s=cfg.mt.command_timeout_s
            )
        pairs, _ = seqkd_pairs(cfg, translator, [e.text for e in data.train], progress=progress)
        texts = [p.target for p in pairs]
        streams.append(Stream(f"translated-{cfg.data.source_lang}-{lang}", texts, texts, [NO_LABEL] * len(texts)))
    return streams


def _with_teacher(cfg: RunConfig) -> RunConfig:
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, use_teacher=True))


def _same_steps(train: TrainConfig, peers: list[Stream]) -> TrainConfig:
    """The training budget of the distilled student the baseline stands beside: as many optimizer
    steps (its epochs over its larger set of streams), unless train.max_steps fixes them."""
    if train.max_steps is not None:
        return train
    n = sum(len(s.student_texts) for s in peers)
    return dataclasses.replace(train, max_steps=max(1, math.ceil(train.epochs * math.ceil(n / train.batch_size))))


def default_layer_map(n_student: int, copied: list[int] | None, n_teacher: int) -> list[tuple[int, int]]:
    """Map hidden-state indices (0 = embeddings) student -> teacher.

    A copied student mirrors the layers it came from; otherwise layers are spread uniformly
    (student layer i takes teacher layer round(i * n_teacher / n_student))."""
    if copied:
        return [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(copied)]
    return [(0, 0)] + [(i, round(i * n_teacher / n_student)) for i in range(1, n_student + 1)]


def distill_student(cfg: RunConfig, *, progress: bool = True) -> FitResult:
    d = cfg.distill
    needs_internals = d.hidden_weight > 0 or d.attention_weight > 0
    attn = "eager" if d.attention_weight > 0 else None
    # An xdistill classifier, or a fine-tuned HF sequence-classification folder used as it is
    # (teacher.finetune: false), its logits reordered to data.labels.
    teacher, t_tok = load_classifier(
        teacher_dir(cfg),
        flag="teacher",
        labels=cfg.data.labels,
        attn_implementation=attn,
        max_length=cfg.teacher.max_length,
    )
    # On a GPU the frozen teacher runs there too: its cached outputs and, for hidden-state and
    # attention losses, its forward pass on each batch (which fit() puts on the student's device).
    teacher.to(compute_device()).eval()
    for p in teacher.parameters():
        p.requires_grad = False

    data = load_training_data(cfg, with_targets=True)
    streams = student_streams(cfg, data, progress=progress)
    if not streams:
        raise ValueError("no training data for the student: check data.train and the distill.use_* flags")
    for s in streams:
        log.info("stream %s: %d examples", s.name, len(s.student_texts))

    # The no-distillation baseline (use_teacher: false) differs from the distilled student in the
    # teacher signal only: its vocabulary is trimmed on the texts the distilled student would read
    # (target languages included; trimmed on English alone, Chinese would become <unk>), and it
    # trains as many steps (below).
    peers = streams if d.use_teacher else student_streams(_with_teacher(cfg), data, progress=progress)
    corpus = [t for s in peers for t in s.student_texts] + [p for s in peers for p in (s.student_pairs or []) if p]
    # The student is the teacher's own sequence-classification class: a copied student starts
    # from the teacher's head too (reordered to data.labels for a foreign checkpoint).
    student_model, s_tok, student_info = build_student(teacher.model, t_tok, cfg.student, corpus, progress=progress)
    if teacher.label_order != sorted(teacher.label_order) and cfg.student.init == "teacher":
        reorder_head(student_model, teacher.label_order)
    if attn:
        student_model.config._attn_implementation = "eager"
    student = SequenceClassifier(
        student_model,
        cfg.data.labels,
        max_length=cfg.student_max_length,
        segments=pair_segments(s_tok),
        sep_token_id=s_tok.sep_token_id,
    )
    encoder = student.encoder
    if cfg.student.freeze_embeddings:
        # As for the teacher: gradients from English labels and a few target texts would move only the
        # pieces those texts contain, pulling them out of the shared multilingual space.
        for p in encoder.get_input_embeddings().parameters():
            p.requires_grad = False

    cache = TeacherCache(cfg.cache_dir)
    t_fingerprint = fingerprint_folder(teacher_dir(cfg))
    t_pad, s_pad = pad_token_id(t_tok), pad_token_id(s_tok)
    if d.use_teacher:
        outputs = ("logits", "pooled") if d.embedding_weight > 0 else ("logits",)
        for s in streams:
            cached = teacher_outputs(
                cache,
                t_fingerprint,
                teacher,
                t_tok,
                s.teacher_texts,
                s.teacher_pairs,
                cfg,
                outputs,
                f"teacher on {s.name}",
                progress,
            )
            s.teacher_logits = cached["logits"]
            s.teacher_pooled = cached.get("pooled")
    dev = load_dev(cfg)
    dev_inputs = [(f"dev-{lang}", [e.text for e in exs], text_pairs(exs)) for lang, exs in dev.items()]
    # Every extra teacher is loaded once, for the training streams and the dev sets together.
    extra_logits = (
        _extra_teacher_logits(
            cfg, cache, [(s.name, s.teacher_texts, s.teacher_pairs) for s in streams] + dev_inputs, progress
        )
        if d.use_teacher and d.extra_teachers
        else []
    )
    for s, logits in zip(streams, extra_logits):
        s.teacher_logits = ensemble_logits([s.teacher_logits, *logits], d.teacher_weights)

    items = []
    for s in streams:
        s_ids = encode_texts(s_tok, s.student_texts, s.student_pairs, max_length=cfg.student_max_length)
        t_ids = None
        if needs_internals and s.same_text:
            t_ids = encode_texts(t_tok, s.teacher_texts, s.teacher_pairs, max_length=cfg.student_max_length)
        for i, ids in enumerate(s_ids):
            items.append(
                {
                    "ids": ids,
                    "label": s.labels[i],
                    "t_logits": s.teacher_logits[i] if s.teacher_logits is not None else None,
                    "t_pooled": s.teacher_pooled[i] if s.teacher_pooled is not None else None,
                    "t_ids": t_ids[i] if t_ids is not None else None,
                }
            )

    soft = SoftTargetLoss(temperature=d.temperature, alpha=d.alpha if d.use_teacher else 1.0)
    n_student = encoder.config.num_hidden_layers
    layer_map = (
        [tuple(p) for p in d.layer_map]
        if d.layer_map
        else default_layer_map(
            n_student,
            cfg.student.layers if cfg.student.init == "teacher" else None,
            teacher.encoder.config.num_hidden_layers,
        )
    )
    hidden_loss = (
        HiddenStateMSELoss(student.hidden_size, teacher.hidden_size, layer_map) if d.hidden_weight > 0 else None
    )
    attn_map = [(s - 1, t - 1) for s, t in layer_map if s > 0 and t > 0]
    attention_loss = AttentionKLLoss(attn_map) if d.attention_weight > 0 else None
    embedding_loss = EmbeddingMSELoss(student.hidden_size, teacher.hidden_size) if d.embedding_weight > 0 else None
    extra = [m for m in (hidden_loss, embedding_loss) if m is not None]

    def step(batch: dict, trained: torch.nn.Module) -> dict[str, torch.Tensor]:
        out = trained(
            batch["input_ids"],
            batch["attention_mask"],
            output_hidden_states=hidden_loss is not None,
            output_attentions=attention_loss is not None,
        )
        parts = soft(out["logits"], batch.get("teacher_logits"), batch["labels"])
        total = parts["loss"]
        if embedding_loss is not None and "teacher_pooled" in batch:
            e = embedding_loss(out["pooled"], batch["teacher_pooled"])
            total = total + d.embedding_weight * e["loss"]
            parts["embedding"] = e["loss"]
        if needs_internals and batch.get("t_input_ids") is not None:
            rows = batch["t_rows"]
            with torch.no_grad():
                t_out = teacher(
                    batch["t_input_ids"],
                    batch["t_attention_mask"],
                    output_hidden_states=hidden_loss is not None,
                    output_attentions=attention_loss is not None,
                )
            mask = batch["t_attention_mask"]
            if mask.shape[1] == batch["attention_mask"].shape[1] and torch.equal(mask, batch["attention_mask"][rows]):
                if hidden_loss is not None:
                    h = hidden_loss([x[rows] for x in out["hidden"]], t_out["hidden"], mask)
                    total = total + d.hidden_weight * h["loss"]
                    parts.update({f"hidden/{k}": v for k, v in h.items()})
                if attention_loss is not None:
                    a = attention_loss([x[rows] for x in out["attention"]], t_out["attention"], mask)
                    total = total + d.attention_weight * a["loss"]
                    parts.update({f"attention/{k}": v for k, v in a.items()})
        parts["loss"] = total
        return parts

    teacher_dev_logits = {}
    if d.use_teacher:
        # Agreement on dev is with what the student learns from: the teacher, or the ensemble.
        dev_logits = [
            [
                teacher_outputs(
                    cache, t_fingerprint, teacher, t_tok, texts, pairs, cfg, ("logits",), f"teacher on {name}", progress
                )["logits"]
            ]
            for name, texts, pairs in dev_inputs
        ]
        for own, others in zip(dev_logits, extra_logits[len(streams) :]):
            own.extend(others)
        teacher_dev_logits = {lang: ensemble_logits(logits, d.teacher_weights) for lang, logits in zip(dev, dev_logits)}
    evaluator = (
        DevEvaluator(dev, s_tok, cfg.student_max_length, cfg, teacher_logits=teacher_dev_logits) if dev else None
    )
    select_lang = cfg.train.select_lang or cfg.data.source_lang
    out_dir = student_dir(cfg)
    extra_info = {
        "role": "student",
        "teacher": str(teacher_dir(cfg)),
        "transfer": d.transfer,
        "distill": {
            k: getattr(d, k)
            for k in ("use_teacher", "temperature", "alpha", "hidden_weight", "attention_weight", "embedding_weight")
        },
        "streams": {s.name: len(s.student_texts) for s in streams},
        **{f"student_{k}": v for k, v in student_info.items()},
    }
    result = fit(
        student,
        items,
        _Collate(s_pad, t_pad),
        step,
        cfg=cfg.train if d.use_teacher else _same_steps(cfg.train, peers),
        seed=cfg.train.seed or cfg.seed,
        run_dir=logs_dir(out_dir),
        evaluate_fn=(lambda: evaluator(student)) if evaluator else None,
        select_key=f"{select_lang}/{cfg.train.select_metric}" if evaluator else None,
        save_fn=lambda: student.save(out_dir, s_tok, {**extra_info, "selected_on": select_lang}),
        also_select={
            lang: (
                f"{lang}/{cfg.train.select_metric}",
                lambda lang=lang: student.save(student_dir(cfg, lang), s_tok, {**extra_info, "selected_on": lang}),
            )
            for lang in cfg.train.also_select_langs
        }
        if evaluator
        else None,
        extra_modules=extra,
        lengths=[len(it["ids"]) for it in items],
        progress=progress,
        desc="student",
    )
    return result


def _extra_teacher_logits(
    cfg: RunConfig, cache: TeacherCache, inputs: list[tuple[str, list[str], list[str | None] | None]], progress: bool
) -> list[list[np.ndarray]]:
    """For each ``(name, texts, pairs)``, the logits of every ``distill.extra_teachers`` folder (in
    data.labels order), cached like the run's teacher's; one teacher in memory at a time."""
    found: list[list[np.ndarray]] = [[] for _ in inputs]
    for i, folder in enumerate(cfg.distill.extra_teachers):
        flag = f"distill.extra_teachers[{i}]"
        model, tokenizer = load_classifier(
            resolve_path(folder), flag=flag, labels=cfg.data.labels, max_length=cfg.teacher.max_length
        )
        fingerprint = fingerprint_folder(resolve_path(folder))
        for out, (name, texts, pairs) in zip(found, inputs):
            out.append(
                teacher_outputs(
                    cache, fingerprint, model, tokenizer, texts, pairs, cfg, ("logits",), f"{flag} on {name}", progress
                )["logits"]
            )
        del model
    return found


def teacher_outputs(
    cache: TeacherCache,
    fingerprint: str,
    teacher: nn.Module,
    tokenizer,
    texts: list[str],
    pairs: list[str | None] | None,
    cfg: RunConfig,
    outputs: tuple[str, ...],
    description: str,
    progress: bool,
) -> dict[str, np.ndarray]:
    """The teacher's outputs on these texts, from the cache or computed (and cached) now."""
    settings = {"max_length": cfg.teacher.max_length, "outputs": list(outputs)}
    if getattr(teacher, "label_order", None) is not None:
        settings["label_order"] = teacher.label_order  # an HF teacher's logits, reordered to data.labels
    key = cache.key(fingerprint, _joined(texts, pairs), settings)
    ids: list[list[int]] = []

    def compute(start: int, end: int) -> dict[str, np.ndarray]:
        if not ids:  # tokenise only on a cache miss
            ids.extend(encode_texts(tokenizer, texts, pairs, max_length=cfg.teacher.max_length))
        return predict(
            teacher, ids[start:end], pad_token_id(tokenizer), batch_size=cfg.train.eval_batch_size, outputs=outputs
        )

    return cache.get_or_compute(key, len(texts), compute, description=description, progress=progress)


def _joined(texts: list[str], pairs: list[str | None] | None) -> list[str]:
    if pairs is None:
        return texts
    return [f"{t}\t{p or ''}" for t, p in zip(texts, pairs)]


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def _labelled_items(examples: list[Example], tokenizer, max_length: int) -> list[dict]:
    ids = encode_texts(tokenizer, [e.text for e in examples], text_pairs(examples), max_length=max_length)
    return [
        {"ids": i, "label": e.label if e.label is not None else NO_LABEL, "t_logits": None, "t_ids": None}
        for i, e in zip(ids, examples)
    ]


class _Collate:
    def __init__(self, pad_id: int, teacher_pad_id: int | None = None):
        self.pad_id = pad_id
        self.teacher_pad_id = teacher_pad_id if teacher_pad_id is not None else pad_id

    def __call__(self, items: list[dict]) -> dict[str, Any]:
        input_ids, mask = pad_ids([it["ids"] for it in items], self.pad_id)
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }
        if all(it["t_logits"] is not None for it in items):
            batch["teacher_logits"] = torch.as_tensor(np.stack([it["t_logits"] for it in items]), dtype=torch.float32)
        elif any(it["t_logits"] is not None for it in items):
            raise ValueError("internal: a batch mixes examples with and without teacher outputs")
        if all(it.get("t_pooled") is not None for it in items):
            batch["teacher_pooled"] = torch.as_tensor(np.stack([it["t_pooled"] for it in items]), dtype=torch.float32)
        rows = [i for i, it in enumerate(items) if it["t_ids"] is not None]
        if rows:
            t_ids, t_mask = pad_ids([items[i]["t_ids"] for i in rows], self.teacher_pad_id)
            batch.update(t_input_ids=t_ids, t_attention_mask=t_mask, t_rows=torch.tensor(rows))
        return batch


class DevEvaluator:
    """Per-language dev metrics for model selection; with the teacher's dev logits, also agreement
    with it and ``teacher_kl``: the mean KL(teacher || student) of the class distributions (T = 1).
    Unlike accuracy on a few dozen dev texts, the KL rarely ties, and it needs no dev label."""

    def __init__(
        self,
        dev: dict[str, list[Example]],
        tokenizer,
        max_length: int,
        cfg: RunConfig,
        teacher_logits: dict[str, np.ndarray] | None = None,
    ):
        self.cfg = cfg
        self.pad = pad_token_id(tokenizer)
        self.ids = {
            lang: encode_texts(tokenizer, [e.text for e in exs], text_pairs(exs), max_length=max_length)
            for lang, exs in dev.items()
        }
        self.gold = {lang: np.array([e.label for e in exs]) for lang, exs in dev.items()}
        self.teacher_logits = teacher_logits or {}

    def __call__(self, model: nn.Module) -> dict[str, float]:
        metrics = {}
        for lang, ids in self.ids.items():
            logits = predict(model, ids, self.pad, batch_size=self.cfg.train.eval_batch_size)["logits"]
            pred = logits.argmax(-1)
            m = classification_metrics(self.gold[lang], pred, len(self.cfg.data.labels), ordinal=self.cfg.data.ordinal)
            for key in ("accuracy", "macro_f1", "mae"):
                if key in m:
                    metrics[f"{lang}/{key}"] = m[key]
            if lang in self.teacher_logits:
                teacher = self.teacher_logits[lang]
                metrics[f"{lang}/agreement"] = agreement(teacher.argmax(-1), pred)
                metrics[f"{lang}/teacher_kl"] = teacher_kl(teacher, logits)
        targets = [lang for lang in self.cfg.data.target_langs if lang in self.ids]
        for key in ("accuracy", "macro_f1", "mae", "agreement", "teacher_kl"):
            values = [metrics[f"{lang}/{key}"] for lang in targets if f"{lang}/{key}" in metrics]
            if values and len(values) == len(targets):
                metrics[f"targets/{key}"] = float(np.mean(values))
        return metrics


def teacher_kl(teacher_logits: np.ndarray, student_logits: np.ndarray) -> float:
    """Mean KL(teacher || student) over examples of the softmax class distributions (T = 1), in
    nats: the soft-target term of the training loss, without its temperature."""
    as_tensor = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    return float(SoftTargetLoss(temperature=1.0, alpha=0.0)(as_tensor(student_logits), as_tensor(teacher_logits))["kd"])
