"""The sentence-embedding recipe: make an English-only teacher's embedding space multilingual.

Reimers & Gurevych (2020), "Making Monolingual Sentence Embeddings Multilingual using Knowledge
Distillation" (arXiv:2004.09813): for each parallel pair (s, t), the student is trained so that
both its embedding of the English sentence s and of the translation t match the teacher's
embedding of s (EmbeddingMSELoss). The teacher reads only English, with its own tokenizer and
pooling; its embeddings are computed once and cached on disk (TeacherCache). Monolingual English
text (``data.unlabelled: {en: ...}``) adds student(s) -> teacher(s) examples only. With
``embed.ranking_weight`` > 0, an in-batch translation-ranking term (TranslationRankingLoss) is added:
on a CPU budget the MSE alone brings a translation only slowly next to its sentence.

The student is copied from chosen layers of ``student.base`` (e.g. multilingual-e5-small, whose
vocabulary covers es/zh; the teacher's does not) with the vocabulary trimmed to the training text
of both sides. When the student's width differs from the teacher's, a learned linear projection
is part of the student (saved as a sentence-transformers Dense module), not of the loss, so the
saved student outputs vectors in the teacher's space, which the MSE evaluation and drop-in
use as a teacher replacement need; the loss is then built with equal widths.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer

from ..config import RunConfig
from ..data.embed_data import EmbedData, load_embed_data, unique
from ..layout import logs_dir, student_dir
from ..losses import EmbeddingMSELoss, TranslationRankingLoss
from ..metrics.embedding import bidirectional_retrieval, embedding_mse
from ..models.batches import encode_texts, pad_ids, pad_token_id, predict
from ..models.encoder import load_encoder
from ..models.folder import check_model_folder, read_model_info
from ..models.sentence import (
    SentenceEncoder,
    fingerprint_sentence_encoder,
    load_sentence_encoder,
    read_sentence_settings,
    resolve_model_path,
    save_sentence_encoder,
)
from ..models.student import build_student
from ..models.tiny import RANDOM_PREFIX, resolve_random_encoder
from .cache import TeacherCache
from .fit import FitResult, fit

log = logging.getLogger(__name__)
# train.select_metric -> the dev metric that picks the saved epoch: the MSE to the teacher over English
# and translations (lower is better), or the worst target language's translation retrieval.
SELECT_KEYS = {"mse": "mean/mse", "retrieval": "min/retrieval"}


def resolve_teacher(cfg: RunConfig, data: EmbedData) -> Path:
    """The teacher folder; ``random:SIZE`` builds a tiny random encoder from the run's text (smoke runs)."""
    if cfg.teacher.path.startswith(RANDOM_PREFIX):
        texts = data.training_texts() + [
            t for pairs in (*data.dev.values(), *data.heldout.values()) for p in pairs for t in (p.source, p.target)
        ]
        return resolve_random_encoder(cfg.teacher.path, cfg.cache_dir, texts, seed=cfg.seed)
    return check_model_folder(resolve_model_path(cfg.teacher.path, flag="teacher.path"), flag="teacher.path")


def load_teacher(cfg: RunConfig, folder: Path) -> tuple[SentenceEncoder, Any]:
    """The teacher as it embeds: its folder's pooling and normalisation unless the config overrides them."""
    teacher, tokenizer = load_sentence_encoder(
        folder,
        flag="teacher.path",
        default_pooling=cfg.teacher.pooling,
        normalize=cfg.embed.normalize,
        text_prefix=cfg.teacher.text_prefix or None,
        max_length=cfg.teacher.max_length,
    )
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad = False
    return teacher, tokenizer


def teacher_embeddings(
    cfg: RunConfig,
    teacher: SentenceEncoder,
    tokenizer,
    folder: Path,
    texts: list[str],
    *,
    progress: bool = True,
    what: str = "teacher embeddings",
) -> np.ndarray:
    """The teacher's embeddings of ``texts``, computed once per (teacher, texts, settings) and cached."""
    if not texts:
        return np.zeros((0, teacher.dim), dtype=np.float32)
    cache = TeacherCache(cfg.cache_dir)
    key = cache.key(
        fingerprint_sentence_encoder(folder), texts, {"outputs": ["sentence-embedding"], **teacher.settings()}
    )
    pad = pad_token_id(tokenizer)

    def compute(start: int, end: int) -> dict[str, np.ndarray]:
        ids = encode_texts(tokenizer, texts[start:end], prefix=teacher.text_prefix, max_length=teacher.max_length)
        return predict(teacher, ids, pad, batch_size=cfg.embed.eval_batch_size, outputs=("embedding",))

    return cache.get_or_compute(key, len(texts), compute, description=what, progress=progress)["embedding"]


