"""Reproducible runs: same seed in two fresh processes gives the same models and metrics; a stage is
redone when its input files change; --resume refuses a checkpoint made with other settings; one
process at a time writes a run folder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xdistill.config import load_config, package_dir
from xdistill.distill.fit import RESUME
from xdistill.errors import XdistillError
from xdistill.pipeline import _begin_stage, _mark_done, can_resume, run_folder_lock, stage_done, stage_hash

from conftest import write_config


def _fresh_run(tmp_path: Path, name: str, tiny_raw: dict) -> Path:
    raw = {**tiny_raw, "run_dir": str(tmp_path / name / "run"), "cache_dir": str(tmp_path / name / "cache")}
    path = write_config(tmp_path / f"{name}.yaml", raw)
    env = {**os.environ, "XDISTILL_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp_path / name / "run"


def _quality(results: dict) -> dict:
    """Every model's metrics in results.json (its timing figures differ between any two runs)."""
    return {name: model["metrics"] for name, model in results["models"].items()}


@pytest.mark.slow
def test_two_fresh_processes_with_one_seed_give_identical_models_and_metrics(tmp_path, tiny_raw):
    a, b = _fresh_run(tmp_path, "a", tiny_raw), _fresh_run(tmp_path, "b", tiny_raw)
    for folder in ("teacher", "student"):
        for weights in sorted((a / folder).glob("*.safetensors")):
            assert weights.read_bytes() == (b / folder / weights.name).read_bytes(), f"{folder}/{weights.name}"
    for log in ("teacher-logs", "student-logs"):
        ra = [json.loads(line) for line in (a / log / "metrics.jsonl").read_text().splitlines()]
        rb = [json.loads(line) for line in (b / log / "metrics.jsonl").read_text().splitlines()]
        # Training seconds are timing, not results: present in every dev record, equal in none.
        assert all(r.pop("train_seconds") > 0 for r in ra + rb if r["type"] == "eval"), log
        assert ra == rb, log
    assert _quality(json.loads((a / "results.json").read_text())) == _quality(
        json.loads((b / "results.json").read_text())
    )


def _copy_demo_data(tmp_path: Path, tiny_raw: dict) -> dict:
    data = tmp_path / "data"
    shutil.copytree(package_dir() / "demo_data", data)
    return {**tiny_raw, "data": {**tiny_raw["data"], "dir": str(data)}}


def test_edited_training_data_redoes_the_stages_that_read_it(tmp_path, tiny_raw):
    raw = _copy_demo_data(tmp_path, tiny_raw)
    cfg = load_config(write_config(tmp_path / "c.yaml", raw))
    before = {stage: stage_hash(cfg, stage) for stage in ("teacher", "student", "evaluate")}
    train = Path(raw["data"]["dir"]) / raw["data"]["train"]
    rows = list(csv.DictReader(train.open(encoding="utf-8")))
    flip = {"negative": "positive", "positive": "negative"}
    with train.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "label": flip[r["label"]]} for r in rows)
    after = {stage: stage_hash(cfg, stage) for stage in before}
    assert all(before[s] != after[s] for s in before)


def test_resume_with_changed_settings_names_them_and_never_new_starts_over(tmp_path, tiny_raw):
    path = write_config(tmp_path / "c.yaml", tiny_raw)
    first = load_config(path)
    _begin_stage(first, "student")  # as a run killed mid-student leaves it
    changed = load_config(path, ["train.lr=1e-5"])
    token = RESUME.set(True)
    try:
        with pytest.raises(
            XdistillError,
            match=r"started with other settings \(train\.lr: 0\.001 -> 1e-05\).*"
            r"--resume never",
        ):
            _begin_stage(changed, "student")
        _begin_stage(first, "student")  # the same settings resume
    finally:
        RESUME.reset(token)
    _begin_stage(changed, "student")  # --resume never: a new start, recorded with the new settings
    token = RESUME.set(True)
    try:
        _begin_stage(changed, "student")
    finally:
        RESUME.reset(token)


def test_resume_auto_cli_refuses_changed_settings_after_a_kill(tmp_path, tiny_raw):
    path = write_config(tmp_path / "c.yaml", tiny_raw)
    _begin_stage(load_config(path), "teacher")
    proc = subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(path), "--resume", "auto", "--set", "teacher.train.lr=1e-5"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDISTILL_NO_PROGRESS": "1"},
    )
    assert proc.returncode == 2
    assert "teacher.train.lr: 0.001 -> 1e-05" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_second_process_cannot_write_a_busy_run_folder(tmp_path, tiny_raw):
    path = write_config(tmp_path / "c.yaml", tiny_raw)
    cfg = load_config(path)
    with run_folder_lock(cfg):
        with run_folder_lock(cfg):  # re-entrant inside one process (run -> each stage)
            pass
        proc = subprocess.run(
            [sys.executable, "-m", "xdistill", "run", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "XDISTILL_NO_PROGRESS": "1"},
        )
    assert proc.returncode == 2
    assert f"another xdistill process (pid {os.getpid()}) is writing" in proc.stderr
    assert not stage_done(cfg, "teacher")


