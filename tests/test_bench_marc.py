"""The MARC benchmark's bookkeeping (the run itself needs the shared data and belongs outside CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xdistill.bench.marc import (
    BUDGETS,
    ROWS,
    _student_rows,
    base_config,
    kept_from,
    kept_rows,
    markdown_table,
    ordered_rows,
    row_config,
)

from conftest import write_config


def entry(acc: dict[str, float], params: int = 10, speed: float = 50.0, speedup: float = 5.0) -> dict:
    return {
        "params_total": params,
        "params_embedding": 4,
        "disk_mb": 1.0,
        "latency_ms_b1": 2.0,
        "throughput_b32": speed,
        "speedup_b32": speedup,
        "speedup_b1": speedup / 2,
        "metrics": {lang: {"accuracy": a, "macro_f1": a - 1, "agreement": 90.0} for lang, a in acc.items()},
    }


def test_rows_average_over_seeds_and_compare_with_the_teacher():
    teacher = {"params_total": 100, "throughput_b32": 10.0}
    entries = {
        "student-unsupervised": [
            entry({"en": 80, "es": 82, "zh": 78}, speedup=4.0),
            entry({"en": 84, "es": 84, "zh": 80}, speedup=6.0),
        ]
    }
    rows = _student_rows(
        ["student-unsupervised"],
        "binary",
        {"student-unsupervised": [13, 21]},
        entries,
        {"student-unsupervised": []},
        ["en", "es", "zh"],
        teacher,
    )
    (row,) = rows
    assert row["seeds"] == [13, 21]
    assert row["accuracy"] == {"en": 82.0, "es": 83.0, "zh": 79.0}
    assert row["accuracy_std"]["en"] == pytest.approx(8**0.5)  # sample std (n - 1) of 80 and 84
    # Speed ratios come from each seed's own interleaved window with the teacher: median over seeds.
    assert row["params_ratio"] == pytest.approx(0.1) and row["speedup_b32"] == pytest.approx(5.0)
    assert row["speedup_b32_std"] == pytest.approx(2**0.5)
    table = markdown_table(
        {"machine": {"cpu": "x", "torch": "2"}, "protocol": {"seeds": [13, 21]}, "rows": rows, "complete": False}
    )
    assert "82.0 ± 2.8" in table and "5.0 ± 1.4" in table and "Partial run" in table


def test_one_seed_has_no_spread_rather_than_a_zero_one():
    teacher = {"params_total": 100, "throughput_b32": 10.0}
    (row,) = _student_rows(
        ["student-unsupervised"],
        "binary",
        {"student-unsupervised": [13]},
        {"student-unsupervised": [entry({"en": 80, "es": 82, "zh": 78}, speedup=4.0)]},
        {"student-unsupervised": []},
        ["en", "es", "zh"],
        teacher,
    )
    assert row["accuracy_std"] == {"en": None, "es": None, "zh": None} and row["speedup_b32_std"] is None


def test_every_row_config_is_valid_and_shares_the_teacher(tmp_path: Path):
    base = base_config(tmp_path / "data", tmp_path / "work", tmp_path / "e5", "binary", BUDGETS["quick"])
    for row in ROWS:
        cfg = row_config(base, row, 21, tmp_path / "work", "binary", tmp_path / "teacher")
        assert cfg.teacher.finetune is False and cfg.teacher.path == str(tmp_path / "teacher")
        assert cfg.seed == 21 and cfg.data.sample_seed == 13  # same data subsets for every seed
    assert row_config(base, "student-nokd", 13, tmp_path, "binary", tmp_path).distill.use_teacher is False
    # k labels per class train and select: the dev sets hold k per class too.
    assert row_config(base, "student-semi-16", 13, tmp_path, "binary", tmp_path).data.dev_per_class == 16
    sup = row_config(base, "student-supervised", 13, tmp_path, "binary", tmp_path)
    assert sup.data.target_labelled["es"] == "marc/train_pool_es.csv"
    # The multi-teacher row averages the row's teacher with the extra ones; the others use one teacher.
    extra = [tmp_path / "t21", tmp_path / "t42"]
    multi = row_config(base, "student-multi-teacher", 13, tmp_path, "binary", tmp_path, extra)
    assert multi.distill.extra_teachers == [str(p) for p in extra]
    assert (
        row_config(base, "student-unsupervised", 13, tmp_path, "binary", tmp_path, extra).distill.extra_teachers == []
    )
    translate = row_config(base, "student-translate-es", 13, tmp_path, "binary", tmp_path)
    assert translate.distill.translate_source == {"es": "apertium -u eng-spa"}


def _named(name: str, variant: str, commit: str, **extra) -> dict:
    return {"name": name, "variant": variant, "seeds": [13], "per_seed": [{"commit": commit}], **extra}


def test_rows_kept_from_an_earlier_run_name_their_run_and_the_new_ones_replace_theirs():
    earlier = {
        "machine": {"commit": "a" * 40, "cpu": "x", "torch": "2"},
        "wall_seconds": 600.0,
        "protocol": {"seeds": [13]},
        "rows": [
            _named("teacher", "binary", "a" * 40),
            _named("teacher-seed21", "binary", "a" * 40),
            _named("student-unsupervised", "binary", "a" * 40),
            _named("student-unsupervised-4l", "binary", "a" * 40),
        ],
    }
    # A binary run of the 4-layer row re-evaluates the teacher and replaces that row and its own.
    kept = kept_rows(earlier, ["binary"], ["student-unsupervised-4l"])
    assert [r["name"] for r in kept] == ["teacher-seed21", "student-unsupervised"]
    assert all(r["run"]["machine"]["commit"] == "a" * 40 and r["run"]["wall_seconds"] == 600.0 for r in kept)
    new = [_named("student-unsupervised-4l", "binary", "b" * 40), _named("teacher", "binary", "b" * 40)]
    merged = ordered_rows(kept + new)
    assert [r["name"] for r in merged] == [
        "teacher-seed21",
        "teacher",
        "student-unsupervised",
        "student-unsupervised-4l",
    ]
    # A 5-class run replaces nothing binary.
    assert len(kept_rows(earlier, ["5class"], list(ROWS))) == 4
    # Two earlier files (binary from one run, 5-class from another): both kept; the later file wins a clash.
    five = {**earlier, "machine": {"commit": "f" * 40}, "rows": [_named("teacher", "5class", "f" * 40)]}
    clash = {**earlier, "machine": {"commit": "e" * 40}, "rows": [_named("student-unsupervised", "binary", "e" * 40)]}
    merged = kept_from([earlier, five, clash], ["binary"], ["student-unsupervised-4l"])
    by_name = {(r["variant"], r["name"]): r["run"]["machine"]["commit"][0] for r in merged}
    assert by_name == {
        ("binary", "teacher-seed21"): "a",
        ("binary", "student-unsupervised"): "e",
        ("5class", "teacher"): "f",
    }
    # The table says which machine each earlier run timed on (speed ratios are per run and machine).
    from xdistill.bench.marc import _earlier_runs_line

    record = {k: earlier[k] for k in ("machine", "wall_seconds")}
    gone = {"machine": {"commit": "9" * 40, "cpu": "y"}, "wall_seconds": 60.0}  # all its rows re-measured since
    line = _earlier_runs_line({"earlier_runs": [gone, record, record], "rows": kept})
    assert line == " Rows kept from earlier runs: aaaaaaa (10 min, x); each row names its commit."
    assert _earlier_runs_line({"earlier_runs": [gone], "rows": new}) == ""


def test_five_class_table_shows_macro_f1_mae_and_each_rows_commit():
    row = _named(
        "student-unsupervised",
        "5class",
        "c" * 40,
        accuracy={"en": 45.0, "es": 44.0, "zh": 40.0},
        macro_f1={"en": 43.0, "es": 42.5, "zh": 38.0},
        mae={"en": 0.71, "es": 0.74, "zh": 0.83},
        params_total=2_000_000,
        params_ratio=0.17,
    )
    results = {"machine": {"cpu": "x", "torch": "2"}, "protocol": {"seeds": [13]}, "rows": [row], "complete": True}
    table = markdown_table(results)
    assert "macro-F1 en / es / zh" in table and "MAE (stars)" in table
    assert "| 45.0 / 44.0 / 40.0 | 43.0 / 42.5 / 38.0 | 0.71 / 0.74 / 0.83 |" in table
    assert table.rstrip().endswith("| ccccccc |")


def test_marc_dev_scores_every_candidate_on_dev_and_chooses_among_the_benchmark_size(tmp_path: Path, tiny_raw):
    from xdistill.bench import marc_dev

    config = write_config(tmp_path / "tiny.yaml", tiny_raw)
    candidates = {
        "two layers": ([], []),
        "three layers": (["student.layers=[0,2,3]"], []),
        "two layers, soft targets only": (["distill.alpha=0.0"], []),
    }
    out = tmp_path / "marc-dev.json"
    results = marc_dev.run_dev_selection(
        config=config,
        data_dir=Path("builtin:"),
        out=out,
        work_dir=tmp_path / "w",
        e5_path=None,
        candidates=candidates,
        jobs=2,
        progress=False,
        echo=lambda _: None,
    )
    assert [c["name"] for c in results["candidates"]] == list(candidates)
    assert [c["layers"] for c in results["candidates"]] == [[0, 3], [0, 2, 3], [0, 3]]
    for c in results["candidates"]:
        # The saved epoch is the best English dev epoch, and its figures are that epoch's.
        best = max(c["epochs"], key=lambda e: e["en/accuracy"])
        assert c["selected"]["en/accuracy"] == best["en/accuracy"]
        assert {"es/agreement", "zh/accuracy"} <= set(c["selected"])
    # Only 2-layer candidates may be chosen, whatever the 3-layer one scores.
    two = [c for c in results["candidates"] if len(c["layers"]) == 2]
    assert results["chosen"]["name"] == max(two, key=lambda c: c["selected"]["en/accuracy"])["name"]
    assert set(results["teacher_dev_accuracy"]) == {"en", "es", "zh"}
    assert json.loads(out.read_text())["recipes_tried"] == 3
    table = marc_dev.dev_markdown(results)
    assert "| three layers | 3 |" in table and "Chosen on English dev" in table


def test_a_rerun_continues_an_interrupted_student_from_its_checkpoint(tmp_path: Path, tiny_raw, monkeypatch):
    """bench marc runs its stages as `xdistill run` does: a student killed after its first epoch
    continues from that checkpoint on the next run and ends as the uninterrupted one."""
    from safetensors.torch import load_file

    from xdistill.bench.marc import ensure_stage
    from xdistill.config import load_config
    from xdistill.distill.checkpoint import CheckpointDir
    from xdistill.layout import student_dir

    def config(name: str):
        raw = {**tiny_raw, "run_dir": str(tmp_path / name)}
        return load_config(write_config(tmp_path / f"{name}.yaml", raw))

    straight, killed = config("straight"), config("killed")
    for cfg in (straight, killed):
        ensure_stage(cfg, "teacher", echo=lambda _: None, progress=False)
    ensure_stage(straight, "student", echo=lambda _: None, progress=False)

    save = CheckpointDir.save

    def save_then_die(self, **kw):
        save(self, **kw)
        raise KeyboardInterrupt  # the kill, right after the epoch-1 checkpoint is complete

    monkeypatch.setattr(CheckpointDir, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ensure_stage(killed, "student", echo=lambda _: None, progress=False)
    monkeypatch.setattr(CheckpointDir, "save", save)

    said: list[str] = []
    ensure_stage(killed, "student", echo=said.append, progress=False)
    assert any("resuming the student stage" in line for line in said), said
    a = load_file(str(student_dir(straight) / "model.safetensors"))
    b = load_file(str(student_dir(killed) / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    ensure_stage(killed, "student", echo=said.append, progress=False)  # done: nothing runs again
    assert sum("the student stage" in line for line in said) == 1


def test_speed_per_size_table_puts_each_depths_speed_beside_its_dev_accuracy():
    from xdistill.bench.marc_dev import speed_per_size_markdown

    def row(depth, b32, pct=None):
        r = {"depth": depth, "layers": list(range(depth)), "params_ratio": 0.15 + depth / 100}
        r |= {"speedup_b32": b32, "speedup_b32_std": 0.1, "speedup_b1": b32 - 1, "speedup_b1_std": 0.2}
        return r | ({"dev_pct_of_teacher": pct} if pct else {})

    results = {
        "machine": {"cpu": "x", "torch": "2", "commit": "abcdef0123", "dirty": False},
        "protocol": "interleaved",
        "target": ">= 5x",
        "rows": [row(2, 6.04, {"es": 96.11, "zh": 98.8}), row(6, 1.97)],
    }
    table = speed_per_size_markdown(results)
    assert "commit abcdef0. Target: >= 5x." in table
    assert "| 2 | [0, 1] | 17.0% | 6.04 ± 0.10 | 5.04 ± 0.20 | 96.1 / 98.8 |" in table
    assert table.rstrip().endswith("| 6 | [0, 1, 2, 3, 4, 5] | 21.0% | 1.97 ± 0.10 | 0.97 ± 0.20 | not trained |")
