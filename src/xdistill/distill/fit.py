"""The one training loop every task uses (teacher fine-tuning, every student, every recipe).

A recipe supplies the data and a ``step_fn(batch) -> {"loss": ..., part: ...}``; the loop owns
the optimiser (AdamW), warm-up + linear decay, gradient clipping, per-epoch evaluation on dev
sets, best-checkpoint selection, tqdm progress and ``metrics.jsonl``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..config import TrainConfig
from ..io_utils import atomic_write_text
from ..models.batches import to_device
from .checkpoint import CheckpointDir, ResumableBatches, ShardedBatches, ShuffledBatches

log = logging.getLogger(__name__)

# `--resume auto` sets this for the whole command, so every fit() in it continues its checkpoints
# (a flag, not a config key: resuming must not change a run's settings hash).
RESUME: contextvars.ContextVar[bool] = contextvars.ContextVar("xdistill_resume", default=False)

# Metrics where lower is better; everything else (accuracy, F1, agreement) is maximised.
LOWER_IS_BETTER = {"mae", "loss", "mse", "teacher_kl"}


@dataclass
class FitResult:
    steps: int
    best_score: float | None
    best_epoch: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    also_best: dict[str, dict[str, float]] = field(default_factory=dict)
    # Seconds spent in training steps (dev evaluations left out; carried across a resume): the
    # x axis of a learning curve, so methods compare at equal training time.
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Random batches of similar-length examples.

    Padding to the longest example in a batch wastes most of the compute on varied-length text
    (reviews run from 5 to 500 tokens). Shuffle, cut into windows of 50 batches, sort each window
    by length, cut into batches, shuffle the batch order: batches stay random, padding drops.
    """

    WINDOW_BATCHES = 50

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        window = self.batch_size * self.WINDOW_BATCHES
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


