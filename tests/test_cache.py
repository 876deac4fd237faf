from __future__ import annotations

import numpy as np
import pytest

from xdistill.distill import cache as cache_mod
from xdistill.distill.cache import TeacherCache
from xdistill.fingerprints import fingerprint_folder


class Counter:
    """A fake teacher: row i's logits are [i, -i]; records which row ranges it computed."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple[int, int]] = []
        self.fail_at = fail_at

    def __call__(self, start: int, end: int) -> dict[str, np.ndarray]:
        if self.fail_at is not None and start >= self.fail_at:
            raise KeyboardInterrupt("killed")
        self.calls.append((start, end))
        rows = np.arange(start, end, dtype=np.float32)
        return {"logits": np.stack([rows, -rows], axis=1)}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(cache_mod.TeacherCache, "chunk_rows", 4)


def test_outputs_are_computed_once_and_reused(tmp_path):
    cache = TeacherCache(tmp_path)
    key = cache.key("teacher-a", ["x"] * 10, {"max_length": 8})
    fake = Counter()
    first = cache.get_or_compute(key, 10, fake, progress=False)
    assert fake.calls == [(0, 4), (4, 8), (8, 10)]
    again = Counter()
    second = cache.get_or_compute(key, 10, again, progress=False)
    assert again.calls == []
    np.testing.assert_array_equal(first["logits"], second["logits"])
    np.testing.assert_array_equal(second["logits"][:, 0], np.arange(10))


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    cache = TeacherCache(tmp_path)
    key = cache.key("t", ["a", "b"], {})
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(key, 10, Counter(fail_at=4), progress=False)
    resumed = Counter()
    out = cache.get_or_compute(key, 10, resumed, progress=False)
    assert resumed.calls == [(4, 8), (8, 10)]
    np.testing.assert_array_equal(out["logits"][:, 0], np.arange(10))


def test_truncated_chunk_is_detected_and_recomputed(tmp_path):
    cache = TeacherCache(tmp_path)
    key = cache.key("t", ["a"], {})
    cache.get_or_compute(key, 10, Counter(), progress=False)
    chunk = tmp_path / key / "rows-000000004.safetensors"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    redo = Counter()
    out = cache.get_or_compute(key, 10, redo, progress=False)
    assert redo.calls == [(4, 8)]
    np.testing.assert_array_equal(out["logits"][:, 0], np.arange(10))


def test_key_changes_with_teacher_texts_and_settings(tmp_path):
    cache = TeacherCache(tmp_path)
    base = cache.key("t", ["a", "b"], {"max_length": 8})
    assert cache.key("t", ["a", "b"], {"max_length": 8}) == base
    assert cache.key("u", ["a", "b"], {"max_length": 8}) != base
    assert cache.key("t", ["a", "c"], {"max_length": 8}) != base
    assert cache.key("t", ["ab"], {"max_length": 8}) != base  # boundaries count, not just characters
    assert cache.key("t", ["a", "b"], {"max_length": 16}) != base


def test_fingerprint_follows_weight_content(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"one")
    before = fingerprint_folder(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"two")
    assert fingerprint_folder(tmp_path) != before


def test_text_cache_resumes_after_a_kill_and_keeps_order(tmp_path):
    cache = cache_mod.TextCache(tmp_path, chunk_rows=3)
    sources = [f"s{i}" for i in range(8)]
    key = cache.key("command:rev", sources, {"beam": 1})
    calls = []

    def translate(start, end):
        calls.append((start, end))
        if start >= 3 and len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return [s[::-1] + "é\u2028" for s in sources[start:end]]

    with pytest.raises(KeyboardInterrupt):
        cache.get_texts(key, len(sources), translate, progress=False)
    out = cache.get_texts(key, len(sources), translate, progress=False)
    assert calls == [(0, 3), (3, 6), (3, 6), (6, 8)]  # the finished chunk is not redone
    assert out == [s[::-1] + "é\u2028" for s in sources]
