"""Content fingerprints of files and folders: what a stage read, and which teacher made a cache.

A file's SHA-256 is computed once per (path, size, mtime) and remembered in
``CACHE_DIR/fingerprints.json``, so a stage check re-hashes a 500 MB teacher or a 100 MB review
pool only after it changed, not on every ``xdistill run``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

from .io_utils import atomic_write_json

# The files of a model folder that decide its outputs (weights, configs, tokenizer files).
MODEL_SUFFIXES = (".safetensors", ".bin", ".json")

# A file modified less than this long before it was hashed may still change within the same
# timestamp tick (the "racy git" problem), so its hash is not remembered.
_RACY_NS = 2_000_000_000
_HASHES: dict[tuple[int, int, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered (in this process) while the file keeps its identity, size and mtime."""
    path = Path(path)
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and not _racy(st):
        _HASHES[key] = value
    return value


def _racy(st) -> bool:
    return time.time_ns() - st.st_mtime_ns <= _RACY_NS


class FileDigests:
    """SHA-256 of files, remembered by (path, size, mtime) in a JSON file (or only in memory)."""

    def __init__(self, store: str | Path | None = None):
        self.store = Path(store) if store is not None else None
        self._saved: dict[str, dict] = {}
        if self.store is not None and self.store.is_file():
            try:
                self._saved = json.loads(self.store.read_text(encoding="utf-8"))
            except ValueError:
                self._saved = {}  # a damaged memo only costs re-hashing
        self._dirty = False

    def digest(self, path: str | Path) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        saved = self._saved.get(str(path))
        if saved and saved.get("size") == stat.st_size and saved.get("mtime_ns") == stat.st_mtime_ns:
            return saved["sha256"]
        value = file_sha256(path)
        if not _racy(stat):
            self._saved[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
            self._dirty = True
        return value

    def fingerprint(self, path: str | Path) -> str | None:
        """A file's digest, a folder's (its files, recursively), or None when the path does not exist."""
        path = Path(path)
        if path.is_file():
            return self.digest(path)
        if path.is_dir():
            digest = hashlib.sha256()
            for sub in sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path)):
                digest.update(f"{sub.relative_to(path).as_posix()}\0{self.digest(sub)}\0".encode())
            return digest.hexdigest()
        return None

    def save(self) -> None:
        if self.store is not None and self._dirty:
            atomic_write_json(self.store, self._saved)
            self._dirty = False


def _hidden(path: Path, root: Path) -> bool:
    # Temporary siblings, locks and stage records are not content.
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def fingerprint_folder(folder: str | Path, suffixes: Sequence[str] = MODEL_SUFFIXES) -> str:
    """Hash of a model folder's weight and config files (content, not timestamps)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.suffix in suffixes:
            digest.update(path.name.encode())
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()