def _param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    # Biases and LayerNorm weights are not decayed (standard BERT fine-tuning practice).
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fit(
    model: nn.Module,
    train_data: Dataset,
    collate_fn: Callable[[list], dict],
    step_fn: Callable[[dict, nn.Module], dict[str, torch.Tensor]],
    *,
    cfg: TrainConfig,
    seed: int,
    run_dir: str | Path,
    evaluate_fn: Callable[[], dict[str, float]] | None = None,
    select_key: str | None = None,
    save_fn: Callable[[], None] | None = None,
    also_select: dict[str, tuple[str, Callable[[], None]]] | None = None,
    extra_modules: Iterable[nn.Module] = (),
    lengths: Sequence[int] | None = None,
    progress: bool = True,
    desc: str = "train",
    resume: bool | None = None,
) -> FitResult:
    """Train ``model`` (and any loss modules with parameters, e.g. projections) on ``train_data``.

    ``step_fn(batch, model)`` returns ``{"loss": ..., part: ...}``; it must run the student through
    the ``model`` it is given (under several processes that is the DDP-wrapped student, whose
    forward synchronises gradients). ``evaluate_fn`` returns flat metrics like ``{"en/accuracy":
    91.2}``; after every epoch the model is evaluated on the main process and, when ``select_key``
    improves, ``save_fn`` saves it. Without a dev set the last model is saved. ``also_select`` maps
    a name to (metric key, save function) for further selections, e.g. a copy chosen on
    target-language dev sets. With ``lengths`` (tokens per example) and ``train.group_by_length``,
    batches hold examples of similar length.

    Runs unchanged under ``torchrun`` / ``accelerate launch``: batches are sharded across
    processes, only the main process writes files. A checkpoint is written at every epoch end
    (and every ``train.checkpoint_every`` steps); with ``resume`` (default: ``--resume auto``) the
    newest complete one is continued, and the run ends as an uninterrupted one would.
    """
    from accelerate import Accelerator

    run_dir = Path(run_dir)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = ResumableBatches(
        LengthGroupedBatches(lengths, cfg.batch_size, generator)
        if lengths is not None and cfg.group_by_length
        else ShuffledBatches(len(train_data), cfg.batch_size, generator)
    )
    steps_per_epoch = len(sampler)
    if steps_per_epoch == 0:
        raise ValueError("no training examples: check the data section of the config")
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    # Loss modules with weights (projections) live beside the student; the student itself is
    # placed by accelerator.prepare below.
    extra_modules = [m.to(accelerator.device) for m in extra_modules]
    modules = [model, *extra_modules]
    optimizer = torch.optim.AdamW(_param_groups(modules, cfg.weight_decay), lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    # Only the student (and its optimizer) is prepared: the frozen teacher never enters the
    # engine, its outputs come from the cache. Batches are sharded by our own sampler (below),
    # so the loader is not prepared and every rank sees the same batch order, cut by rank.
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    world, rank = accelerator.num_processes, accelerator.process_index
    # The loader gets its own generator: by default each new iterator (each epoch) draws a seed
    # from torch's global RNG, which would shift the dropout masks of a resumed run.
    loader = DataLoader(
        train_data,
        batch_sampler=ShardedBatches(sampler, world, rank),
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
    )

    def better(key: str, score: float, best: float | None) -> bool:
        if best is None:
            return True
        return score < best if key.rsplit("/", 1)[-1] in LOWER_IS_BETTER else score > best

    metrics_path = run_dir / "metrics.jsonl"
    checkpoints = CheckpointDir(run_dir / "checkpoints")
    result = FitResult(steps=0, best_score=None, best_epoch=None)
    start_time = time.perf_counter()
    running: dict[str, float] = {}
    running_n = 0
    step = 0
    epoch = 0
    skip_batches = 0
    if resume if resume is not None else RESUME.get():
        state = checkpoints.newest()
        if state is not None:
            step, epoch, skip_batches = state["step"], state["epoch"], state["batch_in_epoch"]
            checkpoints.restore(state, model, extra_modules, optimizer, scheduler, sampler)
            result.best_score, result.best_epoch = state["best_score"], state["best_epoch"]
            result.also_best = state["also_best"]
            result.train_seconds = state.get("train_seconds", 0.0)
            running, running_n = state["running"], state["running_n"]
            result.history = _truncate_metrics(metrics_path, state["metrics_lines"]) if main else []
            log.info(
                "[%s] resuming from the checkpoint at step %d (epoch %d, batch %d)", desc, step, epoch, skip_batches
            )
    elif main and metrics_path.exists():
        # A fresh run: old records would mix with the new ones. Keep them aside, not deleted: a run
        # redone by mistake (settings that differ only in spelling, say) leaves the last log readable.
        metrics_path.replace(metrics_path.with_name("metrics.previous.jsonl"))
    bar = tqdm(total=total_steps, initial=step, desc=desc, disable=not progress or not main, unit="step")

    def log_record(record: dict[str, Any]) -> None:
        result.history.append(record)
        if main:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def save_checkpoint(batch_in_epoch: int) -> None:
        if main:
            checkpoints.save(
                step=step,
                epoch=epoch,
                batch_in_epoch=batch_in_epoch,
                model=model,
                extra_modules=extra_modules,
                optimizer=optimizer,
                scheduler=scheduler,
                sampler=sampler,
                result=result,
                running=running,
                running_n=running_n,
                metrics_lines=len(result.history),
            )
        accelerator.wait_for_everyone()

    def evaluate_and_select(epoch_value: float) -> None:
        if evaluate_fn is None:
            return
        if main:
            model.eval()
            with torch.inference_mode():
                metrics = evaluate_fn()
            model.train()
            record = {
                "type": "eval",
                "step": step,
                "epoch": round(epoch_value, 3),
                "train_seconds": round(result.train_seconds, 3),
                **{f"dev/{k}": v for k, v in metrics.items()},
            }
            score = metrics.get(select_key) if select_key else None
            improved = score is not None and better(select_key, score, result.best_score)
            if improved:
                result.best_score, result.best_epoch = score, round(epoch_value, 3)
                if save_fn is not None:
                    save_fn()
            for name, (key, save_other) in (also_select or {}).items():
                other = metrics.get(key)
                if other is not None and better(key, other, result.also_best.get(name, {}).get("score")):
                    result.also_best[name] = {"score": other, "epoch": round(epoch_value, 3)}
                    save_other()
            record["best"] = bool(improved)
            log_record(record)
            # Percentages read well with 2 decimals; an embedding MSE (~1e-3) needs significant digits.
            shown = "n/a" if score is None else f"{score:.2f}" if abs(score) >= 0.1 or score == 0 else f"{score:.3g}"
            bar.write(
                f"[{desc}] epoch {epoch_value:.2f}: dev {select_key} = {shown}" + (" (best, saved)" if improved else "")
            )
        accelerator.wait_for_everyone()

    model.train()
    for module in extra_modules:
        module.train()
    while step < total_steps:
        sampler.start_epoch(epoch, skip=skip_batches)
        batch_in_epoch = skip_batches
        skip_batches = 0
        step_start = time.perf_counter()
        for batch in loader:
            parts = step_fn(to_device(batch, accelerator.device), wrapped)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower train.lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if world > 1:
                _average_gradients(extra_modules, accelerator)
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            batch_in_epoch += 1
            now = time.perf_counter()
            result.train_seconds += now - step_start
            for name, value in parts.items():
                running[name] = running.get(name, 0.0) + float(value.detach())
            running_n += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == total_steps:
                averaged = {k: v / running_n for k, v in running.items()}
                if world > 1:  # every rank saw other batches: report the mean over ranks
                    names = sorted(averaged)
                    values = accelerator.reduce(  # NCCL reduces GPU tensors only
                        torch.tensor([averaged[k] for k in names], device=accelerator.device), reduction="mean"
                    )
                    averaged = dict(zip(names, values.tolist()))
                bar.set_postfix(loss=f"{averaged['loss']:.4f}")
                log_record(
                    {
                        "type": "train",
                        "step": step,
                        "epoch": round(step / steps_per_epoch, 3),
                        "lr": scheduler.get_last_lr()[0],
                        **averaged,
                    }
                )
                running, running_n = {}, 0
            if step >= total_steps:
                break
            if cfg.eval_every and step % cfg.eval_every == 0 and batch_in_epoch < steps_per_epoch:
                evaluate_and_select(step / steps_per_epoch)  # a point of the learning curve within the epoch
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and batch_in_epoch < steps_per_epoch:
                save_checkpoint(batch_in_epoch)
            step_start = time.perf_counter()  # the loader's next batch counts; logging and evaluation do not
        epoch += 1
        evaluate_and_select(min(step / steps_per_epoch, epoch))
        if step < total_steps:
            save_checkpoint(0)
    bar.close()
    if evaluate_fn is None and save_fn is not None and main:
        save_fn()
    accelerator.wait_for_everyone()
    if main:
        checkpoints.clear()  # finished: the saved model is the result, the checkpoints are spent
    result.steps = step
    result.seconds = time.perf_counter() - start_time
    return result


def _average_gradients(modules: list[nn.Module], accelerator) -> None:
    # Loss modules with parameters (projections) are not DDP-wrapped: average their gradients
    # across ranks by hand so every rank takes the same step.
    for module in modules:
        for param in module.parameters():
            if param.grad is not None:
                param.grad.copy_(accelerator.reduce(param.grad, reduction="mean"))


def _truncate_metrics(path: Path, keep: int) -> list[dict[str, Any]]:
    """Keep the first ``keep`` records (those the checkpoint saw); later ones are redone."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = lines[:keep]
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return [json.loads(line) for line in kept]
