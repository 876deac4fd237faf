"""Everything a translation run reads, decontaminated and counted.

- Test sets (``mt.eval``, e.g. FLORES-200 devtest, the Tatoeba test): read whole; both sides of
  every pair are banned from all training data. ``cmn.txt`` and the Tatoeba test come from the
  same source (1,794 of the 4,450 English cmn_Hans test sentences occur in ``cmn.txt``), so this
  is not optional hygiene: without it the in-domain score measures memorisation.
- Reference pairs (``data.parallel``): contaminated pairs dropped, repeats kept once, then
  ``mt.dev_pairs`` held out for per-epoch chrF; training pairs sharing a side with a dev pair go.
- Monolingual source text (``mt.monolingual``): what the teacher translates for seq-KD; the same
  bans apply.

Texts are compared as ``hygiene.text_key`` (NFKC, case-folded, whitespace collapsed); the dev split
is ``hygiene.held_out_split`` and every cap ``hygiene.seeded_subset``, both with ``data.sample_seed``.
Every drop is counted in ``MTData.summary``; the benchmark reports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ColumnsConfig, RunConfig
from ..errors import ConfigError
from .embed_data import parallel_name, read_pairs
from .examples import ParallelPair
from .hygiene import held_out_split, seeded_subset, text_key, unique
from .readers import read_unlabelled

log = logging.getLogger(__name__)

KNOWN_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")


@dataclass
class MTData:
    train: list[ParallelPair] = field(default_factory=list)  # reference pairs
    dev: list[ParallelPair] = field(default_factory=list)
    monolingual: list[str] = field(default_factory=list)  # source-side text without references
    tests: dict[str, list[ParallelPair]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def source_texts(self) -> list[str]:
        """Every source sentence the student trains on (the teacher translates them for seq-KD)."""
        return unique([p.source for p in self.train] + self.monolingual)


def test_name(par) -> str:
    return par.name or Path(par.path).name.split(".")[0]


def load_test_sets(cfg: RunConfig) -> dict[str, list[ParallelPair]]:
    tests: dict[str, list[ParallelPair]] = {}
    for ev in cfg.mt.eval:
        pairs, _ = read_pairs(cfg, ev)
        name = test_name(ev)
        if name in tests:
            raise ConfigError(f"mt.eval has two test sets called {name!r}; give them distinct `name:`s")
        limit = ev.max_pairs or cfg.mt.max_eval_pairs
        tests[name] = pairs[:limit] if limit else pairs
    return tests


def load_mt_data(cfg: RunConfig) -> MTData:
    if cfg.task != "translation":
        raise ConfigError(f"load_mt_data needs task: translation, the config says {cfg.task!r}")
    seed = cfg.data.sample_seed
    data = MTData()
    banned: set[str] = set()
    for ev in cfg.mt.eval:
        pairs, _ = read_pairs(cfg, ev)  # whole files: a capped evaluation still never trains on the rest
        if cfg.mt.decontaminate:
            banned.update(text_key(t) for p in pairs for t in (p.source, p.target))
    data.tests = load_test_sets(cfg)

    files: dict[str, Any] = {}
    pool: list[tuple[str, str]] = []
    for i, par in enumerate(cfg.data.parallel):
        pairs, stats = read_pairs(cfg, par)
        clean = [p for p in pairs if text_key(p.source) not in banned and text_key(p.target) not in banned]
        stats["dropped_eval_overlap"] = len(pairs) - len(clean)
        clean = seeded_subset(clean, par.max_pairs, seed, i)
        stats["kept"] = len(clean)
        files[parallel_name(par)] = stats
        pool.extend((p.source, p.target) for p in clean)
    distinct = unique(pool)
    n_dev = cfg.mt.dev_pairs if distinct else 0
    if distinct and n_dev >= len(distinct):
        raise ConfigError(
            f"data.parallel has {len(distinct)} distinct pairs after decontamination, too few to hold out "
            f"mt.dev_pairs={n_dev} and still train; lower mt.dev_pairs or add data"
        )
    split = held_out_split(distinct, [n_dev], seed, "dev")
    (dev,), train, reserved = split.held_out, split.train, split.reserved
    data.train = [ParallelPair(s, t) for s, t in train]
    data.dev = [ParallelPair(s, t) for s, t in dev]

    mono_files: dict[str, Any] = {}
    mono: list[str] = []
    for i, mf in enumerate(cfg.mt.monolingual):
        columns = ColumnsConfig(text=mf.column if mf.column is not None else 0, label=None)
        path = cfg.data.resolve(mf.path)
        fmt = mf.format or (None if path.suffix.lower() in KNOWN_SUFFIXES else "txt")
        examples, _ = read_unlabelled(
            path, columns=columns, header=mf.header, lang=cfg.data.source_lang, file_format=fmt
        )
        texts = unique(e.text for e in examples)
        clean = [t for t in texts if text_key(t) not in banned and text_key(t) not in reserved]
        kept = seeded_subset(clean, mf.max_lines, seed, "mono", i)
        mono_files[mf.path] = {
            "read": len(examples),
            "duplicates": len(examples) - len(texts),
            "dropped_eval_overlap": len(texts) - len(clean),
            "kept": len(kept),
        }
        mono.extend(kept)
    known = {p.source for p in data.train}
    data.monolingual = [t for t in unique(mono) if t not in known]

    data.summary = {
        "decontamination": {
            "enabled": cfg.mt.decontaminate,
            "evaluation_texts": len(banned),
            "dropped_pairs": sum(f["dropped_eval_overlap"] for f in files.values()),
            "dropped_monolingual": sum(f["dropped_eval_overlap"] for f in mono_files.values()),
        },
        "parallel_files": files,
        "monolingual_files": mono_files,
        "reference_pairs": {
            "distinct": len(distinct),
            "duplicates": len(pool) - len(distinct),
            "dev": len(dev),
            "train": len(train),
            "dropped_dev_overlap": split.dropped_overlap,
        },
        "monolingual": len(data.monolingual),
        "tests": {name: len(pairs) for name, pairs in data.tests.items()},
    }
    d = data.summary["decontamination"]
    log.info(
        "decontamination: %d reference pairs and %d monolingual texts dropped (they occur in the %d test "
        "texts); %d training pairs, %d dev pairs, %d monolingual sources",
        d["dropped_pairs"],
        d["dropped_monolingual"],
        d["evaluation_texts"],
        len(data.train),
        len(data.dev),
        len(data.monolingual),
    )
    return data
