"""Evaluate a translation run: BLEU and chrF per test set, size, and speed for teacher and student.

Speed of a neural model: sentences/s and target tokens/s at batch 32, greedy and beam 4, on
``evaluate.threads`` threads (warm-up, median of ``evaluate.repeats``), plus the batch-1 latency;
a neural teacher and the student are timed interleaved in one window.
A command teacher is a black box: its speed is the wall-clock rate of translating the first test
set, through the same batching the seq-KD step uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..data.mt_data import load_test_sets
from ..distill.cache import TextCache
from ..distill.translate import decode_settings, load_teacher_translator, teacher_kind
from ..io_utils import atomic_write_json, atomic_write_text
from ..layout import student_dir
from ..metrics.translation import translation_scores
from ..models.translators import Seq2SeqTranslator, Translator
from .run_eval import machine_info
from .size_speed import count_parameters, disk_mb, measure_speeds

log = logging.getLogger(__name__)

SPEED_BATCH = 32
BLACK_BOX_TIMED = 500


def translate_cached(
    cfg: RunConfig, translator: Translator, sources: list[str], beam: int, *, progress: bool, desc: str
) -> list[str]:
    """Test-set translations of a fixed model are cached like seq-KD ones (a slow teacher is slow once)."""
    cache = TextCache(Path(cfg.cache_dir) / "translations")
    key = cache.key(translator.fingerprint(), sources, decode_settings(cfg, translator, beam))
    return cache.get_texts(
        key,
        len(sources),
        lambda a, b: translator.translate(sources[a:b], beam=beam, batch_size=cfg.mt.eval_batch_size),
        description=desc,
        progress=progress,
    )


def speed_batch(sentences: list[str]) -> list[str]:
    """The SPEED_BATCH sentences every translator is timed on (the list repeated when shorter)."""
    return (sentences * (SPEED_BATCH // max(1, len(sentences)) + 1))[:SPEED_BATCH]


def seq2seq_speeds(
    translators: dict[str, Seq2SeqTranslator],
    sentences: list[str],
    *,
    threads: int,
    repeats: int,
    beams: tuple[int, ...] = (1, 4),
) -> dict[str, dict[str, float]]:
    """Per translator: sentences/s and target tokens/s at batch 32 per beam size, and the greedy batch-1
    latency. All translators are timed in one interleaved window per beam (teacher, student, teacher,
    ...), so machine noise moves them alike and their ratio holds."""
    pool = speed_batch(sentences)
    out: dict[str, dict[str, float]] = {name: {} for name in translators}
    for beam in beams:
        produced: dict[str, int] = {}

        def runner(
            name: str, translator: Seq2SeqTranslator, beam: int = beam, produced: dict[str, int] = produced
        ) -> Callable[[int], None]:
            special = set(translator.tokenizer.all_special_ids)

            def run_batch(bs: int) -> None:
                ids = translator.generate_ids(pool[:bs], beam)
                if bs == SPEED_BATCH:
                    produced[name] = sum(int(t) not in special for t in ids.flatten())

            return run_batch

        timings = measure_speeds(
            {name: runner(name, translator) for name, translator in translators.items()},
            batch_sizes=(1, SPEED_BATCH) if beam == 1 else (SPEED_BATCH,),
            threads=threads,
            repeats=repeats,
            warmup=1,
        )
        label = "greedy" if beam == 1 else f"beam{beam}"
        for name, timing in timings.items():
            sps = timing[f"throughput_b{SPEED_BATCH}"]
            out[name][f"sentences_per_s_{label}"] = sps
            out[name][f"tokens_per_s_{label}"] = sps * produced[name] / SPEED_BATCH
            if beam == 1:
                out[name]["latency_ms_b1"] = timing["latency_ms_b1"]
    return out


def evaluate_translation_run(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    tests = load_test_sets(cfg)
    if not tests:
        raise ValueError("mt.eval lists no test sets; add at least one (e.g. FLORES-200 devtest)")
    target = cfg.data.target_langs[0]
    student_folder = student_dir(cfg)
    if not (student_folder / "config.json").is_file():
        raise FileNotFoundError(f"no student in {student_folder}; run `xdistill distill --config ...` first")
    models: dict[str, tuple[Translator, int]] = {
        "student": (
            Seq2SeqTranslator(student_folder, max_length=cfg.mt.max_length, decoding=cfg.mt.decoding),
            cfg.mt.eval_beam,
        ),
    }
    if cfg.distill.use_teacher:
        # The same beam as the student: its test rows and speed compare like with like
        # (mt.teacher_beam is the beam of the seq-KD translations).
        models = {"teacher": (load_teacher_translator(cfg), cfg.mt.eval_beam), **models}
    results: dict[str, Any] = {
        "task": "translation",
        "pair": f"{cfg.data.source_lang}-{target}",
        "machine": machine_info(),
        "teacher_kind": teacher_kind(cfg),
        "models": {},
    }
    out_dir = Path(cfg.run_dir) / "translations"
    first = next(iter(tests.values()))
    for name, (translator, beam) in models.items():
        entry: dict[str, Any] = {"beam": beam, "tests": {}}
        for test_name, pairs in tests.items():
            sources = [p.source for p in pairs]
            hyps = translate_cached(cfg, translator, sources, beam, progress=progress, desc=f"{name} {test_name}")
            scores = translation_scores(hyps, [p.target for p in pairs], target)
            entry["tests"][test_name] = {"sentences": len(pairs), **scores}
            atomic_write_text(out_dir / f"{test_name}.{name}.txt", "\n".join(hyps) + "\n")
            if not isinstance(translator, Seq2SeqTranslator) and pairs is first and cfg.evaluate.speed:
                # A black box is timed end to end, uncached, on (up to) the first 500 test sentences.
                sample = sources[:BLACK_BOX_TIMED]
                start = time.perf_counter()
                translator.translate(sample, beam=beam)
                entry["sentences_per_s"] = len(sample) / max(time.perf_counter() - start, 1e-9)
        if isinstance(translator, Seq2SeqTranslator):
            entry.update(count_parameters(translator.model))
            entry["disk_mb"] = disk_mb(translator.folder)
        results["models"][name] = entry
    neural = {name: t for name, (t, _) in models.items() if isinstance(t, Seq2SeqTranslator)}
    if cfg.evaluate.speed and neural:
        # After every model is scored, so the timing window holds nothing but timing.
        speeds = seq2seq_speeds(
            neural, [p.source for p in first], threads=cfg.evaluate.threads, repeats=cfg.evaluate.repeats
        )
        for name, speed in speeds.items():
            entry = results["models"][name]
            beam = entry["beam"]
            entry.update(speed)
            # The headline rate is at the evaluation beam (greedy when it is neither 1 nor 4).
            entry["sentences_per_s"] = speed[f"sentences_per_s_{'beam4' if beam == 4 else 'greedy'}"]
    teacher = results["models"].get("teacher")
    student = results["models"]["student"]
    if teacher:
        student["chrf_vs_teacher"] = {
            t: round(100 * student["tests"][t]["chrf"] / teacher["tests"][t]["chrf"], 1)
            if teacher["tests"][t]["chrf"]
            else None
            for t in tests
        }
        if teacher.get("sentences_per_s") and student.get("sentences_per_s"):
            student["speedup"] = student["sentences_per_s"] / teacher["sentences_per_s"]
    run_dir = Path(cfg.run_dir)
    atomic_write_json(run_dir / "results.json", results)
    atomic_write_text(run_dir / "report.md", translation_report(results))
    return results


def translation_report(results: dict[str, Any]) -> str:
    tests = list(next(iter(results["models"].values()))["tests"])
    lines = [
        f"# Translation {results['pair']}",
        "",
        "| model | " + " | ".join(f"{t} BLEU | {t} chrF" for t in tests) + " | params (M) | disk MB | sent/s |",
        "| --- | " + " | ".join("--: | --:" for _ in tests) + " | --: | --: | --: |",
    ]
    for name, m in results["models"].items():
        cells = " | ".join(f"{m['tests'][t]['bleu']:.1f} | {m['tests'][t]['chrf']:.1f}" for t in tests)
        params = f"{m['params_total'] / 1e6:.1f}" if "params_total" in m else "–"
        disk = f"{m['disk_mb']:.0f}" if "disk_mb" in m else "–"
        sps = f"{m['sentences_per_s']:.1f}" if m.get("sentences_per_s") else "–"
        lines.append(f"| {name} (beam {m['beam']}) | {cells} | {params} | {disk} | {sps} |")
    first = next(iter(results["models"].values()))["tests"][tests[0]]
    lines += ["", f"BLEU: `{first['bleu_signature']}`  ", f"chrF: `{first['chrf_signature']}`", ""]
    return "\n".join(lines)