def test_a_stage_record_keeps_its_settings_for_people(tmp_path, tiny_raw):
    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_raw))
    from xdistill.pipeline import _mark_done

    _mark_done(cfg, "teacher", {"best_dev": 1.0})
    record = json.loads((Path(cfg.run_dir) / ".stages" / "teacher.json").read_text())
    assert record["settings"]["teacher.train.lr"] == 0.001
    assert record["settings"]["input:data.train"]
    assert stage_done(cfg, "teacher")
    # The commit that made the stage is kept: a later run reusing it reports that commit, not its own.
    from xdistill.bench.marc import _provenance
    from xdistill.evaluate.run_eval import code_version

    assert record["commit"] == code_version()["commit"]
    marker = Path(cfg.run_dir) / ".stages" / "teacher.json"
    marker.write_text(json.dumps({**record, "commit": "0" * 40}))
    provenance = _provenance(cfg, "teacher")
    assert provenance["commit"] == "0" * 40 and provenance["evaluated_commit"] == code_version()["commit"]


def test_the_same_data_named_another_way_reuses_the_stages(tmp_path, tiny_raw, monkeypatch):
    """A stage depends on what its inputs hold, not where they are: the same data folder spelled
    relative or absolute, or copied elsewhere, with another cache folder, keeps every stage's hash
    (a bench run once retrained its teacher because --data-dir was spelled differently)."""
    from xdistill.pipeline import _mark_done, redo_notice, stage_changes

    raw = _copy_demo_data(tmp_path, tiny_raw)
    cfg = load_config(write_config(tmp_path / "a.yaml", raw))
    for stage in ("teacher", "student", "evaluate"):
        _mark_done(cfg, stage, {})
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(raw["data"]["dir"], moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    other = {**raw, "data": {**raw["data"], "dir": "data"}, "cache_dir": str(tmp_path / "another-cache")}
    other_cfg = load_config(write_config(tmp_path / "b.yaml", other))
    assert all(stage_done(other_cfg, s) for s in ("teacher", "student", "evaluate"))
    assert stage_changes(other_cfg, "teacher") == [] and redo_notice(other_cfg, "teacher") is None
    # A changed setting still redoes the stage, and the log line says which.
    changed = load_config(write_config(tmp_path / "c.yaml", {**other, "teacher": {**raw["teacher"], "dropout": 0.3}}))
    assert not stage_done(changed, "teacher")
    assert redo_notice(changed, "teacher") == (
        f"[teacher] redoing the stage finished in {changed.run_dir}: teacher.dropout: (default) -> 0.3"
    )


def test_a_stage_recorded_with_its_locations_still_counts(tmp_path, tiny_raw):
    """Records written before locations were left out of a stage's settings (data.dir, cache_dir and
    input paths beside their content fingerprints) still count as done for the same inputs."""
    from xdistill.pipeline import _mark_done

    cfg = load_config(write_config(tmp_path / "c.yaml", _copy_demo_data(tmp_path, tiny_raw)))
    _mark_done(cfg, "teacher", {})
    marker = Path(cfg.run_dir) / ".stages" / "teacher.json"
    record = json.loads(marker.read_text())
    old_style = {**record["settings"], "data.dir": "../somewhere/data", "data.train": "train.csv"}
    marker.write_text(json.dumps({**record, "hash": "0" * 16, "settings": old_style}))
    assert stage_done(cfg, "teacher")
    marker.write_text(json.dumps({**record, "hash": "0" * 16, "settings": {**old_style, "teacher.dropout": 0.3}}))
    assert not stage_done(cfg, "teacher")


def test_only_a_stage_interrupted_with_the_same_settings_can_resume(tmp_path, tiny_raw):
    path = write_config(tmp_path / "c.yaml", tiny_raw)
    first, changed = load_config(path), load_config(path, ["train.lr=1e-5"])
    assert not can_resume(first, "student")  # never started
    _begin_stage(first, "student")  # as a run killed mid-student leaves it
    assert can_resume(first, "student")
    assert not can_resume(changed, "student")
    _mark_done(first, "student", {})
    assert not can_resume(first, "student")  # finished: nothing to continue


def test_building_a_random_encoder_leaves_the_global_random_stream_as_finding_it_cached_does(tmp_path):
    # Else the first run in a process (which builds the encoder) draws other heads and dropout
    # masks than every later run of the same config (which finds it cached).
    import torch

    from xdistill.models.tiny import create_random_encoder

    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    create_random_encoder(tmp_path / "enc", ["a small text", "another one"], "tiny", seed=5)
    assert torch.equal(torch.rand(4), expected)