def build_embedding_student(
    cfg: RunConfig, teacher: SentenceEncoder, teacher_folder: Path, corpus: list[str], *, progress: bool = True
) -> tuple[SentenceEncoder, Any, dict[str, Any]]:
    """Copy ``student.layers`` of ``student.base`` (default: the teacher), trim its vocabulary to
    ``corpus``, and add pooling, a projection to the teacher's width when needed, and normalisation."""
    if cfg.student.base:
        base = check_model_folder(resolve_model_path(cfg.student.base, flag="student.base"), flag="student.base")
        pooling = read_sentence_settings(base, flag="student.base").get("pooling", "mean")
    else:
        base, pooling = teacher_folder, teacher.pooling
    encoder, tokenizer, info = build_student(
        load_encoder(base),
        AutoTokenizer.from_pretrained(base),
        cfg.student,
        corpus,
        text_prefix=cfg.embed.student_prefix,
        progress=progress,
    )
    width = encoder.config.hidden_size
    dense = nn.Linear(width, teacher.dim, bias=False) if width != teacher.dim else None
    student = SentenceEncoder(
        encoder,
        pooling=pooling,
        dense=dense,
        normalize=teacher.normalize,
        text_prefix=cfg.embed.student_prefix,
        max_length=cfg.student_max_length,
    )
    info.update(base=str(base), projection=dense is not None)
    return student, tokenizer, info


class EmbeddingDevEvaluator:
    """Per-epoch dev metrics: MSE to the teacher (English side, each translation side, mean) and
    translation retrieval among the dev pairs (per language, both directions averaged; and the worst
    single direction, ``min/retrieval``)."""

    def __init__(
        self,
        dev: dict[str, list],
        targets: dict[str, np.ndarray],
        tokenizer,
        student: SentenceEncoder,
        source_lang: str,
        batch_size: int,
    ):
        self.pad = pad_token_id(tokenizer)
        self.batch_size = batch_size
        self.source_lang = source_lang
        self.targets = targets
        enc = lambda texts: encode_texts(tokenizer, texts, prefix=student.text_prefix, max_length=student.max_length)  # noqa: E731
        self.ids = {
            lang: (enc([p.source for p in pairs]), enc([p.target for p in pairs])) for lang, pairs in dev.items()
        }

    def __call__(self, model: SentenceEncoder) -> dict[str, float]:
        metrics: dict[str, float] = {}
        source_mse, directions = [], []
        for lang, (src_ids, tgt_ids) in self.ids.items():
            src, tgt = (
                predict(model, ids, self.pad, batch_size=self.batch_size, outputs=("embedding",))["embedding"]
                for ids in (src_ids, tgt_ids)
            )
            metrics[f"{lang}/mse"] = embedding_mse(tgt, self.targets[lang])
            source_mse.append(embedding_mse(src, self.targets[lang]))
            both = bidirectional_retrieval(src, tgt, self.source_lang, lang)
            metrics[f"{lang}/retrieval"] = float(np.mean(list(both.values())))
            directions.extend(both.values())
        metrics[f"{self.source_lang}/mse"] = float(np.mean(source_mse))
        metrics["mean/mse"] = float(np.mean([v for k, v in metrics.items() if k.endswith("/mse")]))
        # The worst direction (en->zh, zh->en, ...): the retrieval target holds in every direction.
        metrics["min/retrieval"] = min(directions)
        return metrics


class _Collate:
    """A batch of examples: the English (source) side of every example, the translation side of
    the parallel ones (``pair_rows``: which source rows they belong to), and teacher targets."""

    def __init__(self, pad_id: int, targets: torch.Tensor):
        self.pad_id = pad_id
        self.targets = targets

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, mask = pad_ids([it["src"] for it in items], self.pad_id)
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "teacher": self.targets[torch.tensor([it["row"] for it in items], dtype=torch.long)],
        }
        paired = [i for i, it in enumerate(items) if it["tgt"] is not None]
        if paired:
            t_ids, t_mask = pad_ids([items[i]["tgt"] for i in paired], self.pad_id)
            batch.update(target_input_ids=t_ids, target_attention_mask=t_mask, pair_rows=torch.tensor(paired))
        return batch


