"""Atomic file writes: a kill mid-write never leaves a half-written file that a later run trusts."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``.

    Use for writers that want a file name (``torch.save``, ``safetensors.save_file``, ``savefig``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp_file(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _new_temp_file(path: Path) -> Path:
    """A new empty file next to ``path`` with the mode a plain open() gives (0666 less the umask).

    Not ``tempfile.mkstemp``: it makes 0600 files, and chmod-ing them afterwards needs the umask,
    which can only be read by setting it: for a moment, for every thread of the process.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics; write them as plain numbers/lists.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


@contextmanager
def atomic_dir(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``folder``; on success it replaces ``folder``.

    A model folder is many files; writing them into a sibling and renaming at the end means a
    kill mid-save leaves the previous folder (or none), never a mix a later run would load.
    An existing ``folder`` is renamed aside before the new one takes its name and deleted only
    after, so a failed rename puts it back. Relative paths (``.``, ``../x``) are made absolute
    first. Every xdistill model writer goes through here.
    """
    folder = Path(os.path.abspath(folder))
    if folder == folder.parent:
        raise ValueError(f"cannot replace {folder}: write into a named folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()  # not tempfile.mkdtemp (0700): a plain mkdir gives 0777 less the umask, e.g. 0755
    try:
        yield tmp
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            folder.rename(old)
            try:
                tmp.rename(folder)
            except BaseException:
                old.rename(folder)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
