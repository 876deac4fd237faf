"""Checkpoints that resume a run exactly, and the batch samplers that make that possible.

A checkpoint holds the student (and loss-module) weights, the optimizer and scheduler states, the
RNG states (python, numpy, torch) and the data position: the sampler's generator state at the
start of the current epoch plus the number of batches already taken. Resuming regenerates that
epoch's batch order from the saved generator state and skips the batches already trained on, so
the resumed run sees exactly the batches, dropout masks and learning rates the uninterrupted run
would have seen.

Every checkpoint is written into a temporary folder renamed into place, so a kill leaves either a
complete checkpoint or none; the newest is found from the ``checkpoint.json`` inside (the folder
name is only for people). Weights are safetensors; optimizer and scheduler states are loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from ..io_utils import atomic_dir, atomic_write_json

log = logging.getLogger(__name__)

KEEP = 2  # the newest checkpoints kept while training (the last one may be mid-write when killed)


class ShuffledBatches(torch.utils.data.Sampler[list[int]]):
    """Random batches of ``batch_size`` indices, drawn from ``generator``."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size]


class ResumableBatches(torch.utils.data.Sampler[list[int]]):
    """Wraps a generator-driven batch sampler; remembers each epoch's starting generator state."""

    def __init__(self, inner):
        self.inner = inner
        self.generator: torch.Generator = inner.generator
        self._epoch_start: torch.Tensor | None = None
        self._restored: tuple[int, torch.Tensor] | None = None
        self._batches: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.inner)

    def start_epoch(self, epoch: int, skip: int = 0) -> None:
        if self._restored is not None and self._restored[0] == epoch:
            self.generator.set_state(self._restored[1])
            self._restored = None
        self._epoch_start = self.generator.get_state()
        self._batches = list(self.inner)[skip:]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches

    def state(self, batch_in_epoch: int) -> torch.Tensor:
        # At an epoch boundary the current state is the next epoch's starting state.
        return self.generator.get_state() if batch_in_epoch == 0 or self._epoch_start is None else self._epoch_start

    def restore(self, epoch: int, generator_state: torch.Tensor) -> None:
        self._restored = (epoch, generator_state)


class ShardedBatches(torch.utils.data.Sampler[list[int]]):
    """Each global batch cut into ``world`` parts, part ``rank`` for this process.

    The global batch (and so the averaged gradient) is the same whatever the number of processes.
    A batch smaller than ``world`` repeats examples so no process gets an empty one.
    """

    def __init__(self, sampler, world: int, rank: int):
        self.sampler, self.world, self.rank = sampler, world, rank

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            if self.world == 1:
                yield batch
            elif len(batch) >= self.world:
                yield batch[self.rank :: self.world]
            else:
                yield [batch[self.rank % len(batch)]]


class CheckpointDir:
    def __init__(self, root: Path):
        self.root = Path(root)

    def save(
        self,
        *,
        step: int,
        epoch: int,
        batch_in_epoch: int,
        model: nn.Module,
        extra_modules: Sequence[nn.Module],
        optimizer,
        scheduler,
        sampler: ResumableBatches,
        result,
        running: dict[str, float],
        running_n: int,
        metrics_lines: int,
    ) -> Path:
        folder = self.root / f"step-{step:09d}"
        with atomic_dir(folder) as tmp:
            save_model(model, str(tmp / "model.safetensors"))
            for i, module in enumerate(extra_modules):
                save_model(module, str(tmp / f"extra-{i}.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            save_file(
                {"torch": torch.get_rng_state(), "sampler": sampler.state(batch_in_epoch), **_cuda_rng_states()},
                str(tmp / "rng.safetensors"),
            )
            np_state = np.random.get_state()
            atomic_write_json(
                tmp / "checkpoint.json",
                {
                    "step": step,
                    "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch,
                    "best_score": result.best_score,
                    "best_epoch": result.best_epoch,
                    "also_best": result.also_best,
                    "train_seconds": result.train_seconds,
                    "running": running,
                    "running_n": running_n,
                    "metrics_lines": metrics_lines,
                    "python_random": _jsonable(random.getstate()),
                    "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                },
            )
        self._prune()
        return folder

    def _complete(self) -> list[tuple[int, Path, dict[str, Any]]]:
        found = []
        if not self.root.is_dir():
            return found
        for folder in self.root.iterdir():
            meta = folder / "checkpoint.json"
            if folder.name.startswith(".") or not meta.is_file():
                continue  # a temporary folder a kill left behind, or not a checkpoint
            try:
                state = json.loads(meta.read_text(encoding="utf-8"))
            except ValueError:
                continue
            found.append((int(state["step"]), folder, state))
        return sorted(found, key=lambda item: item[0])

    def newest(self) -> dict[str, Any] | None:
        found = self._complete()
        if not found:
            return None
        step, folder, state = found[-1]
        return {**state, "path": str(folder)}

    def restore(
        self,
        state: dict[str, Any],
        model: nn.Module,
        extra_modules: Sequence[nn.Module],
        optimizer,
        scheduler,
        sampler: ResumableBatches,
    ) -> None:
        folder = Path(state["path"])
        load_model(model, str(folder / "model.safetensors"))
        for i, module in enumerate(extra_modules):
            load_model(module, str(folder / f"extra-{i}.safetensors"))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        rng = load_file(str(folder / "rng.safetensors"))
        torch.set_rng_state(rng["torch"])
        _restore_cuda_rng_states(rng)
        sampler.restore(state["epoch"], rng["sampler"])
        random.setstate(_tuples(state["python_random"]))
        kind, keys, *rest = state["numpy_random"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))

    def _prune(self) -> None:
        for _, folder, _ in self._complete()[:-KEEP]:
            shutil.rmtree(folder, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _cuda_rng_states() -> dict[str, torch.Tensor]:
    """Each GPU's generator (dropout on a GPU draws from it, not from the CPU's): without it a run
    resumed on a GPU drops other units than the uninterrupted run would have."""
    if not torch.cuda.is_available():
        return {}
    return {f"cuda{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}


def _restore_cuda_rng_states(rng: dict[str, torch.Tensor]) -> None:
    if not torch.cuda.is_available():
        return  # a checkpoint written on a GPU resumed on the CPU: the CPU generator is restored above
    for name, state in rng.items():
        if name.startswith("cuda") and int(name[4:]) < torch.cuda.device_count():
            torch.cuda.set_rng_state(state, device=int(name[4:]))
