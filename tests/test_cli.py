"""End-to-end CLI runs on the tiny config, and the one-line errors users see."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from xdistill.cli import main
from xdistill.config import package_dir
from xdistill.export.runtime import load_model

from conftest import write_config


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["xdistill", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_subcommands(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "--help")
    assert code == 0
    for command in ("models", "teacher", "distill", "evaluate", "run", "demo"):
        assert command in out


@pytest.mark.slow
def test_tiny_run_end_to_end_then_skips_then_reruns_changed_stage(monkeypatch, capsys, tiny_config_path, tiny_raw):
    code, out, err = run_cli(monkeypatch, capsys, "-q", "run", str(tiny_config_path))
    assert code == 0, err
    run_dir = Path(tiny_raw["run_dir"])
    for name in (
        "teacher/model.safetensors",
        "student/model.safetensors",
        "student/tokenizer.json",
        "results.json",
        "report.md",
        "accuracy_by_language.png",
        "config.yaml",
        "student-logs/metrics.jsonl",
    ):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.bin")), "weights must be safetensors only"
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student"}
    # The reported accuracy is the saved student's: recomputed here from its own predictions on the test files.
    saved_student = load_model(run_dir / "student")
    for lang in ("en", "es", "zh"):
        metrics = results["models"]["student"]["metrics"][lang]
        with open(package_dir() / "demo_data" / f"{lang}_test.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        predicted = [p["label"] for p in saved_student.classify([r["text"] for r in rows], batch_size=64)]
        assert metrics["n"] == len(rows)
        assert metrics["accuracy"] == pytest.approx(
            100.0 * sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)
        )
        assert sum(map(sum, metrics["confusion"])) == len(rows)
        assert "agreement" in metrics
    student, teacher = results["models"]["student"], results["models"]["teacher"]
    assert student["params_total"] < teacher["params_total"]
    assert student["throughput_b32"] > 0 and teacher["latency_ms_b1"] > 0
    assert "| en (source)" in out

    # Nothing changed: every stage is skipped.
    code, out, _ = run_cli(monkeypatch, capsys, "-q", "run", str(tiny_config_path))
    assert code == 0
    assert out.count("skipping") == 3

    # A distillation setting changed: the teacher is reused, student and evaluation re-run.
    code, out, _ = run_cli(monkeypatch, capsys, "-q", "run", str(tiny_config_path), "--set", "distill.temperature=4")
    assert code == 0
    assert "[teacher] already done" in out
    assert "[student] saved" in out and "[evaluate] report" in out
    assert "temperature: 4.0" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_stages_one_by_one(monkeypatch, capsys, tiny_config_path, tiny_raw):
    code, _, err = run_cli(monkeypatch, capsys, "-q", "distill", "--config", str(tiny_config_path))
    assert code == 2
    assert "no teacher in" in err and "xdistill teacher train" in err
    assert run_cli(monkeypatch, capsys, "-q", "teacher", "train", "--config", str(tiny_config_path))[0] == 0
    assert (
        run_cli(
            monkeypatch,
            capsys,
            "-q",
            "distill",
            "--config",
            str(tiny_config_path),
            "--set",
            "distill.use_teacher=false",
            "--set",
            "distill.hidden_weight=0",
        )[0]
        == 0
    )
    code, out, _ = run_cli(
        monkeypatch, capsys, "-q", "evaluate", "--config", str(tiny_config_path), "--set", "evaluate.speed=false"
    )
    assert code == 0 and "student" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.yaml"], "error: config file not found: missing.yaml"),
        (["run", "{cfg}", "--set", "distill.temprature=3"], "did you mean 'distill.temperature'"),
        (
            ["run", "{cfg}", "--set", "teacher.path=/nonexistent/model"],
            "teacher.path: /nonexistent/model is not a Hugging Face model folder",
        ),
        (["models", "import", "bert-huge", "--out", "x"], "unknown packaged model 'bert-huge'"),
    ],
)
def test_errors_are_one_line_without_traceback(monkeypatch, capsys, tiny_config_path, args, message):
    args = [a.replace("{cfg}", str(tiny_config_path)) for a in args]
    code, _, err = run_cli(monkeypatch, capsys, "-q", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_data_file_is_reported_with_file_and_line(monkeypatch, capsys, tmp_path, tiny_raw):
    bad = tmp_path / "train.csv"
    bad.write_text("id,text,label\n1,fine,positive\n2,bad,maybe\n", encoding="utf-8")
    tiny_raw["data"]["train"] = str(bad)
    cfg = write_config(tmp_path / "c.yaml", tiny_raw)
    code, _, err = run_cli(monkeypatch, capsys, "-q", "teacher", "train", "--config", str(cfg))
    assert code == 2
    assert "train.csv, line 3" in err and "maybe" in err


def test_module_entry_point_and_unknown_command():
    proc = subprocess.run([sys.executable, "-m", "xdistill", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "No such command" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_marc_keep_rows_from_a_file_that_is_not_a_results_file_is_one_line(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "other.json"
    bad.write_text('{"rows": [{"name": "teacher"}]}')
    code, _, err = run_cli(monkeypatch, capsys, "bench", "marc", "--keep-rows-from", str(bad))
    assert code == 2
    assert f"--keep-rows-from {bad}: not a `bench marc` results file" in err and "Traceback" not in err
