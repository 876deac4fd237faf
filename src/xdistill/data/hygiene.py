"""Data hygiene shared by every task: how texts are compared, how subsets are drawn, how pairs are held out.

* ``text_key``: the one form texts are compared in for every leak check (classification pools
  against test files, embedding and translation training data against evaluation sets, training
  pairs against held-out pairs).
* ``seeded_subset``: at most N items, drawn with a seed, kept in their original order (every
  ``max_*`` cap: ``data.max_train``, ``data.parallel[].max_pairs``, ``mt.monolingual[].max_lines``,
  the probe's ``max_train`` / ``max_test``, ...).
* ``held_out_split``: seeded held-out sets (embedding held-out and dev pairs, translation dev
  pairs) and the training rest, minus any item that shares a text with a held-out one.

Everything here is deterministic for a given seed (``random.Random`` with an int or str seed does not
depend on ``PYTHONHASHSEED``), so training and evaluation of one run, and runs that differ only in
the training seed, see the same data.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

T = TypeVar("T")
H = TypeVar("H", bound=Hashable)

__all__ = ["text_key", "unique", "seeded_subset", "held_out_split", "HeldOutSplit"]


def text_key(text: str) -> str:
    """The form texts are compared in for every leak check and decontamination, in every task.

    The rule: Unicode NFKC, then case-folding (then NFKC again, since case-folding a few characters
    leaves a non-NFKC string), then every run of whitespace collapsed to one space, ends stripped.
    So "The cat.", " the  CAT. " and the full-width "Ｔｈｅ　ｃａｔ．" are one sentence.

    Why this rule: a leak check asks "is this the same sentence?", and corpora assembled from many
    sources write the same sentence with different case (titles, all-caps reviews), different
    spacing (tabs, doubled or trailing spaces, non-breaking or ideographic spaces) and, in the CJK
    data (MARC zh, Tatoeba / FLORES cmn), full-width Latin letters, digits and punctuation. None of
    these makes a different sentence, and the models barely see them: the XLM-R / e5 tokenizers
    apply NFKC-like normalisation themselves. ``casefold`` rather than ``lower`` so that e.g.
    "STRASSE" and "straße" match. Punctuation and accents are kept: removing them would merge short
    texts that really differ ("¿Qué?" / "Que") and over-drop training data.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def unique(items: Iterable[H]) -> list[H]:
    """Items in first-seen order, each once (exact equality, not ``text_key``)."""
    return list(dict.fromkeys(items))


def _rng(seed: int | str, stream: tuple[object, ...]) -> random.Random:
    # The bare seed (classification caps) or "seed-part-part" (e.g. "13-probe-es"): the values
    # every cap used before this module existed, so the drawn subsets are unchanged.
    return random.Random(seed if not stream else "-".join(str(p) for p in (seed, *stream)))


def seeded_subset(items: Sequence[T], limit: int | None, seed: int | str, *stream: object) -> list[T]:
    """At most ``limit`` of ``items`` (all of them when ``limit`` is None or not smaller), drawn
    uniformly with ``seed`` and kept in their original order.

    ``stream`` names an independent draw from the same seed (a file index, a language), so two
    caps of one run do not pick the same positions: ``seeded_subset(x, 10, 13, "mono", 0)`` draws
    with ``random.Random("13-mono-0")``; with no ``stream`` the seed is used as it is."""
    if limit is None or len(items) <= limit:
        return list(items)
    picked = sorted(_rng(seed, stream).sample(range(len(items)), limit))
    return [items[i] for i in picked]


@dataclass
class HeldOutSplit:
    """What ``held_out_split`` returns."""

    held_out: list[list]  # one list per requested size, each in the drawn order
    train: list  # the other items in input order, minus those sharing a text with a held-out item
    reserved: set[str] = field(default_factory=set)  # text_keys of every text of every held-out item
    dropped_overlap: int = 0  # items neither held out nor trained on: they share a text with a held-out item


def held_out_split(
    items: Sequence[T],
    sizes: Sequence[int],
    seed: int | str,
    *stream: object,
    texts: Callable[[T], Iterable[str]] = lambda item: item,  # type: ignore[assignment,return-value]
) -> HeldOutSplit:
    """Hold out ``sizes[0]``, ``sizes[1]``, ... of ``items`` at random (one seeded shuffle, the
    held-out sets taken from its front in order), and keep the rest for training.

    ``items`` should be distinct (callers de-duplicate first, to count the repeats). An item is
    hashable and ``texts(item)`` gives its texts (default: the item itself, e.g. a ``(source,
    target)`` tuple). A training item that shares a text (by ``text_key``) with any held-out item is
    dropped too (the same English sentence with another translation would leak the held-out one
    into training); ``HeldOutSplit.dropped_overlap`` counts those. The seed and ``stream`` work as in
    ``seeded_subset``. Raises ``ValueError`` when the sizes add up to more than there are items;
    callers that need a training rest check for that first, with a message that names their flags.
    """
    if any(n < 0 for n in sizes) or sum(sizes) > len(items):
        raise ValueError(f"cannot hold out {list(sizes)} of {len(items)} items")
    order = list(items)
    _rng(seed, stream).shuffle(order)
    held: list[list] = []
    start = 0
    for n in sizes:
        held.append(order[start : start + n])
        start += n
    taken = {item for part in held for item in part}
    reserved = {text_key(t) for part in held for item in part for t in texts(item)}
    train = [item for item in items if item not in taken and not any(text_key(t) in reserved for t in texts(item))]
    return HeldOutSplit(held, train, reserved, dropped_overlap=len(items) - sum(map(len, held)) - len(train))


def first_per_label(examples: Sequence[T], per_label: int | None) -> list[T]:
    """The first ``per_label`` examples of each label, in file order (``None``: all of them).

    A few-label run selects on a dev set as small as its training labels (k per class), not on
    hundreds: file order, not a draw, so the k-shot files' own "first k rows of each label"
    subsets are kept as they were published."""
    if per_label is None:
        return list(examples)
    seen: dict[object, int] = {}
    out = []
    for ex in examples:
        label = getattr(ex, "label", None)
        if seen.get(label, 0) < per_label:
            seen[label] = seen.get(label, 0) + 1
            out.append(ex)
    return out
