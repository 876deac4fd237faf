"""Everything a sentence-embedding run reads, with the leak checks applied and counted.

Training data is parallel text (``data.parallel``: an English sentence and its translation) plus
optional source-language text (``data.unlabelled: {en: ...}``). Before anything is trained on it:

* decontamination: a pair whose source or target side occurs in an evaluation set (the
  translation-retrieval sets in ``embed.eval_retrieval``, e.g. FLORES devtest, and the probe's
  test files) is dropped, and so is such a monolingual text; texts are compared as
  ``hygiene.text_key`` (NFKC, case-folded, whitespace collapsed), so "The cat.", "the  cat." and
  "Ｔｈｅ ｃａｔ．" count as the same sentence;
* repeated pairs (Tatoeba has many) are kept once;
* per target language, ``embed.heldout_pairs`` pairs are held out for the reported MSE to the
  teacher and ``embed.dev_pairs`` for per-epoch dev metrics; training pairs that share a side with
  a held-out or dev pair are dropped, so those scores are not measured on training sentences.

Every drop is counted in ``EmbedData.summary``, which the run logs and writes into its results.
The split (``hygiene.held_out_split``) and the caps (``hygiene.seeded_subset``) are drawn with
``data.sample_seed``, so training and evaluation see the same held-out set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ColumnsConfig, ParallelConfig, RunConfig
from ..errors import ConfigError
from .examples import ParallelPair
from .hygiene import held_out_split, seeded_subset, text_key, unique
from .readers import read_parallel, read_unlabelled

log = logging.getLogger(__name__)


@dataclass
class EmbedData:
    train: dict[str, list[ParallelPair]] = field(default_factory=dict)
    dev: dict[str, list[ParallelPair]] = field(default_factory=dict)
    heldout: dict[str, list[ParallelPair]] = field(default_factory=dict)
    monolingual: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def training_texts(self) -> list[str]:
        """Every text the student trains on, both sides (the corpus its vocabulary is trimmed to)."""
        return [t for pairs in self.train.values() for p in pairs for t in (p.source, p.target)] + self.monolingual


def read_pairs(cfg: RunConfig, par: ParallelConfig) -> tuple[list[ParallelPair], dict[str, Any]]:
    """One parallel file (or file pair) as configured, with its read statistics."""
    pairs, stats = read_parallel(
        cfg.data.resolve(par.path),
        cfg.data.resolve(par.target_path) if par.target_path else None,
        source_column=par.source_column,
        target_column=par.target_column,
    )
    return pairs, {"read": len(pairs), "empty_pairs": stats.extra.get("empty_pairs", 0)}


def load_retrieval_sets(cfg: RunConfig) -> dict[str, list[ParallelPair]]:
    """The translation-retrieval evaluation sets, by target language (``max_pairs``: the first N)."""
    sets: dict[str, list[ParallelPair]] = {}
    for ev in cfg.embed.eval_retrieval:
        pairs, _ = read_pairs(cfg, ev)
        sets[ev.lang] = pairs[: ev.max_pairs] if ev.max_pairs else pairs
    return sets


def evaluation_texts(cfg: RunConfig) -> set[str]:
    """Every text of every evaluation file (retrieval sets, probe test files), as ``text_key``s."""
    keys: set[str] = set()
    for ev in cfg.embed.eval_retrieval:
        pairs, _ = read_pairs(cfg, ev)  # whole files: a capped evaluation still never trains on the rest
        keys.update(text_key(t) for p in pairs for t in (p.source, p.target))
    probe = cfg.embed.probe
    if probe is not None:
        cols = _probe_columns(cfg)
        for path in probe.test.values():
            examples, _ = read_unlabelled(cfg.data.resolve(path), columns=cols, header=probe.header)
            keys.update(text_key(e.text) for e in examples)
    return keys


def _probe_columns(cfg: RunConfig) -> ColumnsConfig:
    c = cfg.embed.probe.columns
    return ColumnsConfig(text=c.text, text_pair=None, label=c.label, lang=None, id=None)


def load_embed_data(cfg: RunConfig) -> EmbedData:
    """Training, dev and held-out pairs per target language, and monolingual source text."""
    if cfg.task != "embedding":
        raise ConfigError(f"load_embed_data needs task: embedding, the config says {cfg.task!r}")
    seed = cfg.data.sample_seed
    banned = evaluation_texts(cfg) if cfg.embed.decontaminate else set()
    data = EmbedData()
    files: dict[str, Any] = {}
    pools: dict[str, list[ParallelPair]] = {}
    dropped_eval = 0
    for i, par in enumerate(cfg.data.parallel):
        pairs, stats = read_pairs(cfg, par)
        clean = [p for p in pairs if text_key(p.source) not in banned and text_key(p.target) not in banned]
        stats["dropped_eval_overlap"] = len(pairs) - len(clean)
        dropped_eval += stats["dropped_eval_overlap"]
        clean = seeded_subset(clean, par.max_pairs, seed, i)
        stats["kept"] = len(clean)
        files[parallel_name(par)] = {"lang": par.lang, **stats}
        pools.setdefault(par.lang, []).extend(clean)

    per_lang: dict[str, Any] = {}
    for lang, pool in pools.items():
        distinct = unique((p.source, p.target) for p in pool)
        counts: dict[str, Any] = {"pairs": len(pool), "duplicates": len(pool) - len(distinct)}
        n_held, n_dev = cfg.embed.heldout_pairs, cfg.embed.dev_pairs
        if n_held + n_dev >= len(distinct):
            raise ConfigError(
                f"data.parallel has {len(distinct)} distinct {lang} pairs after decontamination, too few to hold out "
                f"embed.heldout_pairs={n_held} and embed.dev_pairs={n_dev} and still train; lower them or add data"
            )
        # Pairs that share a side with a held-out or dev pair (the same English sentence with
        # another translation, say) would leak it into training: held_out_split drops them.
        split = held_out_split(distinct, [n_held, n_dev], seed, lang)
        heldout, dev = split.held_out
        counts.update(
            heldout=len(heldout), dev=len(dev), train=len(split.train), dropped_heldout_overlap=split.dropped_overlap
        )
        # Training keeps file order (the loop shuffles); held-out sets keep a fixed order.
        data.train[lang] = [ParallelPair(s, t) for s, t in split.train]
        data.dev[lang] = [ParallelPair(s, t) for s, t in dev]
        data.heldout[lang] = [ParallelPair(s, t) for s, t in heldout]
        per_lang[lang] = counts

    mono: dict[str, Any] = {}
    src = cfg.data.source_lang
    if src in cfg.data.unlabelled:
        path = cfg.data.unlabelled[src]
        c = cfg.data.columns
        examples, _ = read_unlabelled(
            cfg.data.resolve(path), columns=ColumnsConfig(text=c.text, label=None), lang=src, header=cfg.data.header
        )
        reserved = {text_key(p.source) for pairs in (*data.dev.values(), *data.heldout.values()) for p in pairs}
        texts = unique(e.text for e in examples)
        clean = [t for t in texts if text_key(t) not in banned and text_key(t) not in reserved]
        data.monolingual = seeded_subset(clean, cfg.data.max_unlabelled, seed, "mono")
        mono = {
            "file": path,
            "read": len(examples),
            "duplicates": len(examples) - len(texts),
            "dropped_eval_overlap": len(texts) - len(clean),
            "kept": len(data.monolingual),
        }

    data.summary = {
        "decontamination": {
            "enabled": cfg.embed.decontaminate,
            "evaluation_texts": len(banned),
            "dropped_pairs": dropped_eval,
            "dropped_monolingual": mono.get("dropped_eval_overlap", 0),
        },
        "files": files,
        "languages": per_lang,
        "monolingual": mono,
    }
    _log_summary(data.summary)
    return data


def parallel_name(par: ParallelConfig) -> str:
    """How summaries name a parallel file (or file pair)."""
    return par.path if not par.target_path else f"{par.path} + {Path(par.target_path).name}"


def _log_summary(summary: dict[str, Any]) -> None:
    d = summary["decontamination"]
    log.info(
        "decontamination: %d training pairs and %d monolingual texts dropped (they occur in the %d evaluation texts)",
        d["dropped_pairs"],
        d["dropped_monolingual"],
        d["evaluation_texts"],
    )
    for lang, c in summary["languages"].items():
        log.info(
            "%s: %d training pairs, %d dev, %d held out (%d duplicates, %d sharing a side with a held-out pair)",
            lang,
            c["train"],
            c["dev"],
            c["heldout"],
            c["duplicates"],
            c["dropped_heldout_overlap"],
        )
