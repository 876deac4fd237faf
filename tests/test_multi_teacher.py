"""Multi-teacher distillation (distill.extra_teachers) and translation-augmented transfer
(distill.translate_source): what the student is trained on, and that both are cached."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xdistill.config import load_config
from xdistill.distill import classify
from xdistill.distill.cache import TeacherCache
from xdistill.distill.classify import NO_LABEL, teacher_outputs, train_teacher
from xdistill.distill.ensemble import ensemble_logits
from xdistill.errors import ConfigError
from xdistill.fingerprints import fingerprint_folder
from xdistill.layout import teacher_dir
from xdistill.models.classifier import load_classifier

from conftest import write_config


def test_ensemble_is_the_log_of_the_weighted_mean_probability():
    a = np.array([[0.0, math.log(3.0)]])  # p = [0.25, 0.75]
    b = np.array([[math.log(3.0), 0.0]])  # p = [0.75, 0.25]
    np.testing.assert_allclose(np.exp(ensemble_logits([a, b])), [[0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(np.exp(ensemble_logits([a, b], [1.0, 3.0])), [[0.625, 0.375]], rtol=1e-6)
    np.testing.assert_array_equal(ensemble_logits([a]), a.astype(np.float32))  # one teacher: as it is


def test_teacher_weights_must_match_the_teachers(tmp_path, tiny_raw):
    raw = {**tiny_raw, "distill": {**tiny_raw["distill"], "extra_teachers": ["a"], "teacher_weights": [1.0]}}
    with pytest.raises(ConfigError, match=r"distill\.teacher_weights needs one weight for the run's teacher and one"):
        load_config(write_config(tmp_path / "c.yaml", raw))


class _Stop(Exception):
    pass


def _captured_items(cfg, monkeypatch) -> list[dict]:
    """The items distill_student hands to fit(), without training."""
    seen: list[dict] = []

    def fake_fit(model, items, *args, **kwargs):
        # What fit() would train besides the model must be modules (it builds optimizer groups of them).
        assert all(isinstance(m, torch.nn.Module) for m in kwargs.get("extra_modules") or [])
        seen.extend(items)
        raise _Stop

    monkeypatch.setattr(classify, "fit", fake_fit)
    with pytest.raises(_Stop):
        classify.distill_student(cfg, progress=False)
    return seen


def _computations(monkeypatch) -> list[int]:
    """Counts the rows the teacher-output cache had to compute (not read)."""
    rows: list[int] = []
    original = TeacherCache.get_or_compute

    def counting(self, key, n_rows, compute, **kwargs):
        def counted(start, end):
            rows.append(end - start)
            return compute(start, end)

        return original(self, key, n_rows, counted, **kwargs)

    monkeypatch.setattr(TeacherCache, "get_or_compute", counting)
    return rows


@pytest.fixture
def two_teachers(tmp_path, tiny_raw):
    """A run's teacher and a second one fine-tuned with another seed (both tiny, 1 epoch)."""
    raw = {**tiny_raw, "teacher": {**tiny_raw["teacher"], "train": {"epochs": 1, "batch_size": 32, "lr": 1.0e-3}}}
    other = load_config(write_config(tmp_path / "other.yaml", {**raw, "seed": 7, "run_dir": str(tmp_path / "other")}))
    train_teacher(other, progress=False)
    cfg = load_config(write_config(tmp_path / "main.yaml", raw))
    train_teacher(cfg, progress=False)
    return cfg, teacher_dir(other)


def test_extra_teachers_soft_targets_are_the_ensemble_and_are_cached(two_teachers, monkeypatch):
    cfg, other = two_teachers
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, extra_teachers=[str(other)]))
    items = _captured_items(cfg, monkeypatch)

    data = classify.load_training_data(cfg, with_targets=True)
    texts = [e.text for e in data.unlabelled["es"]]
    cache = TeacherCache(cfg.cache_dir)
    own = [teacher_outputs(cache, fingerprint_folder(f), *load_classifier(f, labels=cfg.data.labels), texts, None,
                           cfg, ("logits",), "t", False)["logits"] for f in (teacher_dir(cfg), other)]  # fmt: skip
    assert not np.allclose(own[0], own[1])  # two different teachers
    unlabelled = [it for it in items if it["label"] == NO_LABEL]
    got = np.stack([it["t_logits"] for it in unlabelled[: len(texts)]])
    np.testing.assert_allclose(got, ensemble_logits(own), rtol=1e-5, atol=1e-6)

    rows = _computations(monkeypatch)
    _captured_items(cfg, monkeypatch)
    assert rows == []  # every teacher's outputs came from the cache the second time


def test_translated_source_texts_are_a_stream_the_teacher_labels_and_are_cached(two_teachers, tmp_path, monkeypatch):
    cfg, _ = two_teachers
    calls = tmp_path / "calls.txt"
    script = tmp_path / "fake_mt.py"
    script.write_text(
        f"import sys\nopen({str(calls)!r}, 'a').write('x')\nfor line in sys.stdin:\n    print('ES ' + line.strip())\n",
        encoding="utf-8",
    )
    command = f"{sys.executable} {script}"
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, translate_source={"es": command}))
    items = _captured_items(cfg, monkeypatch)
    data = classify.load_training_data(cfg, with_targets=True)
    streams = classify.student_streams(cfg, data, progress=False)
    translated = next(s for s in streams if s.name == "translated-en-es")
    assert translated.student_texts == ["ES " + e.text for e in data.train]
    assert set(translated.labels) == {NO_LABEL}
    assert len(items) == sum(len(s.student_texts) for s in streams)
    assert all(it["t_logits"] is not None for it in items)  # the teacher labelled every one
    n_calls = len(calls.read_text())
    classify.student_streams(cfg, data, progress=False)
    assert len(calls.read_text()) == n_calls  # the translations came from the cache

    # The no-distillation baseline trims its vocabulary on the same texts, translations included.
    nokd = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, use_teacher=False, hidden_weight=0.0))
    assert not any(s.name.startswith("translated") for s in classify.student_streams(nokd, data, progress=False))
    peers = classify.student_streams(classify._with_teacher(nokd), data, progress=False)
    assert any(s.name == "translated-en-es" for s in peers)


def test_a_translator_folder_without_a_model_is_one_config_error(two_teachers, tmp_path):
    cfg, _ = two_teachers
    (tmp_path / "not-a-model").mkdir()
    cfg = dataclasses.replace(
        cfg, distill=dataclasses.replace(cfg.distill, translate_source={"es": str(tmp_path / "not-a-model")})
    )
    data = classify.load_training_data(cfg, with_targets=True)
    with pytest.raises(
        ConfigError, match=r"distill\.translate_source\.es: .*not-a-model is a folder but not a Hugging"
    ):
        classify.student_streams(cfg, data, progress=False)


def test_extra_teacher_folders_are_inputs_of_the_student_stage(two_teachers):
    from xdistill.pipeline import stage_settings

    cfg, other = two_teachers
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, extra_teachers=[str(other)]))
    settings = stage_settings(cfg, "student")
    assert "input:distill.extra_teachers[0]" in settings
    assert Path(other).is_dir()
