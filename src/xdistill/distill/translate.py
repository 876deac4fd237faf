"""The translation recipe: a teacher xdistill trains itself, and sequence- / word-level KD students.

Sequence-level KD (Kim & Rush 2016): the teacher translates every training source once (beam
``mt.teacher_beam``); the translations are cached on disk in chunks (``TextCache``), so a killed
run resumes and every later student run with the same teacher and sources reuses them. The
student trains on (source, teacher translation) pairs, plus the references when
``mt.use_references``. Word-level KD adds a token-level KL to a white-box teacher sharing the
student's vocabulary; those distributions (B × L × |V|) are too big to cache, so the teacher runs
beside the student for that loss only.

Every model trains through the one ``fit()`` loop; dev selection is chrF (or BLEU) on held-out
reference pairs.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, Seq2SeqArchConfig, TrainConfig
from ..data.examples import ParallelPair
from ..data.mt_data import MTData, load_mt_data
from ..distributed import compute_device
from ..errors import XdistillError
from ..layout import logs_dir, student_dir, teacher_dir
from ..losses.generalized_jsd import GeneralizedJSDLoss
from ..losses.word_kd import WordKDLoss
from ..metrics.translation import translation_scores
from ..models.seq2seq import build_marian, save_translator, train_per_side_tokenizer, train_tokenizer
from ..models.translators import CommandTranslator, Seq2SeqTranslator, Translator
from ..models.warm_start import build_warm_started
from .cache import TextCache
from .fit import FitResult, fit

log = logging.getLogger(__name__)


def teacher_kind(cfg: RunConfig) -> str:
    return "command" if cfg.teacher.command else "folder" if cfg.teacher.path else "trained"


def load_teacher_translator(cfg: RunConfig) -> Translator:
    if cfg.teacher.command:
        return CommandTranslator(
            cfg.teacher.command, batch_size=cfg.mt.command_batch_size, timeout_s=cfg.mt.command_timeout_s
        )
    folder = teacher_dir(cfg)
    if not (folder / "config.json").is_file():
        hint = (
            "run `xdistill translate-teacher train --config ...` first (or `xdistill run`)"
            if not cfg.teacher.path
            else "check teacher.path"
        )
        raise XdistillError(f"no translation teacher in {folder}; {hint}")
    return Seq2SeqTranslator(folder, max_length=cfg.mt.max_length, decoding=cfg.mt.decoding)


class _Collate:
    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, pairs: list[ParallelPair]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            [p.source for p in pairs],
            text_target=[p.target for p in pairs],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        labels = batch["labels"]
        labels[labels == self.tokenizer.pad_token_id] = -100
        return dict(batch)


class DevChrF:
    """Per-epoch dev metrics: greedy translations of the dev sources against their references."""

    def __init__(self, translator: Seq2SeqTranslator, dev: list[ParallelPair], target_lang: str, batch_size: int):
        self.translator, self.dev, self.target_lang, self.batch_size = translator, dev, target_lang, batch_size

    def __call__(self) -> dict[str, float]:
        hyps = self.translator.translate([p.source for p in self.dev], beam=1, batch_size=self.batch_size)
        scores = translation_scores(hyps, [p.target for p in self.dev], self.target_lang)
        return {"chrf": scores["chrf"], "bleu": scores["bleu"]}


def train_seq2seq(
    model,
    tokenizer,
    pairs: list[ParallelPair],
    dev: list[ParallelPair],
    *,
    cfg: RunConfig,
    train_cfg: TrainConfig,
    out_dir: Path,
    log_dir: Path,
    info: dict[str, Any],
    teacher: Seq2SeqTranslator | None = None,
    progress: bool = True,
    desc: str = "student",
) -> FitResult:
    """Train ``model`` on ``pairs`` with token CE (+ word-level KD to ``teacher``), keep the best on dev."""
    if not pairs:
        raise XdistillError("no training pairs for the translation model; check data.parallel / mt.monolingual")
    mt = cfg.mt
    loss_fn = WordKDLoss(
        weight=mt.word_kd_weight if teacher is not None else 0.0,
        temperature=mt.word_kd_temperature,
        label_smoothing=mt.label_smoothing,
    )
    if teacher is not None:
        teacher.model.eval()
    on_policy = GeneralizedJSDLoss(mt.on_policy_beta, mt.on_policy_temperature) if teacher is not None else None
    # Which steps are on-policy: drawn from the run's seed, so a rerun takes the same ones.
    draw = random.Random(f"on-policy-{train_cfg.seed if train_cfg.seed is not None else cfg.seed}")

    def step(batch: dict[str, torch.Tensor], trained: torch.nn.Module) -> dict[str, torch.Tensor]:
        # Tokens through the model this step (logged as averages): the training throughput.
        sizes = {"source_tokens": batch["attention_mask"].sum().float()}
        parts = _step(batch, trained)
        labels = parts.pop("labels")
        return {**parts, **sizes, "target_tokens": (labels != -100).sum().float()}

    def _step(batch: dict[str, torch.Tensor], trained: torch.nn.Module) -> dict[str, torch.Tensor]:
        if on_policy is not None and mt.on_policy_ratio > 0 and draw.random() < mt.on_policy_ratio:
            labels = sample_translations(model, tokenizer, batch, mt.max_length, mt.on_policy_temperature)
            student_logits = trained(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
            ).logits
            with torch.no_grad():
                teacher_logits = teacher.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
                ).logits
            return {
                **on_policy(student_logits, teacher_logits, labels),
                "on_policy": torch.tensor(1.0),
                "labels": labels,
            }
        out = trained(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        teacher_logits = None
        if teacher is not None and loss_fn.weight > 0:
            with torch.no_grad():
                teacher_logits = teacher.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
                ).logits
        return {
            **loss_fn(out.logits, batch["labels"], teacher_logits),
            "on_policy": torch.tensor(0.0),
            "labels": batch["labels"],
        }

    translator = Seq2SeqTranslator(
        out_dir, model=model, tokenizer=tokenizer, max_length=mt.max_length, decoding=mt.decoding
    )
    target_lang = cfg.data.target_langs[0]
    evaluate = DevChrF(translator, dev, target_lang, mt.eval_batch_size) if dev else None
    lengths = [
        len(ids) for ids in tokenizer([p.source for p in pairs], truncation=True, max_length=mt.max_length)["input_ids"]
    ]
    return fit(
        model,
        pairs,
        _Collate(tokenizer, mt.max_length),
        step,
        cfg=train_cfg,
        seed=train_cfg.seed if train_cfg.seed is not None else cfg.seed,
        run_dir=log_dir,
        evaluate_fn=evaluate,
        select_key=train_cfg.select_metric,
        save_fn=lambda: save_translator(model, tokenizer, out_dir, info),
        lengths=lengths,
        progress=progress,
        desc=desc,
    )


@torch.no_grad()
def sample_translations(model, tokenizer, batch: dict[str, torch.Tensor], max_length: int, temperature: float):
    """The student's own sampled translations of the batch's sources, as ``labels`` (-100 after
    the end of each sentence): what on-policy distillation trains on."""
    was_training = model.training
    model.eval()  # sample from the model itself, not from a dropout-perturbed one
    try:
        out = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            do_sample=True,
            top_k=0,
            top_p=1.0,
            num_beams=1,
            temperature=temperature,
            # As a total length (the decoder start token + ``max_length`` new tokens): the model's
            # generation_config already sets max_length, and passing max_new_tokens beside it makes
            # transformers warn on every sampled batch. The samples are the same either way.
            max_length=max_length + 1,
        )
    finally:
        model.train(was_training)
    labels = out[:, 1:].clone()  # without the decoder start token: the model shifts labels right itself
    labels[labels == tokenizer.pad_token_id] = -100
    return labels


def train_translation_teacher(cfg: RunConfig, *, progress: bool = True) -> FitResult:
    """Train the Marian-style teacher of ``mt.teacher_model`` on the reference pairs."""
    if teacher_kind(cfg) != "trained":
        raise XdistillError(
            "this run's teacher is given (teacher.path or teacher.command); there is nothing to "
            "train: remove both to have xdistill train one from data.parallel"
        )
    data = load_mt_data(cfg)
    model, tokenizer = build_translation_model(cfg.mt.teacher_model, data.train, cfg, progress=progress)
    info = _info(cfg, "teacher", data, {"trained_on": "references", "pairs": len(data.train)}, cfg.mt.teacher_model)
    return train_seq2seq(
        model,
        tokenizer,
        data.train,
        data.dev,
        cfg=cfg,
        train_cfg=cfg.teacher.train,
        out_dir=teacher_dir(cfg),
        log_dir=logs_dir(teacher_dir(cfg)),
        info=info,
        progress=progress,
        desc="teacher",
    )


def decode_settings(cfg: RunConfig, translator: Translator, beam: int) -> dict[str, Any]:
    """What a cached translation depends on besides the model and the sources."""
    settings: dict[str, Any] = {"beam": beam, "max_length": cfg.mt.max_length}
    if isinstance(translator, Seq2SeqTranslator):  # a black box decodes its own way
        settings["decoding"] = translator.decoding.to_dict()
    return settings


def seqkd_pairs(
    cfg: RunConfig, teacher: Translator, sources: list[str], *, progress: bool = True
) -> tuple[list[ParallelPair], dict[str, int]]:
    """The teacher's translations of ``sources`` (cached on disk, resumable) as training pairs."""
    cache = TextCache(Path(cfg.cache_dir) / "translations")
    settings = decode_settings(cfg, teacher, cfg.mt.teacher_beam)
    key = cache.key(teacher.fingerprint(), sources, settings)
    hyps = cache.get_texts(
        key,
        len(sources),
        lambda a, b: teacher.translate(sources[a:b], beam=cfg.mt.teacher_beam, batch_size=cfg.mt.eval_batch_size),
        description=f"teacher translations ({teacher.name})",
        progress=progress,
    )
    pairs = [ParallelPair(s, h) for s, h in zip(sources, hyps) if h.strip()]
    return pairs, {"sources": len(sources), "empty_translations": len(sources) - len(pairs), "cache_key": key}


