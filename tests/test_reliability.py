"""Reliability: resume after SIGKILL equals an uninterrupted run; the same fit() on 2 processes (gloo);
checkpoints are complete or absent; checkpoints load without pickles of arbitrary objects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "tests" / "jobs" / "fit_job.py"


def _env() -> dict[str, str]:
    return {**os.environ, "XDISTILL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _gloo_env() -> dict[str, str]:
    # The two-process tests are about ranks (gloo on the CPU), not GPUs: on a one-GPU machine two ranks
    # cannot share the GPU (see the test of that error below).
    return {**_env(), "CUDA_VISIBLE_DEVICES": ""}


def _run(out: Path, *extra: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(JOB), str(out), *extra], capture_output=True, text=True, timeout=300, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    straight = tmp_path / "straight"
    _run(straight)

    killed = tmp_path / "killed"
    killed.mkdir()
    # Step 14 is the 5th batch of epoch 2 (9 batches per epoch); the newest checkpoint is at step 12.
    child = subprocess.Popen(
        [sys.executable, str(JOB), str(killed), "--pause-at", "14"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while not (killed / "reached").exists():
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the job never reached the step to kill"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not (killed / "final-rank0.safetensors").exists()
    checkpoints = sorted((killed / "run" / "checkpoints").iterdir())
    assert [json.loads((c / "checkpoint.json").read_text())["step"] for c in checkpoints] == [9, 12]

    _run(killed, "--resume")
    a, b = load_file(str(straight / "final-rank0.safetensors")), load_file(str(killed / "final-rank0.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    ra, rb = _records(straight), _records(killed)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for key in x:
            if key == "train_seconds":  # timing: carried across the resume, never equal
                assert y[key] > 0
            elif isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7), key
            else:
                assert x[key] == y[key], key
    assert not (killed / "run" / "checkpoints").exists()  # a finished run cleans its checkpoints up


def test_resume_without_a_checkpoint_starts_over(tmp_path):
    _run(tmp_path / "a", "--resume")
    _run(tmp_path / "b")
    a, b = (
        load_file(str(tmp_path / "a" / "final-rank0.safetensors")),
        load_file(str(tmp_path / "b" / "final-rank0.safetensors")),
    )
    for name in a:
        assert torch.equal(a[name], b[name])  # same seed, same machine: identical


def test_checkpoint_files_load_with_weights_only(tmp_path):
    from xdistill.distill.checkpoint import CheckpointDir

    out = tmp_path / "job"
    out.mkdir()
    child = subprocess.Popen(
        [sys.executable, str(JOB), str(out), "--pause-at", "5"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not (out / "reached").exists():
            assert child.poll() is None and time.time() < deadline
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait(timeout=30)
    state = CheckpointDir(out / "run" / "checkpoints").newest()
    assert state["step"] == 3
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.load(Path(state["path"]) / name, weights_only=True)  # no arbitrary pickles


@pytest.mark.slow
def test_two_processes_end_with_identical_parameters_and_only_rank0_writes(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(JOB), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_gloo_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = load_file(str(out / "final-rank0.safetensors")), load_file(str(out / "final-rank1.safetensors"))
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name
    assert (out / "saves-rank0.txt").read_text() != "0" and (out / "saves-rank1.txt").read_text() == "0"
    records = _records(out)
    assert len(records) == len({(r["type"], r["step"]) for r in records})  # one writer: no duplicate lines


@pytest.mark.slow
def test_torchrun_cli_runs_the_tiny_config(tmp_path, tiny_raw):
    from conftest import write_config

    path = write_config(tmp_path / "tiny.yaml", tiny_raw)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "xdistill",
            "-q",
            "run",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_gloo_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = Path(tiny_raw["run_dir"])
    assert (run / "student" / "config.json").is_file() and (run / "results.json").is_file()
    records = [json.loads(line) for line in (run / "student-logs" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == len({(r["type"], r["step"]) for r in records})


def test_a_checkpoint_carries_each_gpus_generator_and_restores_it(tmp_path, monkeypatch):
    # Dropout on a GPU draws from the GPU's generator: a resumed run must restore it too (a resumed
    # run on a lent H200 drifted from the uninterrupted one before). No GPU here, so torch.cuda is faked.
    from xdistill.distill.checkpoint import CheckpointDir, ResumableBatches
    from xdistill.distill.fit import FitResult, LengthGroupedBatches

    gpu_states = [torch.arange(8, dtype=torch.uint8), torch.arange(8, 16, dtype=torch.uint8)]
    restored: dict[int, torch.Tensor] = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.__setitem__(device, state))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    sampler = ResumableBatches(LengthGroupedBatches([1, 2, 3, 4], 2, torch.Generator().manual_seed(0)))
    sampler.start_epoch(0)
    checkpoints = CheckpointDir(tmp_path / "checkpoints")
    checkpoints.save(
        step=1,
        epoch=0,
        batch_in_epoch=1,
        model=model,
        extra_modules=[],
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        result=FitResult(steps=1, best_score=None, best_epoch=None),
        running={},
        running_n=0,
        metrics_lines=0,
    )
    checkpoints.restore(checkpoints.newest(), model, [], optimizer, scheduler, sampler)
    assert sorted(restored) == [0, 1]
    assert all(torch.equal(restored[i], gpu_states[i]) for i in (0, 1))


def test_a_launch_of_more_processes_than_gpus_says_how_many_to_start(monkeypatch):
    from xdistill import distributed
    from xdistill.errors import XdistillError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    distributed._state.cache_clear()
    try:
        with pytest.raises(XdistillError, match=r"started 2 processes .* but 1 GPU\(s\) are visible: start at most 1"):
            distributed.compute_device()
    finally:
        distributed._state.cache_clear()


def test_a_fresh_run_over_an_old_one_keeps_the_old_log_aside(tmp_path):
    _run(tmp_path / "a")
    first = (tmp_path / "a" / "run" / "metrics.jsonl").read_text()
    _run(tmp_path / "a")
    assert (tmp_path / "a" / "run" / "metrics.previous.jsonl").read_text() == first
    assert [r["step"] for r in _records(tmp_path / "a")] == [json.loads(x)["step"] for x in first.splitlines()]
