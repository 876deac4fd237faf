"""Model cards: a ``README.md`` in every saved student and export folder.

Says what the model does, for which languages, from which teacher and data (with the data's
licence, since several corpora here forbid commercial use), how it was distilled, how it scored
against its teacher, its size and speed, and its limits. Written from what the run recorded
(``xdistill_model.json``, the run's ``results.json``), never from hand-typed figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io_utils import atomic_write_text

# Licences of the corpora xdistill's recipes read, matched on path fragments.
DATA_LICENCES = [
    ("marc", "MARC (Multilingual Amazon Reviews Corpus): Amazon licence, academic research only, no commercial use"),
    ("xnli", "XNLI: CC BY-NC 4.0 (non-commercial)"),
    ("flores", "FLORES-200: CC BY-SA 4.0"),
    ("ntrex", "NTREX-128: CC BY-SA 4.0"),
    ("tico", "TICO-19: CC0 1.0"),
    ("tatoeba", "Tatoeba: CC BY 2.0 FR"),
    ("cmn.txt", "Tatoeba (manythings cmn.txt): CC BY 2.0 FR"),
    ("newstest", "WMT newstest: released for research and evaluation (news text owned by its publishers)"),
    ("sst2", "SST-2: no explicit licence (Stanford Sentiment Treebank, research use)"),
    ("demo_data", "xdistill demo reviews: CC0 (written for the project)"),
    ("builtin:", "xdistill demo reviews: CC0 (written for the project)"),
]

KIND_TEXT = {
    "classifier": "text classification",
    "sentence-encoder": "multilingual sentence embeddings",
    "translation": "machine translation",
}


def data_licences(paths: list[str]) -> list[str]:
    found: list[str] = []
    for path in paths:
        low = path.lower()
        for fragment, licence in DATA_LICENCES:
            if fragment in low and licence not in found:
                found.append(licence)
    return found


def _paths(config: dict[str, Any] | None) -> list[str]:
    """Every string in the data-bearing sections of a resolved run config (paths, mostly)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            out.append(node)

    for section in ("data", "mt", "embed"):
        walk((config or {}).get(section, {}))
    return out


