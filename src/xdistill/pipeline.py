"""Stages of a run (teacher -> student -> evaluation), each skipped when already done.

A stage is done when its output exists and was produced from the same settings: each stage
records a hash of the config sections it depends on, so ``--set distill.temperature=4`` re-runs
distillation and evaluation but reuses the fine-tuned teacher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import RunConfig, dump_config, resolve_path
from .distill.classify import distill_student, train_teacher
from .distill.embed import distill_embedding
from .distill.fit import RESUME, seed_everything
from .distill.translate import distill_translation, teacher_kind, train_translation_teacher
from .distributed import barrier, is_main
from .errors import ConfigError, XdistillError
from .evaluate.embed_eval import evaluate_embedding_run
from .evaluate.embed_report import embedding_tables
from .evaluate.mt_eval import evaluate_translation_run, translation_report
from .evaluate.report import comparison_table
from .evaluate.run_eval import code_version, evaluate_run
from .fingerprints import FileDigests
from .io_utils import atomic_write_json, atomic_write_text
from .layout import student_dir, teacher_dir
from .model_card import write_model_card
from .models.folder import read_model_info

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
    "student": (
        "embed.eval_retrieval",
        "embed.heldout_pairs",
        "embed.dev_pairs",
        "embed.decontaminate",
        "embed.normalize",
        "embed.student_prefix",
        "embed.ranking_weight",
        "embed.ranking_scale",
    ),
    "evaluate": ("embed",),
}


# Translation runs: the whole mt section shapes the student (data, tokenizer, model, KD losses).
MT_STAGE_SECTIONS = {
    "teacher": (
        "mt.teacher_model",
        "mt.max_length",
        "mt.dev_pairs",
        "mt.decontaminate",
        "mt.eval",
        "mt.vocab_size",
        "mt.separate_vocabs",
    ),
    "student": ("mt",),
}

# The config values that name files or folders a stage reads (``[]`` = every item of a list,
# ``*`` = every value of a mapping). Data files resolve against data.dir, models against the
# working directory. Their content fingerprints are part of the stage hash: edited data redoes
# the stages that read it.
STAGE_INPUTS = {
    "teacher": (
        "data.train",
        "data.dev.*",
        "data.test.*",
        "data.unlabelled.*",
        "data.target_labelled.*",
        "data.parallel[].path",
        "data.parallel[].target_path",
        "teacher.path",
        "mt.eval[].path",
        "mt.eval[].target_path",
        "mt.teacher_model.init_encoder",
    ),
    "student": (
        "student.base",
        "distill.extra_teachers[]",
        "mt.monolingual[].path",
        "mt.student.init_encoder",
        "embed.eval_retrieval[].path",
        "embed.eval_retrieval[].target_path",
    ),
    "evaluate": ("embed.probe.train", "embed.probe.test.*", "embed.references.*.path"),
}
# Config values that only say where files are: never part of a stage's hash (see stage_settings).
LOCATION_KEYS = ("data.dir", "cache_dir")

_MODEL_KEYS = {
    "teacher.path",
    "student.base",
    "distill.extra_teachers[]",
    "mt.student.init_encoder",
    "mt.teacher_model.init_encoder",
    "embed.references.*.path",
}


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node and all(isinstance(k, str) for k in node):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _defaults() -> dict[str, Any]:
    """Every config key's default value, flattened (``train.lr`` -> 1e-4)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        else:  # a section: its dataclass built from its own defaults
            out.update(_flatten(dataclasses.asdict(hints[f.name]()), f"{f.name}."))
    return out


def _stage_sections(cfg: RunConfig, stage: str) -> list[str]:
    sections: list[str] = []
    for name in STAGES:
        sections.extend(STAGE_SECTIONS[name])
        if cfg.task == "embedding":
            sections.extend(EMBED_STAGE_SECTIONS.get(name, ()))
        if cfg.task == "translation":
            sections.extend(MT_STAGE_SECTIONS.get(name, ()))
        if name == stage:
            break
    return sections


def _input_paths(cfg: RunConfig, stage: str) -> dict[str, Path]:
    """The files and folders the stages up to ``stage`` read, by the config key that names them."""
    full = cfg.to_dict()
    found: dict[str, Path] = {}
    for name in STAGES:
        for pattern in STAGE_INPUTS[name]:
            for key, value in _expand(full, pattern.split("."), ""):
                if not isinstance(value, str) or not value or ":" in value.split("/")[0]:
                    continue  # unset, or not a path (random:tiny, package:..., builtin models)
                as_model = any(_matches(key, m) for m in _MODEL_KEYS)
                found[key] = resolve_path(value) if as_model else cfg.data.resolve(value)
        if name == stage:
            break
    return found


