"""Turn an evaluation results dict into Markdown tables, PNG plots and a report folder.

The results dict (produced by the pipeline, written verbatim to ``results.json``)::

    {
      "task": "classification",
      "labels": ["negative", "positive"],        # label names, index = label id
      "languages": ["en", "es", "zh"],           # evaluation languages, in display order
      "source_language": "en",                   # language the teacher was trained on
      "models": {                                # any number of named models; "teacher" first
        "teacher": {
          "path": "...",                         # model folder
          "params_total": int, "params_embedding": int,   # from size_speed.count_parameters
          "disk_mb": float,                      # from size_speed.disk_mb
          "latency_ms_b1": float, "throughput_b32": float,  # from size_speed.measure_speed
          "metrics": {                           # per language; a language may be missing
            "en": {"n": int, "accuracy": float, "macro_f1": float,  # percent
                   "confusion": [[int, ...], ...],                 # rows = true label
                   "mae": float},                                  # only for ordinal labels
            ...
          },
        },
        "student": {..., "metrics": {"en": {..., "agreement": float,  # % same prediction as teacher
                                            "same_pieces": float}}},  # % texts cut as teacher
      },
      ...                                        # other keys ("config", "run_dir") are ignored
    }

Every field except ``models`` is optional; a missing number shows as "–".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xdistill.io_utils import atomic_path, atomic_write_json, atomic_write_text

TEACHER = "teacher"
MISSING = "–"


# ---------------------------------------------------------------- tables


def comparison_table(results: dict) -> str:
    """Two Markdown tables: quality per language, then size and speed per model.

    Columns are padded so the text reads as a table in a terminal too.
    """
    return f"{_quality_table(results)}\n\n{_size_speed_table(results)}\n"


def _quality_table(results: dict) -> str:
    models = _model_names(results)
    students = [m for m in models if m != TEACHER]
    agreeing = [m for m in students if _any_metric(results, m, "agreement")]
    recut = [m for m in students if _any_metric(results, m, "same_pieces")]
    ratioed = students if TEACHER in models else []
    headers = ["language", "n"]
    for m in models:
        headers += [f"{m} acc", f"{m} F1"]
    headers += [f"{m} agree." for m in agreeing] + [f"{m} same pieces" for m in recut]
    headers += [f"{m}/teacher acc" for m in ratioed]
    rows = [_quality_row(results, lang, models, agreeing, recut, ratioed) for lang in _languages(results)]
    return _md_table(headers, rows)


def _quality_row(
    results: dict, lang: str, models: list[str], agreeing: list[str], recut: list[str], ratioed: list[str]
) -> list[str]:
    metric = lambda m, key: _metrics(results, m).get(lang, {}).get(key)  # noqa: E731
    n = next((metric(m, "n") for m in models if metric(m, "n") is not None), None)
    is_source = lang == results.get("source_language")
    row = [f"{lang} (source)" if is_source else lang, _fmt(n, "d")]
    for m in models:
        row += [_fmt(metric(m, "accuracy")), _fmt(metric(m, "macro_f1"))]
    row += [_fmt(metric(m, "agreement")) for m in agreeing]
    row += [_fmt(metric(m, "same_pieces")) for m in recut]
    row += [_fmt(_ratio(metric(m, "accuracy"), metric(TEACHER, "accuracy"), 100), suffix="%") for m in ratioed]
    return row


def _size_speed_table(results: dict) -> str:
    models = _model_names(results)
    teacher = results["models"].get(TEACHER)
    headers = ["model", "params (M)", "embedding (M)", "disk MB", "latency ms b1", "throughput b32 /s"]
    headers += ["size ×", "speed ×"] if teacher else []
    rows = [_size_speed_row(results["models"][m], m, teacher) for m in models]
    table = _md_table(headers, rows)
    if teacher:
        table += "\n\nsize × = parameters relative to the teacher (0.25× = a quarter the size); "
        table += "speed × = teacher latency / model latency at batch 1 (3.0× = three times as fast)."
    return table


def _size_speed_row(info: dict, name: str, teacher: dict | None) -> list[str]:
    row = [
        name,
        _millions(info.get("params_total")),
        _millions(info.get("params_embedding")),
        _fmt(info.get("disk_mb")),
        _fmt(info.get("latency_ms_b1")),
        _fmt(info.get("throughput_b32")),
    ]
    if teacher:
        size = _ratio(info.get("params_total"), teacher.get("params_total"))
        speed = _ratio(teacher.get("latency_ms_b1"), info.get("latency_ms_b1"))
        # ".2g" keeps a 0.0004× toy student from reading as "0.00×".
        row += [_fmt(size, ".2g", "×"), _fmt(speed, ".1f", "×")]
    return row


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    headers, rows = _escape(headers), [_escape(r) for r in rows]
    widths = [max(3, *(len(c) for c in col)) for col in zip(headers, *rows)]  # GFM needs "---"
    # First column is a name (left-aligned); the rest are numbers (right-aligned).
    pad = lambda cells: [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]  # noqa: E731
    rule = [":" + "-" * (w - 1) if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    lines = [pad(headers), rule, *(pad(r) for r in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _escape(cells: list[str]) -> list[str]:
    return [c.replace("|", "\\|") for c in cells]  # a "|" in a model name would split the cell


def _fmt(x: Any, spec: str = ".1f", suffix: str = "") -> str:
    return MISSING if x is None else f"{x:{spec}}{suffix}"


def _millions(x: int | None) -> str:
    # One decimal hides tiny test models entirely ("0.0"); show two significant digits instead.
    if x is None:
        return MISSING
    return f"{x / 1e6:.1f}" if x >= 1e5 or x == 0 else f"{x / 1e6:.2g}"


def _ratio(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    return None if a is None or not b else scale * a / b


# ---------------------------------------------------------------- results accessors


def _model_names(results: dict) -> list[str]:
    names = list(results.get("models", {}))
    return sorted(names, key=lambda n: n != TEACHER)  # stable: teacher first, others as given


def _metrics(results: dict, model: str) -> dict:
    return results["models"][model].get("metrics") or {}


def _any_metric(results: dict, model: str, key: str) -> bool:
    return any(key in m for m in _metrics(results, model).values())


def _languages(results: dict) -> list[str]:
    langs = list(results.get("languages") or [])
    for model in _model_names(results):
        langs += [lang for lang in _metrics(results, model) if lang not in langs]
    return langs


def _label_names(results: dict, n: int) -> list[str]:
    labels = [str(x) for x in results.get("labels") or []]
    return labels if len(labels) == n else [str(i) for i in range(n)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


# ---------------------------------------------------------------- plots


def accuracy_figure(results: dict) -> Figure:
    """Grouped bars: one group per language, one bar per model, accuracy labelled on each bar."""
    models, langs = _model_names(results), _languages(results)
    fig = _new_figure(figsize=(max(6.0, 1.1 * len(langs) * max(1, len(models)) ** 0.5 + 2), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        per_lang = _metrics(results, model)
        xs = [j for j, lang in enumerate(langs) if "accuracy" in per_lang.get(lang, {})]
        ys = [per_lang[langs[j]]["accuracy"] for j in xs]
        bars = ax.bar([x + (i - (len(models) - 1) / 2) * width for x in xs], ys, width, label=model)
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    source = results.get("source_language")
    ax.set_xticks(range(len(langs)), [f"{lang}\n(source)" if lang == source else lang for lang in langs])
    ax.set_ylim(0, 108)  # headroom so a label on a 100% bar stays inside the axes
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Accuracy by language ({results.get('task', 'evaluation')})")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=max(1, len(models)), frameon=False)
    return fig


def confusion_figure(confusion: list[list[int]], labels: list[str], title: str) -> Figure:
    """Confusion matrix normalised per true label (rows sum to 1), with counts in brackets."""
    counts = np.asarray(confusion, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(labels)
    fig = _new_figure(figsize=(max(4.0, 0.7 * n + 2.5), max(3.5, 0.7 * n + 2)))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(share):
        color = "white" if value > 0.5 else "black"  # dark cells need light text
        ax.text(j, i, f"{value:.2f}\n({int(counts[i, j])})", ha="center", va="center", color=color, fontsize=8)
    slanted = max(map(len, labels)) > 6  # long names would overlap side by side
    ax.set_xticks(range(n), labels, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted label", ylabel="true label", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def _new_figure(figsize: tuple[float, float]) -> Figure:
    # A bare Figure on an Agg canvas never enters pyplot's registry: nothing to close, no
    # global backend switch for the caller (a notebook keeps its own), no growth in a loop.
    fig = Figure(figsize=figsize, layout="constrained", dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")  # tmp ends in ".tmp": the format must be explicit
    fig.clear()
    return path


# ---------------------------------------------------------------- report folder


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.md``, ``accuracy_by_language.png`` and one
    ``confusion_<model>_<lang>.png`` per model and language into ``out_dir``.

    Returns the written paths keyed by file stem (``"results"``, ``"report"``,
    ``"accuracy_by_language"``, ``"confusion_student_es"``, ...).
    """
    out = Path(out_dir)
    paths: dict[str, Path] = {"results": out / "results.json"}
    atomic_write_json(paths["results"], results)
    paths["accuracy_by_language"] = _save_png(accuracy_figure(results), out / "accuracy_by_language.png")
    confusions = _write_confusions(results, out)
    paths.update({p.stem: p for p in confusions.values()})
    paths["report"] = out / "report.md"
    atomic_write_text(paths["report"], _report_markdown(results, confusions))
    return paths


