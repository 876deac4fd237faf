"""The measurement protocol the benchmarks rely on: a no-distillation baseline that differs from the
distilled student in the teacher signal only, few-label runs that select on few labels, speed timed
interleaved on inputs from every language, and results that name the commit they ran on."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from xdistill.config import load_config
from xdistill.data.hygiene import first_per_label
from xdistill.data.splits import load_dev, load_test
from xdistill.errors import ConfigError
from xdistill.evaluate.run_eval import classifier_speeds, code_version, speed_sample
from xdistill.evaluate.size_speed import measure_speeds, speedups
from xdistill.layout import student_dir, teacher_dir
from xdistill.pipeline import run_all, run_stage

from conftest import write_config


def _student_record(run_dir: Path) -> dict:
    return json.loads((run_dir / ".stages" / "student.json").read_text())


def test_no_distillation_baseline_keeps_the_vocabulary_and_the_steps_of_the_distilled_student(tmp_path, tiny_raw):
    kd = write_config(tmp_path / "kd.yaml", {**tiny_raw, "student": {**tiny_raw["student"], "trim_vocab": True}})
    run_all(load_config(kd), echo=lambda _: None, progress=False)
    nokd_cfg = load_config(kd, ["distill.use_teacher=false", "distill.hidden_weight=0"])
    run_stage(nokd_cfg, "student", force=True, echo=lambda _: None, progress=False)
    nokd_tok = AutoTokenizer.from_pretrained(Path(nokd_cfg.run_dir) / "student")
    zh_text = (
        (Path(__file__).resolve().parents[1] / "src/xdistill/demo_data/zh_unlabelled.txt")
        .read_text(encoding="utf-8")
        .splitlines()[0]
    )
    pieces = nokd_tok.tokenize(zh_text)
    assert nokd_tok.unk_token not in pieces, pieces  # Chinese is in its vocabulary though it never trains on it


def test_no_distillation_baseline_trains_as_many_steps(tmp_path, tiny_raw):
    kd = write_config(tmp_path / "kd.yaml", tiny_raw)
    run_all(load_config(kd), echo=lambda _: None, progress=False)
    kd_steps = _student_record(Path(tiny_raw["run_dir"]))["steps"]
    nokd = load_config(kd, ["distill.use_teacher=false", "distill.hidden_weight=0"])
    run_stage(nokd, "student", force=True, echo=lambda _: None, progress=False)
    nokd_steps = _student_record(Path(tiny_raw["run_dir"]))["steps"]
    # 200 English reviews alone would be 7 batches an epoch; the distilled student also reads 300
    # unlabelled ones: the baseline takes its 2 x 16 steps too.
    assert kd_steps == nokd_steps == 2 * 16


def test_few_label_runs_select_on_few_labels_per_class(tmp_path, tiny_raw):
    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_raw), ["data.dev_per_class=3"])
    dev = load_dev(cfg)
    for lang, examples in dev.items():
        labels = [e.label for e in examples]
        assert sorted(labels.count(x) for x in set(labels)) == [3, 3], lang
    assert first_per_label(["a", "b"], None) == ["a", "b"]


def test_speed_inputs_come_from_every_language_in_turn():
    test = {
        "en": [f"en{i}" for i in range(40)],
        "es": [f"es{i}" for i in range(40)],
        "zh": [f"zh{i}" for i in range(2)],
    }
    sample = speed_sample(test, n=8)
    assert sample == ["en0", "es0", "zh0", "en1", "es1", "zh1", "en2", "es2"]


def test_interleaved_timing_alternates_models_and_keeps_every_sample():
    calls: list[str] = []

    def runner(name: str, seconds: float):
        def run(bs: int) -> None:
            calls.append(name)
            time.sleep(seconds)

        return run

    speeds = measure_speeds(
        {"teacher": runner("teacher", 0.004), "student": runner("student", 0.001)},
        batch_sizes=(32,),
        warmup=1,
        repeats=5,
    )
    timed = calls[2:]  # after one warm-up call each
    rounds = [timed[i : i + 2] for i in range(0, len(timed), 2)]
    assert len(rounds) == 5 and all(sorted(r) == ["student", "teacher"] for r in rounds), timed  # A, B in every round
    assert rounds[0] != rounds[1]  # the order rotates, so neither always runs first
    assert len(speeds["teacher"]["samples_ms_b32"]) == 5
    assert speeds["teacher"]["latency_ms_b32"] > speeds["student"]["latency_ms_b32"]
    ratio = speedups(speeds, "teacher", (32,))["student"]["speedup_b32"]
    assert ratio == speeds["teacher"]["latency_ms_b32"] / speeds["student"]["latency_ms_b32"] > 1.5


def test_warm_up_can_cover_every_batch_1_input_before_timing():
    # A runner walking through 4 inputs of different lengths warms up on all 4 at batch 1: a
    # runtime that compiles per shape (OpenVINO) would otherwise be timed compiling.
    seen: list[tuple[int, int]] = []
    lengths = iter(range(1000))

    def run(bs: int) -> None:
        seen.append((bs, next(lengths) % 4 if bs == 1 else 0))

    measure_speeds({"m": run}, batch_sizes=(1, 32), warmup={1: 4, 32: 2}, repeats=3)
    warm_b1 = [x for bs, x in seen[:6] if bs == 1]
    assert sorted(warm_b1) == [0, 1, 2, 3] and [bs for bs, _ in seen[4:6]] == [32, 32]
    assert len(seen) == 4 + 2 + 3 * 2
    with pytest.raises(ValueError, match="warmup >= 0"):
        measure_speeds({"m": run}, batch_sizes=(1,), warmup={1: -1})


def test_settle_times_each_call_right_after_an_untimed_call_of_the_same_model():
    calls: list[str] = []
    measure_speeds(
        {"a": lambda bs: calls.append("a"), "b": lambda bs: calls.append("b")},
        batch_sizes=(32,),
        warmup=0,
        repeats=2,
        settle=1,
    )
    # Models still alternate, two calls at a time (the first untimed): a a b b, then rotated.
    assert calls == ["a", "a", "b", "b", "b", "b", "a", "a"]


def test_results_name_the_commit_they_ran_on():
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert code_version()["commit"] == head.stdout.strip()


def test_dirty_means_changed_code_not_a_benchmark_output(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True
        )

    for name in ("src/code.py", "bench/results/marc.json", "docs/benchmarks.md", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    assert code_version(tmp_path)["dirty"] is False
    # A benchmark's own results (an earlier run's in the same checkout) do not make its code dirty.
    (tmp_path / "bench/results/marc.json").write_text("1\n")
    (tmp_path / "docs/benchmarks.md").write_text("1\n")
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "src/code.py").write_text("1\n")
    assert code_version(tmp_path)["dirty"] is True


def test_a_run_times_teacher_and_student_in_one_window_and_the_ratio_follows(tmp_path, tiny_raw):
    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_raw))
    results = run_all(cfg, echo=lambda _: None, progress=False)
    teacher, student = results["models"]["teacher"], results["models"]["student"]
    assert len(teacher["speed_samples_ms"]["b32"]) == len(student["speed_samples_ms"]["b32"]) == cfg.evaluate.repeats
    assert results["ratios"]["speedup_b32"] == student["throughput_b32"] / teacher["throughput_b32"]
    speeds = classifier_speeds(cfg, {"teacher": teacher_dir(cfg), "student": student_dir(cfg)}, load_test(cfg))
    ratio = speedups(speeds, "teacher")["student"]
    assert ratio["speedup_b32"] == speeds["teacher"]["latency_ms_b32"] / speeds["student"]["latency_ms_b32"]


def test_teacher_kl_is_zero_for_the_teacher_and_grows_as_the_student_departs():
    from xdistill.distill.classify import teacher_kl

    teacher = [[2.0, -1.0], [0.0, 3.0]]
    assert teacher_kl(teacher, teacher) == pytest.approx(0.0, abs=1e-12)
    near, far = teacher_kl(teacher, [[1.5, -1.0], [0.0, 2.5]]), teacher_kl(teacher, [[-2.0, 1.0], [3.0, 0.0]])
    assert 0 < near < far


def test_students_can_select_on_the_dev_kl_to_the_teacher(tmp_path, tiny_raw):
    raw = {**tiny_raw, "train": {**tiny_raw["train"], "select_metric": "teacher_kl"}}
    cfg = load_config(write_config(tmp_path / "kl.yaml", raw))
    run_all(cfg, echo=lambda _: None, progress=False)
    records = [
        json.loads(line)
        for line in (Path(cfg.run_dir) / "student-logs" / "metrics.jsonl").read_text().splitlines()
        if '"eval"' in line
    ]
    kls = [r["dev/en/teacher_kl"] for r in records]
    assert all(k >= 0 for k in kls) and "dev/targets/teacher_kl" in records[0]
    assert _student_record(Path(cfg.run_dir))["best_dev"] == pytest.approx(min(kls))
    teacher_kl_raw = {**tiny_raw, "teacher": {**tiny_raw["teacher"], "train": {"select_metric": "teacher_kl"}}}
    with pytest.raises(
        ConfigError, match=r"teacher.train.select_metric must be one of accuracy, macro_f1, got 'teacher_kl'"
    ):
        load_config(write_config(tmp_path / "bad.yaml", teacher_kl_raw))


def test_a_result_names_the_cpu_kernels_it_ran_on():
    """ "AMD EPYC" names more than one CPU; the kernel level PyTorch dispatched to (AVX2, AVX512, ...)
    and the CPU family/model say whether two results ran the same arithmetic."""
    import torch

    from xdistill.evaluate.run_eval import machine_info

    info = machine_info()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and info["cpu_capability"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "cpu family" in cpuinfo.read_text():  # x86 Linux
        assert info["cpu_model"].startswith("family ")
