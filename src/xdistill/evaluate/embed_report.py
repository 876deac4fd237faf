"""Markdown tables and the report folder of a sentence-embedding evaluation (``results.json`` from
``evaluate_embedding_run``): retrieval, MSE to the teacher, linear probe, size and speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io_utils import atomic_write_json, atomic_write_text
from .report import MISSING, _fmt, _md_table, _millions


def _models(results: dict) -> list[str]:
    return list(results.get("models", {}))


def _keys(results: dict, field: str) -> list[str]:
    keys: list[str] = []
    for entry in results["models"].values():
        keys += [k for k in (entry.get(field) or {}) if k not in keys]
    return keys


def _metric_table(results: dict, field: str, spec: str, first: str) -> str:
    keys = _keys(results, field)
    rows = [
        [name] + [_fmt((results["models"][name].get(field) or {}).get(k), spec) for k in keys]
        for name in _models(results)
    ]
    return _md_table([first] + keys, rows)


def retrieval_table(results: dict) -> str:
    return _metric_table(results, "retrieval", ".1f", "model")


def mse_table(results: dict) -> str:
    return _metric_table(results, "mse", ".3g", "model")


def probe_table(results: dict) -> str:
    table = _metric_table(results, "probe_accuracy", ".1f", "model")
    teacher = results["models"].get("teacher", {}).get("probe_accuracy") or {}
    src = results.get("source_language", "en")
    notes = []
    for name in _models(results):
        acc = (results["models"][name].get("probe_accuracy") or {}).get(src)
        if name != "teacher" and acc is not None and teacher.get(src):
            notes.append(f"{name} {100 * acc / teacher[src]:.1f}%")
    if notes:
        table += f"\n\n{src} probe accuracy relative to the teacher: " + ", ".join(notes) + "."
    return table


def size_speed_table(results: dict) -> str:
    headers = ["model", "params (M)", "embedding (M)", "disk MB", "latency ms b1", "throughput b32 /s"]
    rows = []
    for name in _models(results):
        e = results["models"][name]
        rows.append(
            [
                name,
                _millions(e.get("params_total")),
                _millions(e.get("params_embedding")),
                _fmt(e.get("disk_mb")),
                _fmt(e.get("latency_ms_b1")),
                _fmt(e.get("throughput_b32")),
            ]
        )
    table = _md_table(headers, rows)
    ratios = results.get("ratios") or {}
    lines = [
        f"student vs {key.removeprefix('student_vs_')}: {r['params']:.2f}× parameters"
        + (
            f", {r['speedup_b32']:.1f}× throughput at batch 32, {r['speedup_b1']:.1f}× faster at batch 1"
            if "speedup_b32" in r
            else ""
        )
        for key, r in ratios.items()
    ]
    return table + ("\n\n" + "; ".join(lines) + "." if lines else "")


def data_lines(results: dict) -> str:
    summary = results.get("data") or {}
    d = summary.get("decontamination") or {}
    out = [
        f"- decontamination: {d.get('dropped_pairs', MISSING)} training pairs and "
        f"{d.get('dropped_monolingual', MISSING)} monolingual texts dropped because a side occurs in the "
        f"{d.get('evaluation_texts', MISSING)} evaluation texts"
    ]
    for lang, c in (summary.get("languages") or {}).items():
        out.append(
            f"- {lang}: {c['train']} training pairs, {c['dev']} dev, {c['heldout']} held out "
            f"({c['duplicates']} repeated pairs, {c['dropped_heldout_overlap']} sharing a side with a held-out pair dropped)"
        )
    mono = summary.get("monolingual") or {}
    if mono:
        out.append(f"- monolingual {results.get('source_language', 'en')}: {mono['kept']} texts from {mono['file']}")
    return "\n".join(out)


def embedding_tables(results: dict) -> str:
    """The four tables for a terminal (same text as in report.md)."""
    parts = ["Translation retrieval accuracy (%)", retrieval_table(results)]
    if _keys(results, "mse"):
        parts += ["MSE to the teacher on held-out pairs (English side and translations)", mse_table(results)]
    if _keys(results, "probe_accuracy"):
        parts += ["Linear probe accuracy (%), trained on source-language embeddings", probe_table(results)]
    parts += ["Size and speed", size_speed_table(results)]
    return "\n\n".join(parts) + "\n"


def write_embedding_report(results: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    paths = {"results": out / "results.json", "report": out / "report.md"}
    atomic_write_json(paths["results"], results)
    sections = [
        "# xdistill report: sentence embeddings",
        f"Source language: {results.get('source_language', MISSING)} · languages: {', '.join(results.get('languages', []))}",
        "## Translation retrieval\n\nNearest neighbour by cosine among all sentences of the other language; "
        "accuracy in percent.\n\n" + retrieval_table(results),
    ]
    if _keys(results, "mse"):
        sections.append(
            "## MSE to the teacher\n\nHeld-out pairs: the student's embedding of the English sentence "
            "and of its translation against the teacher's embedding of the English sentence. "
            "Reference models live in another embedding space and have none. For unit-length "
            "embeddings MSE = 2·(1 − cos)/dim (dim 384: 0.001 ≈ cosine 0.81).\n\n" + mse_table(results)
        )
    if _keys(results, "probe_accuracy"):
        sections.append(
            "## Downstream transfer (linear probe)\n\nLogistic regression trained on the "
            "source-language embeddings, applied unchanged to every language.\n\n" + probe_table(results)
        )
    sections.append("## Size and speed\n\n" + size_speed_table(results))
    sections.append("## Data\n\n" + data_lines(results))
    sections.append(
        "## Models\n\n"
        + "\n".join(f"- **{m}**: `{results['models'][m].get('path', MISSING)}`" for m in _models(results))
    )
    atomic_write_text(paths["report"], "\n\n".join(sections) + "\n")
    return paths
