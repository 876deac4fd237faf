"""Model size (parameters, bytes on disk) and CPU speed, measured the same way for every model."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn


def count_parameters(model: nn.Module) -> dict:
    """``{"params_total", "params_embedding"}`` for ``model``.

    Embedding parameters are those of every ``nn.Embedding`` submodule (word, position, token
    type). A parameter shared by several modules (e.g. an output layer tied to the word
    embeddings) is counted once, and counts as embedding if any embedding module holds it.
    """
    # model.parameters() already skips repeats of the same tensor object.
    total = sum(p.numel() for p in model.parameters())
    embedding = {
        id(p): p.numel()
        for module in model.modules()
        if isinstance(module, nn.Embedding)
        for p in module.parameters(recurse=False)
    }
    return {"params_total": int(total), "params_embedding": int(sum(embedding.values()))}


def disk_mb(folder: str | Path) -> float:
    """Size in MB (10**6 bytes) of *all* files under ``folder``, recursively.

    All files, not only the weights: the tokenizer (vocabulary, merges, SentencePiece model)
    and configs ship with the model and can be a large share of a small student. Symlinks are
    followed, so a Hugging Face cache snapshot counts the blobs it points at. ``folder`` may
    also be a single file.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder to measure")
    files = [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def measure_speed(
    run_batch: Callable[[int], None],
    *,
    batch_sizes: Iterable[int] = (1, 32),
    threads: int = 2,
    warmup: int = 2,
    repeats: int = 5,
) -> dict:
    """Time ``run_batch(bs)`` for each batch size on ``threads`` CPU threads.

    ``run_batch`` builds and runs one batch of ``bs`` inputs however the model needs it, so
    classifiers, encoders and translators are all measured alike. Each batch size gets
    ``warmup`` untimed calls, then ``repeats`` timed ones; the median is reported because a
    single slow run (GC, a page fault) should not move the number.

    Returns ``{"latency_ms_b{bs}": median ms per call, "throughput_b{bs}": inputs per
    second, ...}`` for every ``bs``, plus ``"threads"`` and ``"repeats"``.
    """
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, threads >= 1; got {repeats}, {warmup}, {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            out = {}
            for bs in batch_sizes:
                median_s = _median_seconds(run_batch, bs, warmup, repeats)
                out[f"latency_ms_b{bs}"] = 1000.0 * median_s
                out[f"throughput_b{bs}"] = bs / median_s if median_s > 0 else float("inf")
    finally:
        # Thread count is process-wide; leaking it would slow (or skew) whatever runs next.
        torch.set_num_threads(before)
    return {**out, "threads": threads, "repeats": repeats}


def _median_seconds(run_batch: Callable[[int], None], bs: int, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run_batch(bs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_batch(bs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def steady_allocator() -> bool:
    """Keep large freed buffers in the heap (glibc): by default a buffer over the mmap threshold (a
    batch of 32 activations is ~25 MB) goes back to the OS when freed and is page-faulted in again on
    the next call, and another runtime's frees in the same window reset glibc's adaptive threshold,
    so a PyTorch model's batch-32 time varied 2x with what ran before it. A long-running server
    reaches this steady state by itself. Returns whether the setting took (glibc only)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, limit = -1, -3, 32 * 1024 * 1024  # glibc's largest mmap threshold
    return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, 4 * limit))


def measure_speeds(
    runners: Mapping[str, Callable[[int], None]],
    *,
    batch_sizes: Iterable[int] = (1, 32),
    threads: int = 2,
    warmup: int | Mapping[int, int] = 2,
    repeats: int = 5,
    settle: int = 0,
) -> dict[str, dict]:
    """Time several models in one window, interleaved: every repeat runs one timed call of each model
    in turn (A, B, A, B, ...; the order rotates each repeat), so a burst of machine noise or a
    frequency change hits all of them alike and their ratio stays meaningful on a shared machine.
    Large buffers stay in the heap meanwhile (``steady_allocator``), so a model's time does not
    depend on which runtime freed memory before it.

    ``warmup``: untimed calls per model and batch size, or ``{batch size: calls}``. A runner that walks
    through inputs of different lengths should warm up on every one of them: runtimes that compile
    per input shape (OpenVINO) are otherwise timed compiling.

    ``settle``: untimed calls of a model right before each of its timed calls. Interleaving means the
    model timed before this one has just filled the caches with its own weights; a small int8 model
    then reads its weights from memory, which it would not do when served alone (OpenVINO int8 at
    batch 1: 1.7-2.4 ms in the window, 1.3 ms alone). ``settle=1`` times every call with the model's
    own weights in cache, and the models still alternate every few milliseconds.

    Returns, per model name, what ``measure_speed`` returns plus ``samples_ms_b{bs}`` (every timed
    call) and ``iqr_ms_b{bs}`` (the spread between the 25th and 75th percentile).
    """
    batch_sizes = list(batch_sizes)
    warm = dict(warmup) if isinstance(warmup, Mapping) else {bs: warmup for bs in batch_sizes}
    if repeats < 1 or min(warm.get(bs, 0) for bs in batch_sizes) < 0 or threads < 1 or settle < 0:
        raise ValueError(
            f"need repeats >= 1, warmup >= 0, threads >= 1, settle >= 0; got {repeats}, {warmup}, {threads}, {settle}"
        )
    steady_allocator()
    names = list(runners)
    samples = {name: {bs: [] for bs in batch_sizes} for name in names}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for name in names:
                for bs in batch_sizes:
                    for _ in range(warm.get(bs, 0)):
                        runners[name](bs)
            for r in range(repeats):
                order = names[r % len(names) :] + names[: r % len(names)]
                for bs in batch_sizes:
                    for name in order:
                        for _ in range(settle):
                            runners[name](bs)
                        start = time.perf_counter()
                        runners[name](bs)
                        samples[name][bs].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    out: dict[str, dict] = {}
    for name in names:
        entry: dict = {"threads": threads, "repeats": repeats}
        for bs in batch_sizes:
            times = samples[name][bs]
            median_s = statistics.median(times)
            entry[f"latency_ms_b{bs}"] = 1000.0 * median_s
            entry[f"throughput_b{bs}"] = bs / median_s if median_s > 0 else float("inf")
            entry[f"samples_ms_b{bs}"] = [round(1000.0 * t, 4) for t in times]
            q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
            entry[f"iqr_ms_b{bs}"] = 1000.0 * (q[2] - q[0])
        out[name] = entry
    return out


def speed_record(timing: Mapping[str, Any]) -> dict[str, Any]:
    """What a report keeps of one model's ``measure_speeds`` entry (batch 1 and 32): the medians and
    the spread of every timed call."""
    return {
        "latency_ms_b1": timing["latency_ms_b1"],
        "latency_ms_b32": timing["latency_ms_b32"],
        "throughput_b32": timing["throughput_b32"],
        "speed_threads": timing["threads"],
        "speed_repeats": timing["repeats"],
        "speed_samples_ms": {"b1": timing["samples_ms_b1"], "b32": timing["samples_ms_b32"]},
        "speed_iqr_ms": {"b1": timing["iqr_ms_b1"], "b32": timing["iqr_ms_b32"]},
    }


def speedups(speeds: Mapping[str, dict], reference: str, batch_sizes: Iterable[int] = (1, 32)) -> dict[str, dict]:
    """``reference``'s median time over each other model's, per batch size (2.0 = twice as fast),
    from timings taken in one interleaved window (``measure_speeds``)."""
    out = {}
    for name, entry in speeds.items():
        if name == reference:
            continue
        out[name] = {
            f"speedup_b{bs}": speeds[reference][f"latency_ms_b{bs}"] / entry[f"latency_ms_b{bs}"] for bs in batch_sizes
        }
    return out
