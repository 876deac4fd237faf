"""Stages of a run (teacher -> student -> evaluation), each skipped when already done.

A stage is done when its output exists and was produced from the same settings: each stage
records a hash of the config sections it depends on, so ``--set distill.temperature=4`` re-runs
distillation and evaluation but reuses the fine-tuned teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import RunConfig, dump_config
from .io_utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

# The config sections each stage's output depends on (on top of the previous stages').
STAGE_SECTIONS = {
    "teacher": ("data", "teacher", "seed", "task"),
    "student": ("student", "distill", "train", "cache_dir"),
    "evaluate": ("evaluate",),
}
STAGES = list(STAGE_SECTIONS)
# Embedding runs: the embed keys that change the student's training data (held-out splits,
# decontamination) and the student itself; the probe and reference models only change the
# evaluation, so editing them does not retrain the student. Only embedding runs hash these,
# so the hashes of existing classification runs stay as they were.
EMBED_STAGE_SECTIONS = {
    "student": ("embed.eval_retrieval", "embed.heldout_pairs", "embed.dev_pairs", "embed.decontaminate",
                "embed.normalize", "embed.student_prefix", "embed.ranking_weight", "embed.ranking_scale"),
    "evaluate": ("embed",),
}


# Translation runs: the whole mt section shapes the student (data, tokenizer, model, KD losses).
MT_STAGE_SECTIONS = {"teacher": ("mt.teacher_model", "mt.max_length", "mt.dev_pairs", "mt.decontaminate",
                                 "mt.eval", "mt.vocab_size", "mt.separate_vocabs"),
                     "student": ("mt",)}


# Keys added after runs already existed, with their defaults: they hash only when set otherwise,
# so those runs keep their hashes (and are not redone just because xdistill learned an option).
_ADDED_TRAIN_KEYS = {"checkpoint_every": None, "deterministic": False}


def _drop_unset_additions(full: dict[str, Any]) -> None:
    if full["teacher"].get("command") is None:
        full["teacher"].pop("command", None)
    for train in (full["train"], full["teacher"]["train"]):
        for key, default in _ADDED_TRAIN_KEYS.items():
            if train.get(key, default) == default:
                train.pop(key, None)
    for par in full["data"]["parallel"]:
        if par.get("name") is None:
            par.pop("name", None)
    if full["mt"].get("separate_vocabs") is False:
        full["mt"].pop("separate_vocabs")


# Keys that _drop_unset_additions may remove: a stage hashes them only when they are set.
_OPTIONAL_KEYS = {"mt.separate_vocabs"}


def stage_hash(cfg: RunConfig, stage: str) -> str:
    full = cfg.to_dict()
    _drop_unset_additions(full)
    sections: list[str] = []
    for name in STAGES:
        sections.extend(STAGE_SECTIONS[name])
        if cfg.task == "embedding":
            sections.extend(EMBED_STAGE_SECTIONS.get(name, ()))
        if cfg.task == "translation":
            sections.extend(MT_STAGE_SECTIONS.get(name, ()))
        if name == stage:
            break
    sections = [s for s in sections if s not in _OPTIONAL_KEYS or _present(full, s)]
    payload = json.dumps({s: _lookup(full, s) for s in sections}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _present(full: dict[str, Any], dotted: str) -> bool:
    try:
        _lookup(full, dotted)
    except KeyError:
        return False
    return True


def _lookup(full: dict[str, Any], dotted: str) -> Any:
    node: Any = full
    for part in dotted.split("."):
        node = node[part]
    return node


def _marker(cfg: RunConfig, stage: str) -> Path:
    return Path(cfg.run_dir) / ".stages" / f"{stage}.json"


def stage_done(cfg: RunConfig, stage: str) -> bool:
    path = _marker(cfg, stage)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("hash") == stage_hash(cfg, stage)
    except ValueError:
        return False


def _mark_done(cfg: RunConfig, stage: str, summary: dict[str, Any]) -> None:
    from .distributed import is_main

    if not is_main():
        return
    atomic_write_json(_marker(cfg, stage), {"hash": stage_hash(cfg, stage), **summary})


def write_resolved_config(cfg: RunConfig) -> Path:
    path = Path(cfg.run_dir) / "config.yaml"
    atomic_write_text(path, dump_config(cfg))
    return path


def run_stage(cfg: RunConfig, stage: str, *, force: bool = False, progress: bool = True,
              echo: Callable[[str], None] = print) -> Any:
    """Run one stage unconditionally when ``force``, else only when not already done."""
    if not force and stage_done(cfg, stage):
        echo(f"[{stage}] already done for these settings in {cfg.run_dir}; skipping (use --force to redo)")
        return None
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    from .distributed import barrier, is_main

    # Several processes (torchrun): all of them train (fit() shards the batches); only the main
    # one writes run files and evaluates, the others wait for it at the end of every stage.
    main = is_main()
    if main:
        write_resolved_config(cfg)
    result = None
    if main or stage != "evaluate":
        result = _run_task_stage(cfg, stage, progress=progress, echo=echo if main else _silent)
        if main and stage in ("student", "evaluate"):
            write_student_card(cfg, result if stage == "evaluate" else None)
    barrier()
    return result


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class Recipe:
    """What one task plugs into the shared stages: how to train its teacher (or why there is nothing
    to train), distil its student, evaluate, and where the student lives."""

    given_teacher: Callable[[RunConfig], str | None]  # a message when the teacher is used as it is
    train_teacher: Callable[..., Any]
    teacher_dir: Callable[[RunConfig], Path]
    distill: Callable[..., Any]
    student_dir: Callable[[RunConfig], Path]
    evaluate: Callable[..., dict[str, Any]]
    table: Callable[[dict[str, Any]], str]
    dev_label: Callable[[RunConfig], str]


def _classification() -> Recipe:
    from .distill.classify import distill_student, student_dir, teacher_dir, train_teacher
    from .evaluate.report import comparison_table
    from .evaluate.run_eval import evaluate_run

    return Recipe(
        given_teacher=lambda cfg: None if cfg.teacher.finetune else
        f"teacher.finetune is false: using {teacher_dir(cfg)} as it is",
        train_teacher=train_teacher, teacher_dir=teacher_dir, distill=distill_student, student_dir=student_dir,
        evaluate=evaluate_run, table=comparison_table, dev_label=lambda cfg: "",
    )


def _embedding() -> Recipe:
    from .distill.embed import distill_embedding, embed_student_dir
    from .evaluate.embed_eval import evaluate_embedding_run
    from .evaluate.embed_report import embedding_tables

    return Recipe(
        # The teacher's embeddings are the target as they are: there is nothing to fine-tune.
        given_teacher=lambda cfg: f"task is 'embedding': {cfg.teacher.path} is used as it is (nothing to fine-tune)",
        train_teacher=lambda cfg, **kw: None, teacher_dir=lambda cfg: Path(cfg.teacher.path),
        distill=distill_embedding, student_dir=embed_student_dir, evaluate=evaluate_embedding_run,
        table=embedding_tables, dev_label=lambda cfg: "MSE ",
    )


def _translation() -> Recipe:
    from .distill.translate import (distill_translation, mt_student_dir, mt_teacher_dir, teacher_kind,
                                    train_translation_teacher)
    from .evaluate.mt_eval import evaluate_translation_run, translation_report

    def given(cfg: RunConfig) -> str | None:
        kind = teacher_kind(cfg)
        what = cfg.teacher.command if kind == "command" else cfg.teacher.path
        return None if kind == "trained" else f"the teacher is given ({kind}: {what}); nothing to train"

    return Recipe(
        given_teacher=given, train_teacher=train_translation_teacher, teacher_dir=mt_teacher_dir,
        distill=distill_translation, student_dir=mt_student_dir, evaluate=evaluate_translation_run,
        table=translation_report, dev_label=lambda cfg: f"{cfg.train.select_metric} ",
    )


RECIPES: dict[str, Callable[[], Recipe]] = {
    "classification": _classification,
    "embedding": _embedding,
    "translation": _translation,
}


def _run_task_stage(cfg: RunConfig, stage: str, *, progress: bool, echo: Callable[[str], None]) -> Any:
    recipe = RECIPES[cfg.task]()
    if stage == "teacher":
        message = recipe.given_teacher(cfg)
        if message is not None:
            echo(f"[teacher] {message}")
            _mark_done(cfg, stage, {"skipped": True})
            return None
        result = recipe.train_teacher(cfg, progress=progress)
        _mark_done(cfg, stage, {"best_dev": result.best_score, "steps": result.steps, "seconds": result.seconds})
        echo(f"[teacher] saved to {recipe.teacher_dir(cfg)} (best dev {_fmt(result.best_score)}, "
             f"{result.seconds:.0f} s)")
        return result
    if stage == "student":
        result = recipe.distill(cfg, progress=progress)
        _mark_done(cfg, stage, {"best_dev": result.best_score, "steps": result.steps, "seconds": result.seconds})
        spec = ".3g" if cfg.task == "embedding" else ".2f"
        echo(f"[student] saved to {recipe.student_dir(cfg)} (best dev {recipe.dev_label(cfg)}"
             f"{_fmt(result.best_score, spec)}, {result.seconds:.0f} s)")
        return result
    results = recipe.evaluate(cfg, progress=progress)
    _mark_done(cfg, stage, {})
    echo(recipe.table(results))
    echo(f"[evaluate] report: {Path(cfg.run_dir) / 'report.md'}")
    return results


def student_folder(cfg: RunConfig) -> Path:
    return RECIPES[cfg.task]().student_dir(cfg)


def write_student_card(cfg: RunConfig, results: dict[str, Any] | None = None) -> None:
    """The student's README.md model card (refreshed with the results after evaluation)."""
    from .model_card import write_model_card
    from .export.runtime import read_info

    folder = student_folder(cfg)
    if (folder / "config.json").is_file():
        write_model_card(folder, read_info(folder), config=cfg.to_dict(), results=results)


def run_all(cfg: RunConfig, *, force: bool = False, progress: bool = True, echo: Callable[[str], None] = print) -> Any:
    """All stages in order. A re-run stage invalidates the later ones through their hashes."""
    results = None
    redo = force
    for stage in STAGES:
        if not redo and not stage_done(cfg, stage):
            redo = True  # everything after a re-run stage must be redone too
        results = run_stage(cfg, stage, force=redo, progress=progress, echo=echo)
    return results


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else f"{value:{spec}}"
