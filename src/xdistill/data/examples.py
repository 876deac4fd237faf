"""The small record types every reader returns and every recipe consumes.

(Where the fields are in a file is ``xdistill.config.ColumnsConfig``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One classification example. ``label`` is an index into the run's label list, or None
    for unlabelled text."""

    text: str
    label: int | None = None
    text_pair: str | None = None
    lang: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class ParallelPair:
    """A sentence and its translation."""

    source: str
    target: str


@dataclass
class ReadStats:
    """What a reader skipped, so nothing is dropped silently: blank lines, rows whose label
    the label map drops (e.g. 3-star reviews in the binary MARC variant)."""

    path: str
    rows: int = 0
    blank_lines: int = 0
    dropped_by_label_map: int = 0
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{self.rows} rows"]
        if self.blank_lines:
            parts.append(f"{self.blank_lines} blank lines skipped")
        if self.dropped_by_label_map:
            parts.append(f"{self.dropped_by_label_map} dropped by label_map")
        return f"{self.path}: " + ", ".join(parts)
