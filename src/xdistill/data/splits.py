"""Everything a classification run reads, in one place, with the leak checks applied.

Pools that contain the dev rows (MARC's train pools do) lose those rows by id before they are
used for anything, and pool texts that also occur in a test file are dropped (compared as
``hygiene.text_key``: case, whitespace and Unicode width do not count), so dev and test scores are
never measured on training data. Every ``data.max_*`` cap is ``hygiene.seeded_subset`` with
``data.sample_seed``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from ..config import RunConfig
from .examples import Example, ParallelPair
from .hygiene import first_per_label, seeded_subset, text_key
from .readers import read_labelled, read_parallel, read_unlabelled

log = logging.getLogger(__name__)


@dataclass
class RunData:
    labels: list[str]
    train: list[Example] = field(default_factory=list)
    dev: dict[str, list[Example]] = field(default_factory=dict)
    test: dict[str, list[Example]] = field(default_factory=dict)
    unlabelled: dict[str, list[Example]] = field(default_factory=dict)
    target_labelled: dict[str, list[Example]] = field(default_factory=dict)
    parallel: dict[str, list[ParallelPair]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _read_labelled(cfg: RunConfig, path: str, lang: str, notes: list[str]) -> list[Example]:
    examples, stats = read_labelled(
        cfg.data.resolve(path),
        columns=cfg.data.columns,
        labels=cfg.data.labels,
        label_map=cfg.data.label_map or None,
        lang=lang,
        header=cfg.data.header,
    )
    notes.append(stats.summary())
    return examples


def text_pairs(examples: list[Example]) -> list[str | None] | None:
    """The second texts of sentence-pair examples, or None for single-text data."""
    return [e.text_pair for e in examples] if any(e.text_pair for e in examples) else None


def k_per_class(examples: list[Example], k: int) -> list[Example]:
    """The first k examples of each label in file order (how MARC's k-shot files nest)."""
    taken: dict[int, int] = defaultdict(int)
    out = []
    for ex in examples:
        if ex.label is not None and taken[ex.label] < k:
            taken[ex.label] += 1
            out.append(ex)
    return out


def load_dev(cfg: RunConfig, notes: list[str] | None = None) -> dict[str, list[Example]]:
    notes = notes if notes is not None else []
    return {
        lang: seeded_subset(
            first_per_label(_read_labelled(cfg, path, lang, notes), cfg.data.dev_per_class),
            cfg.data.max_dev,
            cfg.data.sample_seed,
        )
        for lang, path in cfg.data.dev.items()
    }


def load_test(cfg: RunConfig, split: str = "test") -> dict[str, list[Example]]:
    files = cfg.data.test if split == "test" else cfg.data.dev
    limit = cfg.data.max_test if split == "test" else cfg.data.max_dev
    notes: list[str] = []
    return {
        lang: seeded_subset(_read_labelled(cfg, path, lang, notes), limit, cfg.data.sample_seed)
        for lang, path in files.items()
    }


class _LeakFilter:
    """Drops pool rows that are dev rows (by id) or test texts, counting what it drops."""

    def __init__(self, cfg: RunConfig, dev: dict[str, list[Example]]):
        self.dev_ids = {lang: {ex.id for ex in exs if ex.id is not None} for lang, exs in dev.items()}
        self.test_texts: dict[str, set[str]] = {}
        if cfg.data.exclude_test_texts:
            for lang, exs in load_test(cfg).items():
                self.test_texts[lang] = {text_key(ex.text) for ex in exs}
        self.use_ids = cfg.data.exclude_dev_ids
        self.notes: list[str] = []

    def __call__(self, examples: list[Example], lang: str, what: str) -> list[Example]:
        ids = self.dev_ids.get(lang, set()) if self.use_ids else set()
        texts = self.test_texts.get(lang, set())
        kept = [ex for ex in examples if ex.id not in ids and text_key(ex.text) not in texts]
        dropped = len(examples) - len(kept)
        if dropped:
            self.notes.append(f"{what} ({lang}): dropped {dropped} rows that are dev rows (by id) or test texts")
        return kept


def load_training_data(cfg: RunConfig, *, with_targets: bool = True) -> RunData:
    """Source labelled data, dev sets, and (when ``with_targets``) target-language pools."""
    data = RunData(labels=list(cfg.data.labels))
    data.dev = load_dev(cfg, data.notes)
    leak = _LeakFilter(cfg, data.dev)
    src = cfg.data.source_lang
    data.train = seeded_subset(
        leak(_read_labelled(cfg, cfg.data.train, src, data.notes), src, "train"),
        cfg.data.max_train,
        cfg.data.sample_seed,
    )
    if with_targets:
        for lang, path in cfg.data.unlabelled.items():
            examples, stats = read_unlabelled(
                cfg.data.resolve(path), columns=cfg.data.columns, lang=lang, header=cfg.data.header
            )
            data.notes.append(stats.summary())
            data.unlabelled[lang] = seeded_subset(
                leak(examples, lang, "unlabelled"), cfg.data.max_unlabelled, cfg.data.sample_seed
            )
        if cfg.distill.transfer != "unsupervised":
            for lang, path in cfg.data.target_labelled.items():
                examples = leak(_read_labelled(cfg, path, lang, data.notes), lang, "target_labelled")
                if cfg.distill.transfer == "semi":
                    examples = k_per_class(examples, cfg.distill.k_per_class)
                data.target_labelled[lang] = seeded_subset(examples, cfg.data.max_target_labelled, cfg.data.sample_seed)
        for par in cfg.data.parallel:
            pairs, stats = read_parallel(
                cfg.data.resolve(par.path),
                cfg.data.resolve(par.target_path) if par.target_path else None,
                source_column=par.source_column,
                target_column=par.target_column,
            )
            data.notes.append(stats.summary())
            texts = leak.test_texts.get(par.lang, set()) | leak.test_texts.get(src, set())
            pairs = [p for p in pairs if text_key(p.source) not in texts and text_key(p.target) not in texts]
            data.parallel.setdefault(par.lang, []).extend(seeded_subset(pairs, par.max_pairs, cfg.data.sample_seed))
    data.notes.extend(leak.notes)
    for note in data.notes:
        log.info(note)
    return data
