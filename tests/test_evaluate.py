"""Evaluation building blocks: metrics, size/speed, report files."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from xdistill.evaluate.report import comparison_table, write_report
from xdistill.evaluate.size_speed import count_parameters, disk_mb, measure_speed
from xdistill.metrics.classification import agreement, classification_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- metrics


def test_classification_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], num_labels=2)
    # class 0: tp=1 fp=0 fn=1 -> P=1, R=1/2, F1 = 2*1*0.5/1.5 = 2/3
    # class 1: tp=2 fp=1 fn=0 -> P=2/3, R=1, F1 = 2*(2/3)/(5/3) = 4/5
    # macro = (2/3 + 4/5) / 2 = 11/15 = 73.33%
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(75.0)
    assert m["macro_f1"] == pytest.approx(100 * 11 / 15)
    assert m["confusion"] == [[1, 1], [0, 2]]
    assert "mae" not in m


def test_macro_f1_averages_over_all_labels():
    # Label 2 never occurs: it still counts (as F1 0), so a perfect score on 0/1 gives 2/3.
    m = classification_metrics([0, 1], [0, 1], num_labels=3)
    assert m["accuracy"] == pytest.approx(100.0)
    assert m["macro_f1"] == pytest.approx(100 * 2 / 3)
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_mae_only_when_ordinal():
    m = classification_metrics([0, 2, 4, 1], [1, 2, 2, 1], num_labels=5, ordinal=True)
    assert m["mae"] == pytest.approx((1 + 0 + 2 + 0) / 4)
    assert isinstance(m["mae"], float)
    json.dumps(m)  # plain Python numbers only


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [([0, 1], [0], "2 items"), ([], [], "empty"), ([0, 3], [0, 1], "outside 0..1")],
)
def test_classification_metrics_rejects_bad_input(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y_true, y_pred, num_labels=2)


def test_agreement():
    assert agreement([0, 1, 2, 1], [0, 1, 0, 0]) == pytest.approx(50.0)
    assert agreement([1, 1], [1, 1]) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        agreement([0, 1], [0])


# ---------------------------------------------------------------- size and speed


def test_count_parameters_embedding_and_tied():
    emb = nn.Embedding(10, 4)  # 40
    pos = nn.Embedding(6, 4)  # 24
    head = nn.Linear(4, 10)  # 40 weight + 10 bias
    model = nn.Sequential(emb, pos, nn.Linear(4, 4), head)  # hidden: 16 + 4
    assert count_parameters(model) == {"params_total": 40 + 24 + 20 + 50, "params_embedding": 64}

    head.weight = emb.weight  # tie the output layer to the word embeddings
    assert count_parameters(model) == {"params_total": 40 + 24 + 20 + 10, "params_embedding": 64}


def test_disk_mb_counts_all_files(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1_500_000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tokenizer.json").write_bytes(b"y" * 250_000)
    assert disk_mb(tmp_path) == pytest.approx(1.75)
    assert disk_mb(tmp_path / "model.safetensors") == pytest.approx(1.5)
    with pytest.raises(FileNotFoundError):
        disk_mb(tmp_path / "missing")


def test_measure_speed_structure_and_threads():
    calls = []

    def run_batch(bs):
        calls.append((bs, torch.get_num_threads(), torch.is_inference_mode_enabled()))
        time.sleep(0.002 if bs == 1 else 0.004)

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    out = measure_speed(run_batch, batch_sizes=(1, 32), threads=target, warmup=1, repeats=3)

    assert torch.get_num_threads() == before
    assert len(calls) == 2 * (1 + 3)
    assert all(threads == target and inference for _, threads, inference in calls)
    assert set(out) == {"latency_ms_b1", "throughput_b1", "latency_ms_b32", "throughput_b32", "threads", "repeats"}
    assert out["threads"] == target and out["repeats"] == 3
    # sleep() only promises a lower bound; the upper bounds allow for a loaded machine.
    assert 1.5 < out["latency_ms_b1"] < 200
    assert 3.5 < out["latency_ms_b32"] < 400
    assert 32 / 0.4 < out["throughput_b32"] < 32 / 0.0035
    assert out["throughput_b1"] == pytest.approx(1000 / out["latency_ms_b1"])


def test_measure_speed_restores_threads_on_error():
    before = torch.get_num_threads()

    def boom(bs):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError):
        measure_speed(boom, threads=1 if before != 1 else 2)
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------- report


def _results():
    def lang(n, acc, f1, conf, **extra):
        return {"n": n, "accuracy": acc, "macro_f1": f1, "confusion": conf, **extra}

    return {
        "task": "classification",
        "labels": ["negative", "positive"],
        "languages": ["en", "es", "zh"],
        "source_language": "en",
        "models": {
            "teacher": {
                "path": "runs/teacher",
                "params_total": 117_653_760,
                "params_embedding": 96_000_000,
                "disk_mb": 470.6,
                "latency_ms_b1": 24.0,
                "throughput_b32": 180.0,
                "metrics": {
                    "en": lang(200, 91.5, 91.3, [[92, 8], [9, 91]]),
                    "es": lang(200, 88.5, 88.4, [[90, 10], [13, 87]]),
                    "zh": lang(200, 84.0, 83.9, [[85, 15], [17, 83]]),
                },
            },
            "student": {
                "path": "runs/student",
                "params_total": 29_413_440,
                "params_embedding": 24_000_000,
                "disk_mb": 117.7,
                "latency_ms_b1": 6.0,
                "throughput_b32": 720.0,
                "metrics": {
                    "en": lang(200, 89.5, 89.4, [[90, 10], [11, 89]], agreement=93.5),
                    "es": lang(200, 86.0, 85.9, [[88, 12], [16, 84]], agreement=90.5),
                    # no zh for the student: the table and plots must cope
                },
            },
        },
        "config": {"ignored": True},
    }


def test_comparison_table_contains_the_numbers():
    table = comparison_table(_results())
    header = table.splitlines()[0]
    for col in ["teacher acc", "teacher F1", "student acc", "student F1", "student agree.", "student/teacher acc"]:
        assert col in header
    en = next(line for line in table.splitlines() if line.startswith("| en (source)"))
    for value in ["200", "91.5", "91.3", "89.5", "89.4", "93.5", f"{100 * 89.5 / 91.5:.1f}%"]:
        assert value in en
    zh = next(line for line in table.splitlines() if line.startswith("| zh"))
    assert "84.0" in zh and "–" in zh
    student = next(line for line in table.splitlines() if line.startswith("| student"))
    for value in ["29.4", "24.0", "117.7", "6.0", "720.0", "0.25×", "4.0×"]:
        assert value in student
    assert "117.7" in next(line for line in table.splitlines() if line.startswith("| teacher"))


def test_comparison_table_without_teacher():
    results = _results()
    del results["models"]["teacher"]
    table = comparison_table(results)
    assert "/teacher" not in table and "size ×" not in table
    assert "89.5" in table


def test_write_report(tmp_path):
    import matplotlib.pyplot as plt

    results = _results()
    paths = write_report(results, tmp_path / "out")

    expected = {
        "results",
        "report",
        "accuracy_by_language",
        "confusion_teacher_en",
        "confusion_teacher_es",
        "confusion_teacher_zh",
        "confusion_student_en",
        "confusion_student_es",
    }
    assert set(paths) == expected
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths.values())
    for name, path in paths.items():
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC, name
    assert json.loads(paths["results"].read_text(encoding="utf-8")) == results

    report = paths["report"].read_text(encoding="utf-8")
    assert "runs/teacher" in report and "runs/student" in report
    assert "(accuracy_by_language.png)" in report and "(confusion_student_es.png)" in report
    assert "91.5" in report and "0.25×" in report
    assert not list((tmp_path / "out").glob("*.tmp"))  # atomic writes left no temp files
    assert plt.get_fignums() == []  # no figures left open


def test_same_pieces_counts_texts_cut_as_the_teacher_cuts_them():
    from xdistill.evaluate.run_eval import add_same_pieces

    teacher = {"en": [("▁tried", "."), ("▁good",)], "es": [("▁hola",)]}
    student = {"en": [("▁tri", "ed", "."), ("▁good",)], "es": [("▁hola",)]}
    entry = {"metrics": {"en": {}, "es": {}}}
    add_same_pieces(entry, student, teacher)
    assert entry["metrics"]["en"]["same_pieces"] == pytest.approx(50.0)
    assert entry["metrics"]["es"]["same_pieces"] == pytest.approx(100.0)
    results = _results()
    results["models"]["student"]["metrics"]["en"]["same_pieces"] = 62.5
    table = comparison_table(results)
    assert "student same pieces" in table.splitlines()[0]
    assert "62.5" in next(line for line in table.splitlines() if line.startswith("| en (source)"))
