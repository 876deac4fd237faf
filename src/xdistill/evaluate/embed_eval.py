"""Evaluate sentence-embedding models (teacher, student, reference models) the same way.

Per model: translation retrieval on the ``embed.eval_retrieval`` sets (nearest neighbour by
cosine, both directions), MSE to the teacher on the held-out pairs (English side and
translations; only for models that embed into the teacher's space: the teacher and the
student), a linear probe trained on source-language embeddings and applied to every language's
test file (``embed.probe``), parameters, MB on disk, latency at batch 1 and throughput at
batch 32 (every model timed in one interleaved window, after all are scored). Every model reads
the same texts with its own tokenizer, prefix and pooling.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import ColumnsConfig, RunConfig
from ..data.embed_data import EmbedData, load_embed_data, load_retrieval_sets
from ..data.examples import ParallelPair
from ..data.hygiene import seeded_subset, text_key, unique
from ..data.readers import read_labelled
from ..distill.embed import load_teacher, recorded_teacher, resolve_teacher, teacher_embeddings
from ..errors import ModelError
from ..layout import student_dir
from ..metrics.embedding import bidirectional_retrieval, embedding_mse, probe_accuracy
from ..models.batches import encode_texts, pad_ids, pad_token_id
from ..models.sentence import SentenceEncoder, encode, load_sentence_encoder, resolve_model_path
from .embed_report import write_embedding_report
from .run_eval import machine_info
from .size_speed import count_parameters, disk_mb, measure_speeds, speed_record

log = logging.getLogger(__name__)
SPEED_TEXTS = 32


@dataclass
class ProbeData:
    train_texts: list[str]
    train_labels: list[int]
    tests: dict[str, tuple[list[str], list[int]]]


@dataclass
class EvalData:
    """What every model is evaluated on (read once per evaluation)."""

    source_lang: str
    retrieval: dict[str, list[ParallelPair]]
    heldout: dict[str, list[ParallelPair]]
    heldout_targets: dict[str, np.ndarray]  # teacher embeddings of each held-out set's English side
    probe: ProbeData | None
    speed_texts: list[str]


def load_probe(cfg: RunConfig) -> ProbeData | None:
    """The probe's labelled training texts (source language) and test texts per language.

    Training texts that also occur in a probe test file are dropped (MARC repeats a few short
    reviews across splits)."""
    probe = cfg.embed.probe
    if probe is None:
        return None
    c = probe.columns
    cols = ColumnsConfig(text=c.text, label=c.label, text_pair=None, lang=None, id=None)
    seed = cfg.data.sample_seed

    def read(path: str, lang: str, limit: int | None):
        examples, _ = read_labelled(
            cfg.data.resolve(path),
            columns=cols,
            labels=probe.labels,
            label_map=probe.label_map or None,
            lang=lang,
            header=probe.header,
        )
        return seeded_subset(examples, limit, seed, "probe", lang)

    tests = {lang: read(path, lang, probe.max_test) for lang, path in probe.test.items()}
    test_keys = {text_key(e.text) for exs in tests.values() for e in exs}
    train = [e for e in read(probe.train, cfg.data.source_lang, None) if text_key(e.text) not in test_keys]
    train = seeded_subset(train, probe.max_train, seed, "probe", "train")
    return ProbeData(
        [e.text for e in train],
        [e.label for e in train],
        {lang: ([e.text for e in exs], [e.label for e in exs]) for lang, exs in tests.items()},
    )


def evaluate_embedding_model(
    cfg: RunConfig,
    name: str,
    model: SentenceEncoder,
    tokenizer,
    folder: Path,
    data: EvalData,
    *,
    in_teacher_space: bool,
    progress: bool = True,
) -> dict[str, Any]:
    """The report entry of one model (see the module docstring)."""
    model.eval()
    embed: Callable[[list[str], str], np.ndarray] = lambda texts, what: encode(  # noqa: E731
        model, tokenizer, texts, batch_size=cfg.embed.eval_batch_size, progress=progress, desc=f"{name} {what}"
    )
    entry: dict[str, Any] = {
        "path": str(folder),
        **count_parameters(model),
        "disk_mb": disk_mb(folder),
        "settings": model.settings(),
        "retrieval": {},
        "mse": None,
        "probe_accuracy": None,
    }
    src = data.source_lang
    for lang, pairs in data.retrieval.items():
        source = embed([p.source for p in pairs], f"retrieval {src}")
        target = embed([p.target for p in pairs], f"retrieval {lang}")
        entry["retrieval"].update(bidirectional_retrieval(source, target, src, lang))
    if in_teacher_space and data.heldout:
        per_lang, source_mse = {}, []
        for lang, pairs in data.heldout.items():
            targets = data.heldout_targets[lang]
            source_mse.append(embedding_mse(embed([p.source for p in pairs], f"held-out {src}"), targets))
            per_lang[lang] = embedding_mse(embed([p.target for p in pairs], f"held-out {lang}"), targets)
        entry["mse"] = {src: float(np.mean(source_mse)), **per_lang}
    if data.probe is not None:
        p = data.probe
        train_x = embed(p.train_texts, f"probe train {src}")
        tests = {lang: (embed(texts, f"probe test {lang}"), labels) for lang, (texts, labels) in p.tests.items()}
        entry["probe_accuracy"] = probe_accuracy(train_x, p.train_labels, tests, c=cfg.embed.probe.c, seed=cfg.seed)
    return entry


def embedding_runner(model: SentenceEncoder, tokenizer, texts: list[str]) -> Callable[[int], None]:
    """One timed call of ``model`` at a batch size, on real sentences with its own tokenizer and prefix.

    Batch 1 cycles through the sentences (each call embeds the next one), so the median is that
    of a typical sentence rather than of whichever sentence comes first."""
    ids = encode_texts(tokenizer, texts[:SPEED_TEXTS], prefix=model.text_prefix, max_length=model.max_length)
    pad = pad_token_id(tokenizer)
    singles = itertools.cycle([pad_ids([i], pad) for i in ids])
    batch32 = pad_ids((ids * (SPEED_TEXTS // len(ids) + 1))[:SPEED_TEXTS], pad)
    model.eval()

    def run(bs: int) -> None:
        model(*(next(singles) if bs == 1 else batch32))

    return run


def embedding_speeds(
    encoders: dict[str, tuple[SentenceEncoder, Any]], texts: list[str], *, threads: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Latency at batch 1 and throughput at batch 32 of every model, timed interleaved in one window
    on the same sentences, so their ratios hold on a shared machine; with every timed call's spread."""
    runners = {name: embedding_runner(model, tok, texts) for name, (model, tok) in encoders.items()}
    # Batch 1 warms up on every sentence it will cycle through (2 calls would leave 30 sentences cold).
    warmup = {1: min(len(texts), SPEED_TEXTS), 32: 2}
    speeds = measure_speeds(runners, batch_sizes=(1, 32), threads=threads, warmup=warmup, repeats=repeats)
    return {name: speed_record(timing) for name, timing in speeds.items()}