def _expand(node: Any, parts: list[str], prefix: str):
    if not parts:
        yield prefix.rstrip("."), node
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        for key, value in (node or {}).items():
            yield from _expand(value, rest, f"{prefix}{key}.")
    elif head.endswith("[]"):
        for i, item in enumerate((node or {}).get(head[:-2]) or []):
            yield from _expand(item, rest, f"{prefix}{head[:-2]}[{i}].")
    elif isinstance(node, dict) and head in node:
        yield from _expand(node[head], rest, f"{prefix}{head}.")


def _matches(key: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(key.replace("[", "<").replace("]", ">"), pattern.replace("[]", "<*>"))


def stage_settings(cfg: RunConfig, stage: str) -> dict[str, Any]:
    """What a stage's output depends on: the config values of its sections (and earlier stages')
    that differ from their defaults, and a content fingerprint of every input file.

    Only non-default values count, so a new option with a default leaves existing runs' hashes
    as they were, without a list of exceptions to keep.
    """
    defaults = _defaults()
    sections = _stage_sections(cfg, stage)
    flat = _flatten(cfg.to_dict())
    settings = {
        key: value
        for key, value in flat.items()
        if any(key == s or key.startswith(s + ".") for s in sections)
        and (key not in defaults or _plain(value) != _plain(defaults[key]))
    }
    digests = FileDigests(Path(cfg.cache_dir) / "fingerprints.json")
    for key, path in _input_paths(cfg, stage).items():
        fingerprint = digests.fingerprint(path)
        if fingerprint is not None:
            settings[f"input:{key}"] = fingerprint[:16]
    digests.save()
    # Where inputs live is not what a stage depends on: a data folder named another way (relative
    # or absolute, moved, or another user's checkout) and the cache's location leave the hash as
    # it was, and a file or model read by the stage counts by its content fingerprint, not its path.
    return _without_locations(settings)


def _without_locations(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less LOCATION_KEYS and the paths of inputs that have a content fingerprint.
    Also applied to records written before locations were left out, so those stages still count."""
    return {
        key: value for key, value in settings.items() if key not in LOCATION_KEYS and f"input:{key}" not in settings
    }


def _plain(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def stage_hash(cfg: RunConfig, stage: str, settings: dict[str, Any] | None = None) -> str:
    payload = _plain(settings if settings is not None else stage_settings(cfg, stage))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _marker(cfg: RunConfig, stage: str) -> Path:
    return Path(cfg.run_dir) / ".stages" / f"{stage}.json"


def _started_marker(cfg: RunConfig, stage: str) -> Path:
    return Path(cfg.run_dir) / ".stages" / f"{stage}.started.json"


def stage_done(cfg: RunConfig, stage: str) -> bool:
    record = _record(cfg, stage)
    if not record:
        return False
    settings = stage_settings(cfg, stage)
    if record.get("hash") == stage_hash(cfg, stage, settings):
        return True
    # A record from before locations were left out of the settings: compare what it depended on.
    return _plain(_without_locations(record.get("settings") or {})) == _plain(settings)


def stage_changes(cfg: RunConfig, stage: str) -> list[str]:
    """Why a stage finished earlier in this run folder is not done for these settings: each
    setting or input that differs from its record ([] when there is no record, or it matches)."""
    record = _record(cfg, stage)
    if record is None:
        return []
    if not record:
        return ["its record is unreadable"]
    return _differences(_without_locations(record.get("settings") or {}), stage_settings(cfg, stage))


def _record(cfg: RunConfig, stage: str) -> dict[str, Any] | None:
    """A finished stage's record: None when there is none, {} when it cannot be read."""
    path = _marker(cfg, stage)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def stage_record(cfg: RunConfig, stage: str) -> dict[str, Any]:
    """What a finished stage recorded (commit, steps, seconds, best_dev, settings); {} when it has no
    readable record. Benchmarks read it so that a row names the code that trained a reused model."""
    return _record(cfg, stage) or {}


def redo_notice(cfg: RunConfig, stage: str) -> str | None:
    """One line for the log when a finished stage is about to be redone (its output replaced)."""
    changes = stage_changes(cfg, stage)
    if not changes:
        return None
    return f"[{stage}] redoing the stage finished in {cfg.run_dir}: " + "; ".join(changes)


def _mark_done(cfg: RunConfig, stage: str, summary: dict[str, Any]) -> None:
    if not is_main():
        return
    settings = stage_settings(cfg, stage)
    # The code that made the stage: a later run that reuses it (same settings) must not claim it.
    made_by = {"commit": code_version()["commit"]}
    atomic_write_json(
        _marker(cfg, stage), {"hash": stage_hash(cfg, stage, settings), **made_by, **summary, "settings": settings}
    )
    _started_marker(cfg, stage).unlink(missing_ok=True)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if _plain(old.get(key)) == _plain(new.get(key)):
            continue
        if key.startswith("input:"):
            out.append(f"{key[6:]} (the file's content changed)")
        else:
            out.append(f"{key}: {_show(old.get(key, '(default)'))} -> {_show(new.get(key, '(default)'))}")
    return out


def _show(value: Any) -> str:
    text = _plain(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _begin_stage(cfg: RunConfig, stage: str) -> None:
    """Record the settings a stage starts with; under --resume auto, refuse to continue a
    checkpoint made with other ones (it would go on training with the old settings while
    config.yaml and the stage record claimed the new)."""
    settings = stage_settings(cfg, stage)
    if RESUME.get():
        old = _started_settings(cfg, stage)
        if old is not None and old != json.loads(_plain(settings)):
            diff = "; ".join(_differences(old, settings))
            raise ConfigError(
                f"--resume auto: the interrupted {stage} stage in {cfg.run_dir} was started with other settings "
                f"({diff}); resume with the settings it started with, or pass --resume never to start the "
                f"{stage} stage over with the new ones"
            )
    atomic_write_json(_started_marker(cfg, stage), {"settings": settings})


def _started_settings(cfg: RunConfig, stage: str) -> dict[str, Any] | None:
    """The settings an unfinished ``stage`` was started with (None: not started, finished, or unreadable)."""
    started = _started_marker(cfg, stage)
    if not started.is_file():
        return None
    try:
        return json.loads(started.read_text(encoding="utf-8")).get("settings", {})
    except ValueError:
        return None


def can_resume(cfg: RunConfig, stage: str) -> bool:
    """Whether ``stage`` was interrupted in ``cfg.run_dir`` with these very settings, so its
    checkpoints can be continued (with other settings it has to start over)."""
    old = _started_settings(cfg, stage)
    return old is not None and old == json.loads(_plain(stage_settings(cfg, stage)))


def write_resolved_config(cfg: RunConfig) -> Path:
    path = Path(cfg.run_dir) / "config.yaml"
    atomic_write_text(path, dump_config(cfg))
    return path


def run_stage(
    cfg: RunConfig, stage: str, *, force: bool = False, progress: bool = True, echo: Callable[[str], None] = print
) -> Any:
    """Run one stage unconditionally when ``force``, else only when not already done."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    with run_folder_lock(cfg):
        if not force and stage_done(cfg, stage):
            echo(f"[{stage}] already done for these settings in {cfg.run_dir}; skipping (use --force to redo)")
            return None
        if not force and (notice := redo_notice(cfg, stage)):
            echo(notice)
        # Several processes (torchrun): all of them train (fit() shards the batches); only the main
        # one writes run files and evaluates, the others wait for it at the end of every stage.
        main = is_main()
        if main:
            _begin_stage(cfg, stage)
            write_resolved_config(cfg)
        result = None
        if main or stage != "evaluate":
            result = _run_task_stage(cfg, stage, progress=progress, echo=echo if main else _silent)
            if main and stage in ("student", "evaluate"):
                write_student_card(cfg, result if stage == "evaluate" else None)
        barrier()
        return result


_held_locks: dict[Path, int] = {}


@contextlib.contextmanager
def run_folder_lock(cfg: RunConfig) -> Iterator[None]:
    """Hold ``RUN_DIR/.lock`` while writing the run folder: a second process writing the same
    folder would interleave metrics.jsonl and overwrite models mid-save. Re-entrant in one
    process; under torchrun only the main process (the one that writes) takes it."""
    folder = Path(cfg.run_dir).resolve()
    if not is_main() or folder in _held_locks:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise XdistillError(
            f"another xdistill process (pid {holder}) is writing {cfg.run_dir}; wait for it to "
            "finish, or give this run another run_dir (--set run_dir=...)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held_locks[folder] = fd
    try:
        yield
    finally:
        del _held_locks[folder]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class Recipe:
    """What one task plugs into the shared stages: how to train its teacher (or why there is nothing
    to train), distil its student and evaluate. Where the models live is ``layout``'s."""

    given_teacher: Callable[[RunConfig], str | None]  # a message when the teacher is used as it is
    train_teacher: Callable[..., Any]
    distill: Callable[..., Any]
    evaluate: Callable[..., dict[str, Any]]
    table: Callable[[dict[str, Any]], str]
    dev_label: Callable[[RunConfig], str]


def _given_translation_teacher(cfg: RunConfig) -> str | None:
    kind = teacher_kind(cfg)
    what = cfg.teacher.command if kind == "command" else cfg.teacher.path
    return None if kind == "trained" else f"the teacher is given ({kind}: {what}); nothing to train"


RECIPES: dict[str, Recipe] = {
    "classification": Recipe(
        given_teacher=lambda cfg: (
            None if cfg.teacher.finetune else f"teacher.finetune is false: using {teacher_dir(cfg)} as it is"
        ),
        train_teacher=train_teacher,
        distill=distill_student,
        evaluate=evaluate_run,
        table=comparison_table,
        dev_label=lambda cfg: "",
    ),
    "embedding": Recipe(
        # The teacher's embeddings are the target as they are: there is nothing to fine-tune.
        given_teacher=lambda cfg: f"task is 'embedding': {cfg.teacher.path} is used as it is (nothing to fine-tune)",
        train_teacher=lambda cfg, **kw: None,
        distill=distill_embedding,
        evaluate=evaluate_embedding_run,
        table=embedding_tables,
        dev_label=lambda cfg: "MSE ",
    ),
    "translation": Recipe(
        given_teacher=_given_translation_teacher,
        train_teacher=train_translation_teacher,
        distill=distill_translation,
        evaluate=evaluate_translation_run,
        table=translation_report,
        dev_label=lambda cfg: f"{cfg.train.select_metric} ",
    ),
}


def _run_task_stage(cfg: RunConfig, stage: str, *, progress: bool, echo: Callable[[str], None]) -> Any:
    recipe = RECIPES[cfg.task]
    # Heads, projections and random students are created before fit() seeds its loop; without
    # this each new process would draw them from torch's own random start.
    seed_everything(cfg.seed)
    if stage == "teacher":
        message = recipe.given_teacher(cfg)
        if message is not None:
            echo(f"[teacher] {message}")
            _mark_done(cfg, stage, {"skipped": True})
            return None
        result = recipe.train_teacher(cfg, progress=progress)
        _mark_done(cfg, stage, {"best_dev": result.best_score, "steps": result.steps, "seconds": result.seconds})
        echo(f"[teacher] saved to {teacher_dir(cfg)} (best dev {_fmt(result.best_score)}, {result.seconds:.0f} s)")
        return result
    if stage == "student":
        result = recipe.distill(cfg, progress=progress)
        summary = {"best_dev": result.best_score, "steps": result.steps, "seconds": result.seconds}
        if getattr(result, "also_best", None):
            summary["also_best"] = result.also_best  # e.g. the copy selected on target-language dev
        _mark_done(cfg, stage, summary)
        spec = ".3g" if cfg.task == "embedding" else ".2f"
        echo(
            f"[student] saved to {student_dir(cfg)} (best dev {recipe.dev_label(cfg)}"
            f"{_fmt(result.best_score, spec)}, {result.seconds:.0f} s)"
        )
        return result
    results = recipe.evaluate(cfg, progress=progress)
    _mark_done(cfg, stage, {})
    echo(recipe.table(results))
    echo(f"[evaluate] report: {Path(cfg.run_dir) / 'report.md'}")
    return results


def write_student_card(cfg: RunConfig, results: dict[str, Any] | None = None) -> None:
    """The student's README.md model card (refreshed with the results after evaluation)."""
    folder = student_dir(cfg)
    if (folder / "config.json").is_file():
        write_model_card(folder, read_model_info(folder, optional=True), config=cfg.to_dict(), results=results)


def run_all(cfg: RunConfig, *, force: bool = False, progress: bool = True, echo: Callable[[str], None] = print) -> Any:
    """All stages in order. A re-run stage invalidates the later ones through their hashes."""
    results = None
    redo = force
    with run_folder_lock(cfg):
        for stage in STAGES:
            if not redo and not stage_done(cfg, stage):
                redo = True  # everything after a re-run stage must be redone too
            results = run_stage(cfg, stage, force=redo, progress=progress, echo=echo)
    return results


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else f"{value:{spec}}"
