"""docs/benchmarks.md, regenerated from the committed JSON results."""

from __future__ import annotations

import json
from pathlib import Path

from ..io_utils import atomic_write_text
from .embed import dev_markdown as embed_dev_table
from .embed import markdown_table as embed_table
from .export import markdown_table as export_table
from .marc import markdown_table as marc_table
from .marc_dev import dev_markdown as marc_dev_table
from .marc_dev import speed_per_size_markdown as marc_speed_per_size_table
from .mt import markdown_table as mt_table

HEADER = """# Benchmarks

Regenerated from `bench/results/*.json` by the benchmark scripts; do not edit by hand.
Speed: 2 threads, warm-up, median of 5 runs, all models measured in the same process.
"""


def write_benchmarks_md(results_dir: Path, out: Path) -> Path:
    parts = [HEADER]
    sections = (
        ("marc.json", "MARC, full run", marc_table),
        ("marc-quick.json", "MARC, --quick", marc_table),
        ("marc-dev.json", "MARC, recipes chosen on dev", marc_dev_table),
        ("marc-speed-per-size.json", "MARC, speed per student size", marc_speed_per_size_table),
        ("embed-dev.json", "Sentence embeddings, recipe chosen on dev", embed_dev_table),
        ("embed.json", "Sentence embeddings, full run", embed_table),
        ("embed-quick.json", "Sentence embeddings, --quick", embed_table),
        ("mt.json", "Translation, full run", mt_table),
        ("mt-quick.json", "Translation, --quick", mt_table),
        ("export.json", "Export and serving", export_table),
        ("export-quick.json", "Export and serving, --quick", export_table),
    )
    for name, title, table in sections:
        path = results_dir / name
        if path.is_file():
            parts.append(f"## {title}\n\n" + table(json.loads(path.read_text())))
    atomic_write_text(out, "\n".join(parts))
    return out