def distill_embedding(cfg: RunConfig, *, progress: bool = True) -> FitResult:
    """Train the student on parallel (and monolingual) text; save it to RUN_DIR/student."""
    data = load_embed_data(cfg)
    if not any(data.train.values()) and not data.monolingual:
        raise ValueError(
            "no training data for the student: data.parallel and data.unlabelled are empty after "
            "decontamination and hold-outs"
        )
    teacher_folder = resolve_teacher(cfg, data)
    teacher, t_tok = load_teacher(cfg, teacher_folder)

    # One teacher pass over every distinct English text (training, dev, monolingual).
    pairs = [p for lang_pairs in data.train.values() for p in lang_pairs]
    dev_sources = {lang: [p.source for p in dev] for lang, dev in data.dev.items()}
    english = unique([p.source for p in pairs] + data.monolingual + [t for ts in dev_sources.values() for t in ts])
    vectors = teacher_embeddings(
        cfg, teacher, t_tok, teacher_folder, english, progress=progress, what="teacher on English text"
    )
    row_of = {text: i for i, text in enumerate(english)}

    student, s_tok, student_info = build_embedding_student(
        cfg, teacher, teacher_folder, data.training_texts(), progress=progress
    )
    enc = lambda texts: encode_texts(s_tok, texts, prefix=student.text_prefix, max_length=student.max_length)  # noqa: E731
    # One example per pair (both sides, so the ranking term sees aligned pairs in a batch) and
    # per monolingual text (English side only).
    items = [
        {"src": a, "tgt": b, "row": row_of[p.source]}
        for p, a, b in zip(pairs, enc([p.source for p in pairs]), enc([p.target for p in pairs]))
    ]
    items += [{"src": a, "tgt": None, "row": row_of[t]} for t, a in zip(data.monolingual, enc(data.monolingual))]
    log.info("student examples: %d pairs + %d monolingual texts", len(pairs), len(data.monolingual))

    mse_loss = EmbeddingMSELoss(student.dim, teacher.dim)
    weight = cfg.embed.ranking_weight
    ranking = TranslationRankingLoss(cfg.embed.ranking_scale) if weight > 0 else None

    def step(batch: dict, trained: torch.nn.Module) -> dict[str, torch.Tensor]:
        src = trained(batch["input_ids"], batch["attention_mask"])["embedding"]
        rows = batch.get("pair_rows")
        if rows is None:  # monolingual text only
            mse, tgt = mse_loss(src, batch["teacher"])["loss"], None
        else:
            tgt = trained(batch["target_input_ids"], batch["target_attention_mask"])["embedding"]
            # Both sides of a pair are trained onto the teacher's embedding of the English side.
            mse = mse_loss(torch.cat([src, tgt]), torch.cat([batch["teacher"], batch["teacher"][rows]]))["loss"]
        if ranking is None:
            return {"loss": mse}
        # Without two pairs in the batch there are no negatives: the term is 0 there. The same
        # keys every step, so the logged averages stay averages.
        rank = ranking(src[rows], tgt)["loss"] if rows is not None and len(rows) > 1 else mse * 0
        return {"loss": mse + weight * rank, "mse": mse, "ranking": rank}

    evaluator = None
    if any(data.dev.values()):
        dev_targets = {lang: vectors[[row_of[t] for t in texts]] for lang, texts in dev_sources.items()}
        evaluator = EmbeddingDevEvaluator(
            data.dev, dev_targets, s_tok, student, cfg.data.source_lang, cfg.embed.eval_batch_size
        )
    out_dir = student_dir(cfg)
    select_key = SELECT_KEYS[cfg.train.select_metric]
    info = {
        "role": "student",
        "task": "embedding",
        "teacher": str(teacher_folder),
        "teacher_settings": teacher.settings(),
        "selected_on": f"dev {select_key}" if evaluator else "last epoch",
        "losses": {"mse": 1.0, "ranking": weight, "ranking_scale": cfg.embed.ranking_scale},
        "data": data.summary,
        **{f"student_{k}": v for k, v in student_info.items()},
    }
    return fit(
        student,
        items,
        _Collate(pad_token_id(s_tok), torch.as_tensor(vectors, dtype=torch.float32)),
        step,
        cfg=cfg.train,
        seed=cfg.train.seed or cfg.seed,
        run_dir=logs_dir(out_dir),
        evaluate_fn=(lambda: evaluator(student)) if evaluator else None,
        select_key=select_key if evaluator else None,
        save_fn=lambda: save_sentence_encoder(student, s_tok, out_dir, info),
        lengths=[len(it["src"]) + len(it["tgt"] or ()) for it in items],
        progress=progress,
        desc="student",
    )


def recorded_teacher(cfg: RunConfig) -> Path | None:
    """The teacher folder a saved student was distilled from (a ``random:`` teacher lives in the cache)."""
    folder = student_dir(cfg)
    teacher = read_model_info(folder, optional=True).get("teacher") if folder.is_dir() else None
    return Path(teacher) if teacher else None
