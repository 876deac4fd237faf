"""xdistill: cross-lingual knowledge distillation into small, fast students.

The Python API (``xdistill.load_config``, ``run``, ``train_teacher``, ``distill``, ``evaluate``,
``load_model``, ``export``) lives in ``xdistill.api``; it is imported on first use so that
``xdistill --help`` does not pay for loading torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("load_config", "run", "train_teacher", "distill", "evaluate", "load_model", "export", "RunConfig")
_ERRORS = ("XdistillError", "ConfigError", "DataFormatError", "ModelError")
__all__ = ["__version__", *_API, *_ERRORS]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'xdistill' has no attribute {name!r}")
