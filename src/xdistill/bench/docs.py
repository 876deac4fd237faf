"""docs/benchmarks.md, regenerated from the committed JSON results."""

from __future__ import annotations

import json
from pathlib import Path

from ..io_utils import atomic_write_text

HEADER = """# Benchmarks

Regenerated from `bench/results/*.json` by the benchmark scripts; do not edit by hand.
Speed: 2 threads, warm-up, median of 5 runs, all models measured in the same process.
"""


def write_benchmarks_md(results_dir: Path, out: Path) -> Path:
    from .marc import markdown_table as marc_table

    parts = [HEADER]
    for name, title in (("marc.json", "MARC, full run"), ("marc-quick.json", "MARC, --quick")):
        path = results_dir / name
        if path.is_file():
            parts.append(f"## {title}\n\n" + marc_table(json.loads(path.read_text())))
    atomic_write_text(out, "\n".join(parts))
    return out
