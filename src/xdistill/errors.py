"""Errors a user can act on. Each message says what is wrong, where, and how to fix it."""

from __future__ import annotations

from pathlib import Path


class XdistillError(Exception):
    """Base class: the CLI prints these as one line (no traceback unless --debug)."""


class ConfigError(XdistillError):
    """A config file or --set override is invalid."""


class DataFormatError(XdistillError):
    """A data file cannot be read. Always names the file, the line (1-based, when known) and the reason."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ModelError(XdistillError):
    """A model folder is missing, incomplete or of the wrong kind."""