def load_eval_data(
    cfg: RunConfig, teacher: SentenceEncoder, t_tok, teacher_folder: Path, data: EmbedData, *, progress: bool = True
) -> EvalData:
    retrieval = load_retrieval_sets(cfg)
    heldout = {lang: pairs for lang, pairs in data.heldout.items() if pairs}
    english = unique([p.source for pairs in heldout.values() for p in pairs])
    vectors = teacher_embeddings(
        cfg, teacher, t_tok, teacher_folder, english, progress=progress, what="teacher on held-out English"
    )
    row_of = {t: i for i, t in enumerate(english)}
    targets = {lang: vectors[[row_of[p.source] for p in pairs]] for lang, pairs in heldout.items()}
    speed_texts = [p.source for pairs in (*retrieval.values(), *heldout.values()) for p in pairs][:SPEED_TEXTS]
    return EvalData(cfg.data.source_lang, retrieval, heldout, targets, load_probe(cfg), speed_texts)


def evaluate_embedding_run(cfg: RunConfig, *, progress: bool = True, write: bool = True) -> dict[str, Any]:
    """Evaluate teacher, student and ``embed.references``; write results.json and report.md."""

    student_folder = student_dir(cfg)
    if not (student_folder / "modules.json").is_file():
        raise ModelError(
            f"no sentence-embedding student in {student_folder}; run `xdistill distill --config ...` first"
        )
    data = load_embed_data(cfg)
    teacher_folder = recorded_teacher(cfg) or resolve_teacher(cfg, data)
    teacher, t_tok = load_teacher(cfg, teacher_folder)
    eval_data = load_eval_data(cfg, teacher, t_tok, teacher_folder, data, progress=progress)

    results: dict[str, Any] = {
        "task": "embedding",
        "source_language": cfg.data.source_lang,
        "languages": [cfg.data.source_lang] + [lang for lang in data.train if lang != cfg.data.source_lang],
        "machine": machine_info(),
        "data": data.summary,
        "eval_sizes": {
            "retrieval": {lang: len(p) for lang, p in eval_data.retrieval.items()},
            "heldout": {lang: len(p) for lang, p in eval_data.heldout.items()},
            "probe_train": len(eval_data.probe.train_texts) if eval_data.probe else 0,
            "probe_test": {lang: len(t[0]) for lang, t in eval_data.probe.tests.items()} if eval_data.probe else {},
        },
        "models": {},
    }
    models = results["models"]
    # Every model stays loaded until all are timed together (the largest, e5-small, is ~0.5 GB).
    encoders: dict[str, tuple[SentenceEncoder, Any]] = {"teacher": (teacher, t_tok)}
    models["teacher"] = evaluate_embedding_model(
        cfg, "teacher", teacher, t_tok, teacher_folder, eval_data, in_teacher_space=True, progress=progress
    )
    student, s_tok = load_sentence_encoder(student_folder, flag="student")
    encoders["student"] = (student, s_tok)
    models["student"] = evaluate_embedding_model(
        cfg, "student", student, s_tok, student_folder, eval_data, in_teacher_space=True, progress=progress
    )
    for name, ref in cfg.embed.references.items():
        folder = resolve_model_path(ref.path, flag=f"embed.references.{name}.path")
        model, tok = load_sentence_encoder(
            folder,
            flag=f"embed.references.{name}.path",
            default_pooling=ref.pooling or "mean",
            normalize=ref.normalize,
            text_prefix=ref.text_prefix,
            max_length=cfg.teacher.max_length,
        )
        # A reference model has its own embedding space: an MSE to the teacher would mean nothing.
        encoders[name] = (model, tok)
        models[name] = evaluate_embedding_model(
            cfg, name, model, tok, folder, eval_data, in_teacher_space=False, progress=progress
        )
    if cfg.evaluate.speed and eval_data.speed_texts:
        speeds = embedding_speeds(
            encoders, eval_data.speed_texts, threads=cfg.evaluate.threads, repeats=cfg.evaluate.repeats
        )
        for name, speed in speeds.items():
            models[name].update(speed)
    results["ratios"] = speed_and_size_ratios(models)
    results["run_dir"] = str(cfg.run_dir)
    results["config"] = cfg.to_dict()
    if write:
        write_embedding_report(results, Path(cfg.run_dir))
    return results


def speed_and_size_ratios(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The student against every other model: parameters, throughput at batch 32, latency at batch 1."""
    student = models.get("student", {})
    ratios: dict[str, dict[str, float]] = {}
    for name, other in models.items():
        if name == "student":
            continue
        r: dict[str, float] = {"params": student["params_total"] / other["params_total"]}
        if student.get("throughput_b32") and other.get("throughput_b32"):
            r["speedup_b32"] = student["throughput_b32"] / other["throughput_b32"]
            r["speedup_b1"] = other["latency_ms_b1"] / student["latency_ms_b1"]
        ratios[f"student_vs_{name}"] = r
    return ratios