def distill_translation(cfg: RunConfig, *, progress: bool = True) -> FitResult:
    """Train the student: seq-KD pairs and/or references, optionally word-level KD."""
    data = load_mt_data(cfg)
    mt = cfg.mt
    pairs: list[ParallelPair] = []
    made: dict[str, Any] = {"teacher": _teacher_name(cfg) if cfg.distill.use_teacher else None}
    teacher: Translator | None = None
    if cfg.distill.use_teacher:
        teacher = load_teacher_translator(cfg)
        if isinstance(teacher, Seq2SeqTranslator):
            # On the GPU when there is one: it translates the seq-KD sources and, for word-level KD and
            # on-policy steps, runs beside the student on each batch.
            teacher.model.to(compute_device())
        if mt.seqkd:
            kd_pairs, counts = seqkd_pairs(cfg, teacher, data.source_texts(), progress=progress)
            pairs.extend(kd_pairs)
            made["seqkd"] = counts
    if mt.use_references or not cfg.distill.use_teacher:
        pairs.extend(data.train)
        made["references"] = len(data.train)
    word_teacher = None
    if cfg.distill.use_teacher and (mt.word_kd_weight > 0 or mt.on_policy_ratio > 0):
        if not isinstance(teacher, Seq2SeqTranslator):
            raise XdistillError(
                "mt.word_kd_weight > 0 and mt.on_policy_ratio > 0 need a white-box teacher (a seq2seq folder)"
            )
        word_teacher = teacher
        if mt.word_kd_weight > 0:
            made["word_kd"] = {"weight": mt.word_kd_weight, "temperature": mt.word_kd_temperature}
        if mt.on_policy_ratio > 0:
            made["on_policy"] = {
                "ratio": mt.on_policy_ratio,
                "beta": mt.on_policy_beta,
                "temperature": mt.on_policy_temperature,
            }
    if not pairs:
        raise XdistillError("mt.seqkd and mt.use_references are both off: the student has no training pairs")
    made["sources"] = source_fingerprint(pairs)
    # Word-level KD compares distributions id by id: the student takes the teacher's vocabulary.
    model, tokenizer = build_translation_model(
        mt.student, pairs, cfg, progress=progress, tokenizer=word_teacher.tokenizer if word_teacher else None
    )
    log.info(
        "student: %d training pairs (%s), %.1fM parameters",
        len(pairs),
        ", ".join(f"{k}={v}" for k, v in made.items() if k != "teacher"),
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    info = _info(cfg, "student", data, made, mt.student)
    return train_seq2seq(
        model,
        tokenizer,
        pairs,
        data.dev,
        cfg=cfg,
        train_cfg=cfg.train,
        out_dir=student_dir(cfg),
        log_dir=logs_dir(student_dir(cfg)),
        info=info,
        teacher=word_teacher,
        progress=progress,
        desc="student",
    )


def source_fingerprint(pairs: list[ParallelPair]) -> dict[str, Any]:
    """How many distinct source sentences the student trains on, and a hash of them: two students
    compared at an equal budget must show the same one (the targets may differ: references,
    teacher translations, or both)."""
    sources = sorted({p.source for p in pairs})
    digest = hashlib.sha256("\n".join(sources).encode("utf-8")).hexdigest()[:16]
    return {"count": len(sources), "sha256": digest}


def build_translation_model(
    arch: Seq2SeqArchConfig, pairs: list[ParallelPair], cfg: RunConfig, *, tokenizer=None, progress: bool = True
):
    """``(model, tokenizer)`` for ``arch``: warm-started from ``arch.init_encoder`` (its trimmed
    vocabulary), or a Marian-style model from scratch over a tokenizer trained on ``pairs``: one
    vocabulary for both sides, or one per side with ``mt.separate_vocabs``."""
    if arch.init_encoder:
        return build_warm_started(
            arch,
            _corpus(pairs),
            cfg.mt.max_length,
            vocab_size=cfg.mt.vocab_size,
            tokenizer=tokenizer,
            progress=progress,
        )
    if tokenizer is None and cfg.mt.separate_vocabs:
        tokenizer = train_per_side_tokenizer(
            [p.source for p in pairs], [p.target for p in pairs], cfg.mt.vocab_size, cfg.mt.max_length
        )
    tokenizer = tokenizer or train_tokenizer(_corpus(pairs), cfg.mt.vocab_size, cfg.mt.max_length)
    return build_marian(arch, tokenizer, cfg.mt.max_length), tokenizer


def _corpus(pairs: list[ParallelPair]) -> list[str]:
    return [t for p in pairs for t in (p.source, p.target)]


def _teacher_name(cfg: RunConfig) -> str:
    return cfg.teacher.command or str(teacher_dir(cfg))


def _info(cfg: RunConfig, role: str, data: MTData, made: dict[str, Any], arch: Seq2SeqArchConfig) -> dict[str, Any]:
    if arch.init_encoder:
        architecture = {
            "type": "bart",
            "init_encoder": arch.init_encoder,
            "encoder_layer_ids": arch.encoder_layer_ids or "all",
            "decoder_layer_ids": arch.decoder_layer_ids or None,
            "freeze_encoder": arch.freeze_encoder,
        }
    else:
        architecture = {
            "type": "marian",
            **{k: getattr(arch, k) for k in ("encoder_layers", "decoder_layers", "d_model", "ffn_size", "heads")},
        }
    return {
        "architecture": architecture,
        "role": role,
        "source_lang": cfg.data.source_lang,
        "target_lang": cfg.data.target_langs[0],
        "max_length": cfg.mt.max_length,
        "decoding": cfg.mt.decoding.to_dict(),
        "made_with": made,
        "data": data.summary,
    }
