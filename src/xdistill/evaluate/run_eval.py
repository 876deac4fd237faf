"""Evaluate a run's teacher and student on every language: quality, size, speed, report."""

from __future__ import annotations

import logging
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RunConfig
from ..data.splits import load_test, text_pairs
from ..distributed import compute_device
from ..layout import student_dir, teacher_dir
from ..metrics.classification import agreement, classification_metrics
from ..models.batches import encode_texts, pad_ids, pad_token_id, predict
from ..models.classifier import load_classifier
from .report import write_report
from .size_speed import count_parameters, disk_mb, measure_speeds, speed_record

log = logging.getLogger(__name__)


def machine_info() -> dict[str, Any]:
    import transformers

    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return {
        "cpu": fields.get("model name", cpu),
        # Two machines that both say "AMD EPYC" can be different CPUs that run other PyTorch kernels
        # (AVX2 vs AVX512), so the same seed need not give the same model on both.
        "cpu_model": f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **code_version(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


# What the benchmarks write into the checkout: results, not code. A benchmark run right after another
# in the same checkout would otherwise be flagged as run on uncommitted code.
GENERATED_OUTPUTS = ("bench/results", "docs/benchmarks.md")


def code_version(root: Path | None = None) -> dict[str, Any]:
    """The commit the code ran on (and whether the work tree had uncommitted changes outside the
    benchmarks' own outputs), so every result can be traced to the code that made it; ``None``
    outside a git checkout."""
    root = root or Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                *(f":(exclude){path}" for path in GENERATED_OUTPUTS),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def evaluate_classifier(
    cfg: RunConfig,
    name: str,
    folder: Path,
    test: dict[str, list],
    *,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, list[tuple[str, ...]]]]:
    """Metrics per language, size and (with ``evaluate.speed``) speed of one classifier folder.

    A fine-tuned HF sequence-classification folder (a teacher used as it is) is read with its
    logits in data.labels order. Returns the report entry and the predictions per language (for
    agreement with a reference) and the pieces every text is cut into (to compare tokenisations)."""
    model, tokenizer = load_classifier(folder, flag=name, labels=cfg.data.labels, max_length=cfg.teacher.max_length)
    model.to(compute_device())  # accuracy only: speed is measured apart, on the CPU
    pad = pad_token_id(tokenizer)
    entry: dict[str, Any] = {"path": str(folder), **count_parameters(model), "disk_mb": disk_mb(folder), "metrics": {}}
    predictions: dict[str, np.ndarray] = {}
    pieces: dict[str, list[tuple[str, ...]]] = {}
    for lang, examples in test.items():
        ids = encode_texts(
            tokenizer,
            [e.text for e in examples],
            text_pairs(examples),
            max_length=model.max_length,
        )
        pieces[lang] = [tuple(tokenizer.convert_ids_to_tokens(list(map(int, row)))) for row in ids]
        logits = predict(
            model, ids, pad, batch_size=cfg.train.eval_batch_size, progress=progress, desc=f"{name} {lang}"
        )["logits"]
        predictions[lang] = logits.argmax(-1)
        gold = np.array([e.label for e in examples])
        entry["metrics"][lang] = classification_metrics(
            gold, predictions[lang], len(cfg.data.labels), ordinal=cfg.data.ordinal
        )
    return entry, predictions, pieces


def add_same_pieces(
    entry: dict[str, Any], pieces: dict[str, list[tuple[str, ...]]], reference: dict[str, list[tuple[str, ...]]]
) -> None:
    """Percent of texts the model's tokenizer cuts into exactly the reference's pieces. A student
    whose vocabulary was trimmed re-cuts text with pieces it lacks into others, ones the teacher
    never used; a low figure explains a low agreement (raise student.vocab_keep_top)."""
    for lang, cut in pieces.items():
        if lang in reference and len(reference[lang]) == len(cut):
            same = sum(a == b for a, b in zip(cut, reference[lang]))
            entry["metrics"][lang]["same_pieces"] = 100.0 * same / max(1, len(cut))


def add_agreement(entry: dict[str, Any], predictions: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    """Percent of examples where the model predicts what the reference (the teacher) predicts."""
    for lang, pred in predictions.items():
        if lang in reference:
            entry["metrics"][lang]["agreement"] = agreement(reference[lang], pred)


def evaluate_models(
    cfg: RunConfig,
    models: dict[str, Path],
    *,
    reference: str | None = "teacher",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each named classifier folder on the configured split of every language.

    Agreement is measured against ``reference`` (the teacher) when it is among the models.
    """
    split = cfg.evaluate.split
    test = load_test(cfg, split)
    if not test:
        raise ValueError(f"data.{split} lists no files; add e.g. data.{split}.en: path/to/{split}.csv")
    languages = [lang for lang in cfg.data.languages if lang in test]
    test = {lang: test[lang] for lang in languages}
    results: dict[str, Any] = {
        "task": cfg.task,
        "labels": list(cfg.data.labels),
        "languages": languages,
        "source_language": cfg.data.source_lang,
        "split": split,
        "machine": machine_info(),
        "models": {},
    }
    predictions: dict[str, dict[str, np.ndarray]] = {}
    pieces: dict[str, dict[str, list[tuple[str, ...]]]] = {}
    for name, folder in models.items():
        results["models"][name], predictions[name], pieces[name] = evaluate_classifier(
            cfg, name, folder, test, progress=progress
        )
    if reference in predictions:
        for name in predictions:
            if name != reference:
                add_agreement(results["models"][name], predictions[name], predictions[reference])
                add_same_pieces(results["models"][name], pieces[name], pieces[reference])
    if cfg.evaluate.speed:
        for name, speed in classifier_speeds(cfg, models, test).items():
            results["models"][name].update(speed)
    return results


def speed_sample(test: dict[str, list], n: int = 32) -> list:
    """``n`` test examples taken in turn from every language (en, es, zh, en, ...): the speed of a
    multilingual model depends on the language (Chinese tokenises longer), so every model is timed
    on the same mix of every evaluated language."""
    pools = [examples for examples in test.values() if examples]
    sample = [pool[i] for i in range(max(map(len, pools), default=0)) for pool in pools if i < len(pool)]
    return sample[:n]


def classifier_speeds(cfg: RunConfig, folders: dict[str, Path], test: dict[str, list]) -> dict[str, dict[str, Any]]:
    """Latency at batch 1 and throughput at batch 32 of every classifier, timed interleaved in one
    window on the same inputs (``speed_sample``), with the spread of every timed call."""
    sample = speed_sample(test)
    runners = {}
    for name, folder in folders.items():
        model, tokenizer = load_classifier(folder, flag=name, labels=cfg.data.labels, max_length=cfg.teacher.max_length)
        model.eval()
        ids = encode_texts(
            tokenizer,
            [e.text for e in sample],
            text_pairs(sample),
            max_length=model.max_length,
        )
        pad = pad_token_id(tokenizer)
        batches = {bs: pad_ids((ids * ((bs // len(ids)) + 1))[:bs], pad) for bs in (1, 32)}
        runners[name] = lambda bs, model=model, batches=batches: model(*batches[bs])
    speeds = measure_speeds(runners, batch_sizes=(1, 32), threads=cfg.evaluate.threads, repeats=cfg.evaluate.repeats)
    return {name: speed_record(timing) for name, timing in speeds.items()}


def evaluate_run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    models = {"teacher": teacher_dir(cfg), "student": student_dir(cfg)}
    results = evaluate_models(cfg, models, progress=progress)
    teacher, student = results["models"]["teacher"], results["models"]["student"]
    results["ratios"] = {
        "params": student["params_total"] / teacher["params_total"],
        "disk": student["disk_mb"] / teacher["disk_mb"],
    }
    if cfg.evaluate.speed:
        results["ratios"]["speedup_b32"] = student["throughput_b32"] / teacher["throughput_b32"]
        results["ratios"]["speedup_b1"] = teacher["latency_ms_b1"] / student["latency_ms_b1"]
    results["run_dir"] = str(cfg.run_dir)
    results["config"] = cfg.to_dict()
    write_report(results, Path(cfg.run_dir))
    return results