def _write_confusions(results: dict, out: Path) -> dict[tuple[str, str], Path]:
    written = {}
    for model in _model_names(results):
        for lang, m in _metrics(results, model).items():
            if not m.get("confusion"):
                continue
            labels = _label_names(results, len(m["confusion"]))
            title = f"{model} · {lang}  (n={m.get('n', '?')}, acc={_fmt(m.get('accuracy'))}%)"
            path = out / f"confusion_{_safe(model)}_{_safe(lang)}.png"
            written[(model, lang)] = _save_png(confusion_figure(m["confusion"], labels, title), path)
    return written


def _report_markdown(results: dict, confusions: dict[tuple[str, str], Path]) -> str:
    langs = ", ".join(_languages(results))
    parts = [
        f"# xdistill report: {results.get('task', 'evaluation')}",
        f"Source language: {results.get('source_language', MISSING)} · evaluated on: {langs or MISSING}",
        "## Quality by language\n\nAccuracy, macro-F1 and agreement (same prediction as the teacher) in percent; "
        "same pieces: percent of texts the student's tokenizer cuts exactly as the teacher's (a trimmed "
        "vocabulary re-cuts the rest).\n\n" + _quality_table(results),
        "## Size and speed\n\n" + _size_speed_table(results),
        "## Models\n\n"
        + "\n".join(f"- **{m}**: `{results['models'][m].get('path', MISSING)}`" for m in _model_names(results)),
        "## Plots\n\n![Accuracy by language](accuracy_by_language.png)",
    ]
    if confusions:
        parts.append(
            "Confusion matrices (rows: true label, normalised to sum to 1):\n\n" + _confusion_links(confusions)
        )
    return "\n\n".join(parts) + "\n"


def _confusion_links(confusions: dict[tuple[str, str], Path]) -> str:
    by_model: dict[str, list[str]] = {}
    for (model, lang), path in confusions.items():
        by_model.setdefault(model, []).append(f"[{lang}]({path.name})")
    return "\n".join(f"- {model}: " + " · ".join(links) for model, links in by_model.items())
