"""Where a run keeps what it makes: one home for the run-folder layout of every task.

RUN_DIR/teacher/          the fine-tuned or trained teacher (absent when teacher.path is used as it is)
RUN_DIR/teacher-logs/     its metrics.jsonl and checkpoints
RUN_DIR/student/          the student (student-selected-on-LANG/ for further selections)
RUN_DIR/student-logs/     its metrics.jsonl and checkpoints
RUN_DIR/.stages/          one record per finished stage (settings hash, summary)
"""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig


def student_dir(cfg: RunConfig, selected_on: str | None = None) -> Path:
    """The student chosen on ``train.select_lang``; or the one chosen on another dev language."""
    return Path(cfg.run_dir) / ("student" if selected_on is None else f"student-selected-on-{selected_on}")


def teacher_dir(cfg: RunConfig) -> Path:
    """The teacher the student learns from: the run's own when xdistill trains or fine-tunes it,
    else ``teacher.path`` as it is (an embedding teacher, a given translation model)."""
    if cfg.task == "classification":
        return Path(cfg.run_dir) / "teacher" if cfg.teacher.finetune else Path(cfg.teacher.path)
    if cfg.task == "translation" and not cfg.teacher.path:
        return Path(cfg.run_dir) / "teacher"
    return Path(cfg.teacher.path)


def logs_dir(model_dir: Path) -> Path:
    """Training logs and checkpoints sit next to the model they train: ``student`` -> ``student-logs``."""
    return model_dir.with_name(f"{model_dir.name}-logs")