def model_card(
    info: dict[str, Any],
    *,
    config: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    export: dict[str, Any] | None = None,
) -> str:
    kind = info.get("kind") or ("translation" if info.get("task") == "translation" else "model")
    langs = info.get("languages") or [x for x in (info.get("source_lang"), info.get("target_lang")) if x]
    if not langs and config:
        data = config.get("data", {})
        langs = [data.get("source_lang", "en"), *data.get("target_langs", [])]
    lines = [
        "---",
        "library_name: transformers",
        "tags: [xdistill, knowledge-distillation]",
        *([f"language: [{', '.join(langs)}]"] if langs else []),
        "---",
        "",
        f"# {KIND_TEXT.get(kind, kind)} student (xdistill)",
        "",
    ]
    lines.append(
        f"- **Task:** {KIND_TEXT.get(kind, kind)}" + (f"; labels {info['labels']}" if info.get("labels") else "")
    )
    if langs:
        lines.append(f"- **Languages:** {', '.join(langs)}")
    arch = info.get("architecture") or {}
    if arch.get("init_encoder"):
        lines.append(
            f"- **Architecture:** BART warm-started from `{arch['init_encoder']}` (encoder layers "
            f"{arch.get('encoder_layer_ids')}, decoder started from layers {arch.get('decoder_layer_ids')}"
            f"{', encoder frozen' if arch.get('freeze_encoder') else ''}); vocabulary trimmed to the corpus"
        )
    elif arch.get("type"):
        lines.append(
            f"- **Architecture:** {arch['type']}, " + ", ".join(f"{k} {v}" for k, v in arch.items() if k != "type")
        )
    decoding = info.get("decoding")
    if decoding:
        guard = decoding.get("no_repeat_ngram_size")
        lines.append(
            f"- **Decoding:** at most {decoding.get('length_ratio')} x the longest source in a batch + "
            f"{decoding.get('length_extra')} tokens"
            + (f", no repeated {guard}-gram" if guard else "")
            + (
                f", repetition penalty {decoding['repetition_penalty']}"
                if decoding.get("repetition_penalty", 1.0) != 1.0
                else ""
            )
            + " (`xdistill translate` applies it; `generate()` reads the n-gram guard from "
            "`generation_config.json`)"
        )
    teacher = (
        info.get("teacher")
        or (info.get("made_with") or {}).get("teacher")
        or (config or {}).get("teacher", {}).get("path")
    )
    if teacher:
        lines.append(f"- **Teacher:** `{teacher}`")
    if config:
        d = config.get("distill", {})
        lines.append(
            f"- **Distillation:** transfer `{d.get('transfer')}`, temperature {d.get('temperature')}, "
            f"alpha {d.get('alpha')}, hidden/attention/embedding weights {d.get('hidden_weight')}/"
            f"{d.get('attention_weight')}/{d.get('embedding_weight')}"
            if kind == "classifier"
            else "- **Distillation:** see `made_with` in `xdistill_model.json` and the run's `config.yaml`"
        )
        licences = data_licences(_paths(config))
        if licences:
            lines += ["", "## Training data and licences", ""] + [f"- {x}" for x in licences]
            lines.append("")
            lines.append(
                "The model inherits the restrictions of its training data: check them before any commercial use."
            )
    if results:
        lines += ["", "## Results (from the run's evaluation)", "", _results_table(kind, results)]
    if export:
        lines += [
            "",
            "## Export",
            "",
            f"- Format: {export['format']}" + (f", {export['quantize']}" if export.get("quantize") else ", fp32"),
            f"- Parity with the PyTorch model: {export.get('parity')}",
        ]
        if export.get("gate"):
            g = export["gate"]
            lines.append(
                f"- Accuracy gate ({g['metric']} on dev): {g['reference']:.2f} -> {g['exported']:.2f} "
                f"(drop {g['drop']:.2f}, allowed {g['max_drop']:g})"
            )
    lines += [
        "",
        "## Limits",
        "",
        "- A distilled student is smaller and faster than its teacher and usually somewhat less accurate; "
        "the figures above are the honest measure, on the named test sets only.",
        "- Languages or domains absent from the training data are not covered.",
        "- Speed figures are from CPU runs (2 threads) on the machine in the run's `results.json`.",
        "",
    ]
    return "\n".join(lines)


def _results_table(kind: str, results: dict[str, Any]) -> str:
    models = results.get("models", {})
    if kind == "translation":
        tests = sorted({t for m in models.values() for t in m.get("tests", {})})
        head = "| model | " + " | ".join(f"{t} BLEU / chrF" for t in tests) + " |"
        rows = [
            f"| {name} | "
            + " | ".join(
                f"{m['tests'][t]['bleu']:.1f} / {m['tests'][t]['chrf']:.1f}" if t in m.get("tests", {}) else "–"
                for t in tests
            )
            + " |"
            for name, m in models.items()
        ]
        return "\n".join([head, "|---" * (len(tests) + 1) + "|", *rows])
    if kind == "sentence-encoder":
        dirs = sorted({d for m in models.values() for d in (m.get("retrieval") or {})})
        head = "| model | " + " | ".join(f"retrieval {d}" for d in dirs) + " | params |"
        rows = [
            f"| {name} | "
            + " | ".join(f"{(m.get('retrieval') or {}).get(d, float('nan')):.1f}" for d in dirs)
            + f" | {m.get('params_total', 0) / 1e6:.1f}M |"
            for name, m in models.items()
        ]
        return "\n".join([head, "|---" * (len(dirs) + 2) + "|", *rows])
    rows = []
    for name, m in models.items():
        metrics = m.get("metrics") or {}
        accs = ", ".join(
            f"{lang} {v.get('accuracy', float('nan')):.1f}" for lang, v in metrics.items() if isinstance(v, dict)
        )
        rows.append(
            f"| {name} | {accs or '–'} | {m.get('params_total', 0) / 1e6:.1f}M | "
            f"{m.get('throughput_b32', 0) or 0:.0f} |"
        )
    return "\n".join(["| model | accuracy per language | params | examples/s (batch 32) |", "|---|---|---|---|", *rows])


def write_model_card(folder: str | Path, info: dict[str, Any], **kwargs: Any) -> Path:
    path = Path(folder) / "README.md"
    atomic_write_text(path, model_card(info, **kwargs))
    return path
