"""Teacher-output cache: teacher outputs are computed once and reused by every student run.

Keyed by a content hash of (teacher weights, input texts, tokenisation settings, outputs), so a
changed teacher or input is never served stale outputs. Outputs are written in chunks, each
atomically (temp + rename) with its row count and SHA-256 recorded in a side file, so a run
killed while caching resumes at the first missing chunk, and a truncated or altered chunk is
detected and recomputed instead of trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from ..distributed import barrier, rank, world_size
from ..io_utils import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

CHUNK_ROWS = 2048


def fingerprint_texts(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


class TeacherCache:
    """Arrays (logits, pooled embeddings, ...) in safetensors chunks."""

    chunk_rows = CHUNK_ROWS
    suffix = ".safetensors"

    def __init__(self, root: str | Path, chunk_rows: int | None = None):
        self.root = Path(root)
        if chunk_rows is not None:
            self.chunk_rows = chunk_rows

    def key(self, teacher_fingerprint: str, texts: Sequence[str], settings: dict) -> str:
        payload = json.dumps(
            {"teacher": teacher_fingerprint, "texts": fingerprint_texts(texts), "settings": settings},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def get_or_compute(
        self,
        key: str,
        n_rows: int,
        compute: Callable[[int, int], dict[str, np.ndarray]],
        *,
        description: str = "teacher outputs",
        progress: bool = True,
    ) -> dict[str, np.ndarray]:
        """Return the cached outputs for rows [0, n_rows), computing missing chunks with
        ``compute(start, end) -> {name: array with end-start rows}``."""
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        rows = self.chunk_rows
        starts = list(range(0, n_rows, rows))
        missing = [s for s in starts if not self._chunk_ok(folder, s, min(s + rows, n_rows))]

        # Several processes: each computes its share of the missing chunks, then all read all.
        world = world_size()
        if world > 1:
            mine = missing[rank() :: world]
            for start in mine:
                end = min(start + rows, n_rows)
                self._write_chunk(folder, start, end, compute(start, end))
            barrier()
            missing = [s for s in starts if not self._chunk_ok(folder, s, min(s + rows, n_rows))]
        if missing:
            done = len(starts) - len(missing)
            log.info("%s: computing %d rows (%d of %d chunks cached)", description, n_rows, done, len(starts))
            bar = tqdm(total=n_rows, desc=description, disable=not progress, unit="ex")
            bar.update(sum(min(s + rows, n_rows) - s for s in starts if s not in missing))
            for start in missing:
                end = min(start + rows, n_rows)
                self._write_chunk(folder, start, end, compute(start, end))
                bar.update(end - start)
            bar.close()
        return self._join([self._read(self._chunk_path(folder, s)) for s in starts])

    def _chunk_path(self, folder: Path, start: int) -> Path:
        return folder / f"rows-{start:09d}{self.suffix}"

    # -- chunk format (overridden by TextCache) --------------------------------------------------

    def _save(self, outputs: dict[str, np.ndarray], tmp: Path) -> None:
        save_file({k: np.ascontiguousarray(v) for k, v in outputs.items()}, str(tmp))

    def _read(self, path: Path) -> dict[str, np.ndarray]:
        return load_file(str(path))

    def _join(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if not parts:
            return {}
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _write_chunk(self, folder: Path, start: int, end: int, outputs) -> None:
        path = self._chunk_path(folder, start)
        with atomic_path(path) as tmp:
            self._save(outputs, tmp)
        # The checksum is written after the chunk: a chunk without a matching record is redone.
        atomic_write_json(path.with_suffix(".json"), {"rows": end - start, "sha256": _sha256(path)})

    def _chunk_ok(self, folder: Path, start: int, end: int) -> bool:
        path = self._chunk_path(folder, start)
        record = path.with_suffix(".json")
        if not (path.is_file() and record.is_file()):
            return False
        try:
            meta = json.loads(record.read_text())
        except (OSError, ValueError):
            return False
        if meta.get("rows") != end - start or meta.get("sha256") != _sha256(path):
            log.warning("teacher cache chunk %s is truncated or altered; recomputing it", path)
            return False
        return True


class TextCache(TeacherCache):
    """Texts (a teacher's translations for sequence-level KD) in JSON chunks.

    Smaller chunks than for arrays: a CPU teacher decoding with beam search takes minutes per
    thousand sentences, and a killed run should lose at most one chunk of that work.
    """

    chunk_rows = 256
    suffix = ".jsonl"  # one JSON string per line (the checksum record beside it is the .json)

    def get_texts(
        self,
        key: str,
        n_rows: int,
        compute: Callable[[int, int], list[str]],
        *,
        description: str = "teacher translations",
        progress: bool = True,
    ) -> list[str]:
        out = self.get_or_compute(
            key, n_rows, lambda a, b: {"texts": list(compute(a, b))}, description=description, progress=progress
        )
        return out.get("texts", [])

    def _save(self, outputs: dict[str, list[str]], tmp: Path) -> None:
        tmp.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in outputs["texts"]), encoding="utf-8")

    def _read(self, path: Path) -> dict[str, list[str]]:
        return {"texts": [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]}

    def _join(self, parts: list[dict[str, list[str]]]) -> dict[str, list[str]]:
        if not parts:
            return {}
        return {name: [x for p in parts for x in p[name]] for name in parts[0]}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
