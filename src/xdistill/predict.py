"""``xdistill predict``: JSONL in, JSONL out, for any model kind and format.

Each input line is a JSON object with a ``"text"`` (and, for sentence-pair classifiers, an optional
``"text_pair"``); the output line is the same object plus ``label``/``scores``, ``embedding`` or
``translation``. The whole input is validated before any prediction, so a bad line 9,000 fails in
a second, naming the line, instead of after an hour of work.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .errors import DataFormatError
from .export.runtime import LoadedModel
from .io_utils import atomic_write_text

CHUNK = 256
# JSON can spell a lone UTF-16 surrogate ("\ud800"); Python then holds a str that is not valid
# Unicode, which tokenizers and UTF-8 output reject. (A proper pair decodes to one character.)
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in ``text``, or None."""
    found = _SURROGATE.search(text)
    return found.start() if found else None


def _surrogate_field(value: Any, where: str) -> tuple[str, str, int] | None:
    """``(field, text, index)`` of the first lone surrogate anywhere in a parsed JSON value."""
    if isinstance(value, str):
        at = lone_surrogate(value)
        return (where, value, at) if at is not None else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key))
        found = _surrogate_field(key, f"{name} (the key)") if isinstance(key, str) else None
        found = found or _surrogate_field(item, name)
        if found:
            return found
    return None


def parse_records(raw: bytes, source: str) -> list[dict[str, Any]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(source, line, f"invalid UTF-8 at byte {exc.start}; save the file as UTF-8") from None
    records = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataFormatError(
                source, number, f'not valid JSON ({exc.msg}); each line must be one JSON object like {{"text": "..."}}'
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataFormatError(source, number, 'each line must be a JSON object with a string "text" field')
        if "text_pair" in record and record["text_pair"] is not None and not isinstance(record["text_pair"], str):
            raise DataFormatError(source, number, '"text_pair" must be a string or null')
        bad = _surrogate_field(record, "")
        if bad:
            field, value, at = bad
            raise DataFormatError(
                source,
                number,
                f'"{field}" is not valid Unicode: a lone surrogate '
                f"U+{ord(value[at]):04X} at character {at} (a \\u escape of half a "
                "UTF-16 pair); fix the program that wrote the file",
            )
        records.append(record)
    return records


def predict_records(
    model: LoadedModel, records: list[dict[str, Any]], *, batch_size: int = 32, beam: int = 4, progress: bool = False
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    bar = tqdm(total=len(records), desc="predict", disable=not progress, unit="rec", file=sys.stderr)
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        texts = [r["text"] for r in chunk]
        if model.kind == "classifier":
            pairs = [r.get("text_pair") for r in chunk]
            preds = model.classify(texts, pairs if any(p is not None for p in pairs) else None, batch_size=batch_size)
            out.extend({**r, **p} for r, p in zip(chunk, preds))
        elif model.kind == "sentence-encoder":
            vectors = model.embed(texts, batch_size=batch_size)
            out.extend({**r, "embedding": [round(float(x), 6) for x in v]} for r, v in zip(chunk, vectors))
        else:
            hyps = model.translate(texts, beam=beam, batch_size=batch_size)
            out.extend({**r, "translation": h} for r, h in zip(chunk, hyps))
        bar.update(len(chunk))
    bar.close()
    return out


def predict_jsonl(
    model: LoadedModel,
    raw: bytes,
    source: str,
    output: Path | None,
    *,
    batch_size: int = 32,
    beam: int = 4,
    progress: bool = False,
) -> None:
    records = parse_records(raw, source)
    results = predict_records(model, records, batch_size=batch_size, beam=beam, progress=progress)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if output is not None:
        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)
