"""Readers for the corpora a run consumes: labelled and unlabelled CSV/TSV/JSONL/TXT and parallel text.

Every problem with a file ends in one ``DataFormatError`` that names the file, the 1-based physical
line and the fix, because these files come from many hands (Kaggle dumps, Tatoeba exports, Excel)
and a traceback from deep inside ``csv`` or ``json`` tells the user nothing. Nothing is skipped
silently: blank lines, label-map drops and empty parallel pairs are counted in ``ReadStats``.

Files are read whole as bytes and decoded here (rather than through ``open(encoding=...)``) so a
bad byte or a NUL can be reported with its line and offset; corpora for this tool are megabytes.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from pathlib import Path
from typing import Iterator

from xdistill.config import ColumnsConfig
from xdistill.data.examples import Example, ParallelPair, ReadStats
from xdistill.errors import DataFormatError

__all__ = ["detect_format", "read_labelled", "read_unlabelled", "read_parallel"]

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt"}
_FORMATS = ("csv", "tsv", "jsonl", "txt")
# No sentence or review is a megabyte long; a line that is usually means a binary file or
# '\r'-only line endings, and refusing it keeps memory and error messages bounded.
_MAX_LINE_CHARS = 1 << 20
_IS_A_FOLDER = "is a folder, not a file; give the path of the data file itself, e.g. one inside this folder"
_NO_ROWS = (
    "no data rows (the file is empty, or holds only blank lines or a header); check the path points at the right file"
)


def detect_format(path: str | Path) -> str:
    """The file format implied by the extension: "csv", "tsv", "jsonl" or "txt"."""
    suffix = Path(path).suffix.lower()
    if Path(path).is_dir():  # checked first: a folder has no format, whatever its name
        raise DataFormatError(path, None, _IS_A_FOLDER)
    if suffix not in _EXTENSIONS:
        raise DataFormatError(
            path,
            None,
            f"unknown file extension {suffix or '(none)'!r}; use .csv, .tsv, .jsonl (or .json) or .txt, "
            "or give the format explicitly",
        )
    return _EXTENSIONS[suffix]


def read_labelled(
    path: str | Path,
    *,
    columns: ColumnsConfig,
    labels: list[str],
    label_map: dict[str, str | None] | None = None,
    lang: str | None = None,
    file_format: str | None = None,
    header: bool | None = None,
    require_label: bool = True,
) -> tuple[list[Example], ReadStats]:
    """Read labelled examples; ``Example.label`` is the index of the label's name in ``labels``.

    The raw label goes through ``label_map`` first (a ``None`` value drops the row, e.g. 3-star
    reviews for binary sentiment). Rows dropped that way are not otherwise validated. With
    ``require_label=False`` a missing label column or empty label cell gives ``label=None``.
    """
    fmt = _format(path, file_format)
    if fmt == "txt":
        raise DataFormatError(
            path, None, "a .txt file holds only text, one per line; labelled data must be csv, tsv or jsonl"
        )
    if columns.label is None and require_label:
        raise DataFormatError(
            path, None, "no label column configured; set the label column (columns.label) for this file"
        )
    # YAML turns `1: negative` and `labels: [1, 2]` into ints; labels in files are always strings.
    names = [str(x) for x in labels]
    mapping = {str(k).strip(): (None if v is None else str(v)) for k, v in (label_map or {}).items()}
    stats = ReadStats(path=str(path))
    wanted = _wanted(columns, with_label=columns.label is not None)
    optional = set() if require_label else {"label"}
    out: list[Example] = []
    seen = 0
    for line, cells in _records(path, fmt, _load(path), wanted, header, optional, stats):
        seen += 1
        raw = (cells.get("label") or "").strip()
        label = None
        if not raw:
            if require_label:
                raise DataFormatError(
                    path, line, f"empty label in column {columns.label!r}; fill it in or remove the row"
                )
        else:
            name = mapping.get(raw, raw)
            if raw in mapping and name is None:
                stats.dropped_by_label_map += 1
                continue
            if name not in names:
                via = f" (mapped from {_show(raw)} by label_map)" if name != raw else ""
                raise DataFormatError(
                    path,
                    line,
                    f"label {_show(name)}{via} is not in the label set {names}; add it to data.labels or map it in data.label_map",
                )
            label = names.index(name)
        out.append(_example(path, line, cells, columns, lang, label))
    if not seen:
        raise DataFormatError(path, None, _NO_ROWS)
    stats.rows = len(out)
    return out, stats


def read_unlabelled(
    path: str | Path,
    *,
    columns: ColumnsConfig | None = None,
    lang: str | None = None,
    file_format: str | None = None,
    header: bool | None = None,
) -> tuple[list[Example], ReadStats]:
    """Read text without labels (``label=None``); a .txt file is one text per line."""
    fmt = _format(path, file_format)
    columns = columns or ColumnsConfig()
    stats = ReadStats(path=str(path))
    lines = _load(path)
    out: list[Example] = []
    if fmt == "txt":
        for line in lines:
            if not line.strip():
                stats.blank_lines += 1
                continue
            out.append(Example(text=line.strip(), lang=lang))
    else:
        for line_no, cells in _records(path, fmt, lines, _wanted(columns, with_label=False), header, set(), stats):
            out.append(_example(path, line_no, cells, columns, lang, None))
    if not out:
        raise DataFormatError(path, None, _NO_ROWS)
    stats.rows = len(out)
    return out, stats


def read_parallel(
    path: str | Path,
    target_path: str | Path | None = None,
    *,
    source_column: str | int = 0,
    target_column: int | str = 1,
    header: bool | None = None,
) -> tuple[list[ParallelPair], ReadStats]:
    """Read sentence pairs from one tab-separated file (any extension, e.g. Tatoeba's cmn.txt)
    or, with ``target_path``, from two line-aligned plain text files.

    Pairs with an empty side are skipped and counted in ``stats.extra["empty_pairs"]``; otherwise
    texts are kept as they are, minus the line ending.
    """
    stats = ReadStats(path=str(path), extra={"empty_pairs": 0})
    pairs: Iterator[tuple[str, str]]
    if target_path is None:
        wanted = {"source": source_column, "target": target_column}
        records = _records(path, "tsv", _load(path), wanted, header, set(), stats)
        pairs = ((c["source"], c["target"]) for _, c in records)
    else:
        src, tgt = _load(path), _load(target_path)
        if len(src) != len(tgt):
            raise DataFormatError(
                path,
                None,
                f"{path} has {len(src)} lines but {target_path} has {len(tgt)}; parallel files must be "
                "line-aligned (line N of one is the translation of line N of the other)",
            )
        pairs = ((_chomp(s), _chomp(t)) for s, t in zip(src, tgt))
    out: list[ParallelPair] = []
    seen = 0
    for source, target in pairs:
        seen += 1
        if not source.strip() or not target.strip():
            stats.extra["empty_pairs"] += 1
            continue
        out.append(ParallelPair(source=source, target=target))
    if not seen:
        raise DataFormatError(path, None, _NO_ROWS)
    stats.rows = len(out)
    return out, stats


# --- helpers -------------------------------------------------------------------------------------


def _format(path: str | Path, file_format: str | None) -> str:
    if file_format is None:
        return detect_format(path)
    if file_format not in _FORMATS:
        raise DataFormatError(path, None, f"unknown file format {file_format!r}; use one of {', '.join(_FORMATS)}")
    return file_format


def _load(path: str | Path) -> list[str]:
    """The file's lines without their "\\n" (a final newline does not make an extra line)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, None, _not_found(path)) from None
    except IsADirectoryError:
        raise DataFormatError(path, None, _IS_A_FOLDER) from None
    except OSError as e:
        raise DataFormatError(path, None, f"cannot read the file ({e.strerror or e}); check its permissions") from None
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    # UTF-16 and binary files are full of NULs; catching them first gives the more useful hint.
    nul = data.find(b"\0", start)
    if nul >= 0:
        raise DataFormatError(
            path,
            data.count(b"\n", 0, nul) + 1,
            f"NUL byte at byte offset {nul}; this is a binary or UTF-16 file, not UTF-8 text; "
            "re-encode the file as UTF-8, e.g. `iconv -f utf-16 -t utf-8`",
        )
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        pos = start + e.start
        raise DataFormatError(
            path,
            data.count(b"\n", 0, pos) + 1,
            f"not valid UTF-8 (byte 0x{data[pos]:02x} at byte offset {pos}); "
            "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        if len(line) > _MAX_LINE_CHARS:
            raise DataFormatError(
                path,
                n,
                f"line is {len(line)} characters long (limit {_MAX_LINE_CHARS}); this is not a text corpus line: "
                "check the file is the right one and uses \\n or \\r\\n line endings",
            )
    return lines


def _not_found(path: str | Path) -> str:
    # Config data paths reach the readers joined to data.dir already (DataConfig.resolve); a
    # relative result is relative to the working directory, not to the config file's folder.
    if Path(path).is_absolute():
        return "file not found; check the path and data.dir in the config"
    return (
        f"file not found (looked for {os.path.abspath(path)}: data paths are relative to data.dir, and a "
        f"relative data.dir to the working directory {os.getcwd()}); check the path and data.dir in the config"
    )


def _chomp(line: str) -> str:
    return line[:-1] if line.endswith("\r") else line


def _show(value: str) -> str:
    # Values come from the file; keep messages one short line even for garbage input.
    return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."


def _wanted(columns: ColumnsConfig, *, with_label: bool) -> dict[str, str | int]:
    fields = {"text": columns.text, "text_pair": columns.text_pair, "lang": columns.lang, "id": columns.id}
    if with_label:
        fields["label"] = columns.label
    return {k: v for k, v in fields.items() if v is not None}


def _records(
    path: str | Path,
    fmt: str,
    lines: list[str],
    wanted: dict[str, str | int],
    header: bool | None,
    optional: set[str],
    stats: ReadStats,
) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Yield (line where the record starts, {field: raw cell}) for each data record.

    A column in ``optional`` that the header or JSON object lacks comes back as None; any other
    missing column is an error.
    """
    for field, col in wanted.items():
        if isinstance(col, bool) or not isinstance(col, (str, int)) or (isinstance(col, int) and col < 0):
            raise DataFormatError(path, None, f"column for {field} is {col!r}; give a column name or a 0-based index")
        if fmt == "jsonl" and isinstance(col, int):
            raise DataFormatError(
                path, None, f"column for {field} is the index {col}, but JSONL rows are objects; give the key name"
            )
    if fmt == "jsonl":
        for line, obj in _json_objects(path, lines, stats):
            cells: dict[str, str | None] = {}
            for field, key in wanted.items():
                if key not in obj and field not in optional:
                    raise DataFormatError(
                        path,
                        line,
                        f"key {key!r} ({field}) is missing; this object has {', '.join(map(repr, obj)) or 'no keys'}; "
                        "fix the column name in the config or the file",
                    )
                cells[field] = _json_cell(path, line, key, obj.get(key))
            yield line, cells
        return

    rows = _csv_rows(path, lines, stats) if fmt == "csv" else _tsv_rows(lines, stats)
    if header is None:
        header = all(isinstance(col, str) for col in wanted.values())
    index: dict[str, int] = {}
    width = 0
    if header:
        first = next(rows, None)
        if first is None:
            raise DataFormatError(path, None, _NO_ROWS)
        header_line, names = first[0], [name.strip() for name in first[1]]
        width = len(names)
        for field, col in wanted.items():
            if isinstance(col, int):
                index[field] = col
            elif col in names:
                index[field] = names.index(col)
            elif field not in optional:
                raise DataFormatError(
                    path,
                    header_line,
                    f"column {col!r} ({field}) is not in the header; available: {', '.join(map(repr, names))}; "
                    "fix the column name in the config or the header (a headerless file needs 0-based column indexes)",
                )
    else:
        for field, col in wanted.items():
            if isinstance(col, str):
                raise DataFormatError(
                    path,
                    None,
                    f"column {col!r} ({field}) is a name, but the file is read without a header; "
                    "give a 0-based column index or set header: true",
                )
            index[field] = col
    need = max([width, *(i + 1 for i in index.values())])
    why = f"the header has {width}" if width == need else f"column index {need - 1} is used"
    sep = "commas; quote fields that contain commas" if fmt == "csv" else "tabs, not spaces"
    for line, row in rows:
        if len(row) < need:
            raise DataFormatError(
                path,
                line,
                f"row has {len(row)} column(s) but needs at least {need} ({why}); columns must be separated by {sep}",
            )
        yield line, {field: (row[index[field]] if field in index else None) for field in wanted}


def _csv_rows(path: str | Path, lines: list[str], stats: ReadStats) -> Iterator[tuple[int, list[str]]]:
    # strict=True turns an unclosed or misplaced quote into an error instead of a record that
    # silently swallows the rest of the file.
    reader = csv.reader((line + "\n" for line in lines), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if "field limit" in str(e):
                reason = (
                    f"a field is longer than csv's limit of {csv.field_size_limit()} characters; "
                    "an unclosed quote in the record starting here probably swallows the lines after it"
                )
            elif "new-line character" in str(e):
                reason = (
                    "a bare carriage return (\\r) inside an unquoted field; convert the line endings to \\n "
                    "(e.g. `dos2unix`) or quote the field"
                )
            else:
                reason = (
                    f"malformed CSV in the record starting here ({e}); quote fields that contain commas, quotes "
                    'or line breaks, and double any quote inside a quoted field ("")'
                )
            raise DataFormatError(path, start, reason) from None
        # A quoted field may span lines, so only a one-line record can be a blank line.
        if reader.line_num == start and not lines[start - 1].strip():
            stats.blank_lines += 1
            continue
        yield start, row


def _tsv_rows(lines: list[str], stats: ReadStats) -> Iterator[tuple[int, list[str]]]:
    # No quoting at all: TSV corpora (XNLI, Tatoeba) contain stray quotes that are part of the text.
    for n, line in enumerate(lines, 1):
        if not line.strip():
            stats.blank_lines += 1
            continue
        yield n, _chomp(line).split("\t")


def _json_objects(path: str | Path, lines: list[str], stats: ReadStats) -> Iterator[tuple[int, dict]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            stats.blank_lines += 1
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problem = f"{e.msg} at column {e.colno}"
        except (ValueError, RecursionError) as e:  # huge integers, absurd nesting
            problem = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        else:
            if isinstance(obj, dict):
                yield n, obj
                continue
            problem = f"a JSON {type(obj).__name__}, not an object"
        hint = ""
        if line.lstrip().startswith("["):
            hint = "; a .json file holding one array can be converted with `jq -c '.[]' in.json > out.jsonl`"
        raise DataFormatError(
            path, n, f"not a JSON object ({problem}); each line must be one {{...}} object (JSON Lines){hint}"
        )


def _json_cell(path: str | Path, line: int, key: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        kind = {bool: "boolean", list: "array", dict: "object"}.get(type(value), type(value).__name__)
        raise DataFormatError(path, line, f"key {key!r} holds a JSON {kind}; it must be a string or a number")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataFormatError(
            path,
            line,
            f"key {key!r} holds an unpaired surrogate escape (\\ud800-\\udfff); fix the \\u escape in the file",
        ) from None
    return value


def _example(
    path: str | Path,
    line: int,
    cells: dict[str, str | None],
    columns: ColumnsConfig,
    lang: str | None,
    label: int | None,
) -> Example:
    texts = {}
    for field in ("text", "text_pair"):
        raw = cells.get(field)
        if field in cells and not (raw or "").strip():
            col = getattr(columns, field)
            raise DataFormatError(
                path, line, f"empty {field.replace('_', ' ')} in column {col!r}; fill it in or remove the row"
            )
        texts[field] = raw.strip() if raw is not None else None
    return Example(
        text=texts["text"],
        text_pair=texts["text_pair"],
        label=label,
        lang=(cells.get("lang") or "").strip() or lang,
        id=(cells.get("id") or "").strip() or None,
    )
