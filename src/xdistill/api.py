"""The Python API: everything the command line does, as functions (the CLI is a thin layer over these).

    import xdistill

    cfg = xdistill.load_config("configs/tiny.yaml", ["train.lr=1e-4"])
    results = xdistill.run(cfg)                       # teacher -> student -> evaluation, skipping done stages
    model = xdistill.load_model("runs/tiny/student")  # any saved student, teacher or export
    model.classify(["Muy buen producto"])             # or .embed(...) / .translate(...)

Errors a user can act on are ``xdistill.XdistillError`` (``ConfigError``, ``DataFormatError``,
``ModelError``) with a message naming the file, line or key and the fix.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .config import RunConfig
from .config import load_config as _load_config
from .distill.fit import RESUME
from .export.exporter import ExportResult, export_model
from .export.runtime import LoadedModel
from .export.runtime import load_model as _load_model
from .pipeline import run_all, run_stage

Config = RunConfig | str | Path


def load_config(path: str | Path, overrides: Sequence[str] | None = None) -> RunConfig:
    """Read a YAML recipe; ``overrides`` are ``--set``-style ``"a.b=value"`` strings (type-checked)."""
    return _load_config(path, list(overrides or []))


def _config(config: Config) -> RunConfig:
    return config if isinstance(config, RunConfig) else load_config(config)


@contextmanager
def _resuming(resume: bool) -> Iterator[None]:
    token = RESUME.set(resume)
    try:
        yield
    finally:
        RESUME.reset(token)


def run(
    config: Config,
    *,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Any:
    """All stages (teacher, student, evaluate), skipping those already done for these settings.

    ``resume=True`` continues the newest checkpoint of an interrupted stage (refused, naming the
    settings, when the stage was started with other ones). Returns the evaluation results."""
    with _resuming(resume):
        return run_all(_config(config), force=force, progress=progress, echo=echo)


def train_teacher(
    config: Config,
    *,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Any:
    """Fine-tune (classification) or train (translation) the teacher into ``RUN_DIR/teacher``."""
    with _resuming(resume):
        return run_stage(_config(config), "teacher", force=force, progress=progress, echo=echo)


def distill(
    config: Config,
    *,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Any:
    """Distil the student into ``RUN_DIR/student``; returns the fit result (steps, best dev score)."""
    with _resuming(resume):
        return run_stage(_config(config), "student", force=force, progress=progress, echo=echo)


def evaluate(config: Config, *, progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Per-language metrics, size and speed of teacher and student (``results.json``, ``report.md``)."""
    return run_stage(_config(config), "evaluate", force=True, progress=progress, echo=echo)


def load_model(folder: str | Path, *, threads: int = 2) -> LoadedModel:
    """Any model xdistill saved or exported (classifier, sentence encoder, translator; PyTorch, ONNX,
    CTranslate2), ready for ``.classify`` / ``.logits``, ``.embed`` or ``.translate``."""
    return _load_model(folder, threads=threads)


def export(
    model_dir: str | Path,
    format: str,
    out: str | Path,
    *,
    quantize: str | None = None,
    eval_config: str | Path | None = None,
    max_drop: float = 0.5,
    overwrite: bool = False,
) -> ExportResult:
    """ONNX (classifiers, sentence encoders) or CTranslate2 (translation), with a parity check and,
    given ``eval_config``, a dev-accuracy gate."""
    return export_model(
        Path(model_dir),
        format,
        Path(out),
        quantize=quantize,
        eval_config=Path(eval_config) if eval_config else None,
        max_drop=max_drop,
        overwrite=overwrite,
    )
