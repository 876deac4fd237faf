"""Vocabulary trimming: keep only the pieces a student's corpora use.

A multilingual teacher such as multilingual-e5-small spends most of its parameters on word
embeddings (96M of 117M for a 250k-piece XLM-R SentencePiece vocabulary). A student for a few
languages only needs the pieces that occur in its training text. Trimming

1. counts piece ids over the corpus with the fast tokenizer (:func:`select_pieces`),
2. rewrites the tokenizer's backend JSON with the kept pieces under new, dense ids
   (:func:`trim_tokenizer`; Unigram, WordPiece and BPE models),
3. moves the matching embedding rows into a smaller matrix (:func:`trim_embeddings`).

The id mapping is one list, ``kept_ids``: new id ``i`` is old id ``kept_ids[i]``. Its order is
fixed by :func:`select_pieces`:

* first the special / added tokens that live in the model vocabulary, in their original
  relative order (so ``<s>=0 <pad>=1 </s>=2 <unk>=3`` keep their ids when they were 0..3, which
  ``XLMRobertaTokenizer`` relies on: it rebuilds its Unigram model with ``unk_id=3``);
* then every other kept piece, in old-id order;
* last the added tokens that are *not* in the model vocabulary (ids past the model's own
  vocabulary, e.g. a ``<mask>`` added on top), in old-id order: the ``tokenizers`` library gives
  such tokens the ids right after the model vocabulary, so they must stay at the end.

Guarantees: for text whose pieces were all kept, the trimmed tokenizer yields the same pieces
(``new_ids == [old_to_new[i] for i in old_ids]``) and the trimmed model the same outputs
(only embedding rows moved). Text with dropped pieces still tokenizes: Unigram re-segments
with the remaining pieces (every single character seen in the corpus is kept, unknown
characters become ``<unk>``), WordPiece falls back to shorter pieces or ``[UNK]``, BPE to
shorter pieces (the parts needed to build each kept piece are kept too).

Typical use::

    tokenizer, result = trim_vocabulary(model, tokenizer, texts)   # model is changed in place
    model.save_pretrained(out)          # safetensors
    tokenizer.save_pretrained(out)      # AutoTokenizer / AutoModel load the folder
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ModelError

__all__ = [
    "TrimResult",
    "select_pieces",
    "trim_tokenizer",
    "trim_embeddings",
    "trim_vocabulary",
]

SUPPORTED_MODEL_TYPES = ("Unigram", "WordPiece", "BPE")

# Config attributes that hold token ids and must follow the new numbering.
_CONFIG_ID_ATTRS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "mask_token_id",
    "unk_token_id",
    "decoder_start_token_id",
)

# init kwargs that describe the *old* vocabulary and must not reach the trimmed tokenizer.
_DROP_INIT_KWARGS = {
    "vocab",
    "merges",
    "vocab_file",
    "merges_file",
    "tokenizer_file",
    "tokenizer_object",
    "added_tokens_decoder",
    "name_or_path",
    "post_processor",
    "tokenizer_padding",
    "tokenizer_truncation",
    "_spm_precompiled_charsmap",
    "_json_truncation",
    "_json_padding",
    "special_tokens_map_file",
}


@dataclass
class TrimResult:
    """What a trim kept.

    ``kept_ids`` lists old ids in new-id order (new id ``i`` is old id ``kept_ids[i]``).
    ``coverage`` is the share of corpus tokens whose piece was kept (1.0 with ``min_count=1``
    and no ``max_pieces``).
    """

    kept_ids: list[int]
    old_vocab_size: int
    new_vocab_size: int
    coverage: float
    _old_to_new: dict[int, int] | None = field(default=None, repr=False, compare=False)

    @property
    def old_to_new(self) -> dict[int, int]:
        """Mapping old id -> new id for the kept ids."""
        if self._old_to_new is None:
            self._old_to_new = {old: new for new, old in enumerate(self.kept_ids)}
        return self._old_to_new

    def summary(self) -> str:
        return (
            f"vocabulary {self.old_vocab_size} -> {self.new_vocab_size} pieces "
            f"({self.new_vocab_size / max(self.old_vocab_size, 1):.1%}), "
            f"corpus token coverage {self.coverage:.4%}"
        )


# ----------------------------------------------------------------------------------------------
# helpers


def _backend(tokenizer):
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(
            f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer; vocabulary "
            "trimming needs one (load it with AutoTokenizer, which returns a fast tokenizer)."
        )
    return backend


def _tokenizer_json(tokenizer) -> dict:
    return json.loads(_backend(tokenizer).to_str())


def _model_pieces(model_json: dict) -> list[str] | None:
    """Pieces of the backend model, indexed by id; None for unknown model types."""
    mtype = model_json.get("type")
    vocab = model_json.get("vocab")
    if mtype == "Unigram":
        return [entry[0] for entry in vocab]
    if mtype in ("WordPiece", "BPE", "WordLevel") and isinstance(vocab, dict):
        size = max(vocab.values(), default=-1) + 1
        pieces: list[str | None] = [None] * size
        for piece, i in vocab.items():
            pieces[i] = piece
        if any(p is None for p in pieces):
            raise ModelError(f"the {mtype} vocabulary of the tokenizer has holes in its ids")
        return pieces  # type: ignore[return-value]
    return None


def _model_unk_id(model_json: dict, pieces: list[str] | None) -> int | None:
    mtype = model_json.get("type")
    if mtype == "Unigram":
        return model_json.get("unk_id")
    unk = model_json.get("unk_token")
    if unk is None or pieces is None:
        return None
    try:
        return pieces.index(unk)
    except ValueError:
        return None


def _merge_pairs(merges: list) -> list[tuple[str, str]]:
    out = []
    for merge in merges:
        if isinstance(merge, str):
            a, b = merge.split(" ", 1)
        else:
            a, b = merge
        out.append((a, b))
    return out


def _merge_result(a: str, b: str, prefix: str | None) -> str:
    if prefix and b.startswith(prefix):
        return a + b[len(prefix) :]
    return a + b


def _bpe_parents(model_json: dict) -> dict[str, tuple[str, str]]:
    """For each piece a BPE merge produces: the two parts of its highest-priority merge."""
    prefix = model_json.get("continuing_subword_prefix")
    parents: dict[str, tuple[str, str]] = {}
    for a, b in _merge_pairs(model_json.get("merges") or []):
        parents.setdefault(_merge_result(a, b, prefix), (a, b))
    return parents


def _closure(
    ids: Iterable[int], parents: dict[str, tuple[str, str]], pieces: list[str], index: dict[str, int]
) -> set[int]:
    """``ids`` plus every piece needed (recursively) to build them by BPE merges."""
    out: set[int] = set()
    stack = list(ids)
    while stack:
        i = stack.pop()
        if i in out:
            continue
        out.add(i)
        if i < len(pieces):
            parts = parents.get(pieces[i])
            if parts:
                for part in parts:
                    j = index.get(part)
                    if j is not None and j not in out:
                        stack.append(j)
    return out


def _script(char: str) -> str | None:
    """The writing system of a letter, from its Unicode name ("LATIN", "CJK", "CYRILLIC", ...);
    None for a character that is not a letter (digits and punctuation belong to every script)."""
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else None


def _piece_scripts(piece: str) -> set[str]:
    return {s for s in map(_script, piece) if s is not None}


def _most_frequent_pieces(
    model_json: dict, n_model: int, n: int, pieces: list[str] | None, scripts: set[str] | None
) -> list[int]:
    """The ``n`` pieces the model ranks most frequent, among the pieces written only in ``scripts``
    (the corpus's writing systems): a multilingual vocabulary spends most of its top pieces on
    languages the student never reads, so English words as common as "tried" fall outside its
    overall top 20,000 and text unlike the corpus gets re-segmented into pieces the teacher never
    used. ``scripts`` None, or a model without a piece list: no filter."""
    if model_json.get("type") == "Unigram":
        scores = np.asarray([float(entry[1]) for entry in model_json["vocab"]])
        order = np.argsort(-scores, kind="stable")
    else:
        order = np.arange(n_model)
    if scripts is None or pieces is None:
        return [int(i) for i in order[:n]]
    chosen: list[int] = []
    for i in order:
        if i < len(pieces) and _piece_scripts(pieces[i]) <= scripts:
            chosen.append(int(i))
            if len(chosen) >= n:
                break
    return chosen


def _protected_ids(tokenizer, data: dict, pieces: list[str] | None) -> set[int]:
    ids = {int(t["id"]) for t in data.get("added_tokens") or []}
    ids.update(int(i) for i in tokenizer.all_special_ids if i is not None)
    unk = _model_unk_id(data["model"], pieces)
    if unk is not None:
        ids.add(int(unk))
    ids.update(_post_processor_ids(data.get("post_processor")))  # e.g. a text prefix (text_prefix.py)
    return ids


def _post_processor_ids(proc: dict | None) -> set[int]:
    if not proc:
        return set()
    ids = {int(i) for spec in (proc.get("special_tokens") or {}).values() for i in spec.get("ids", [])}
    for key in ("sep", "cls"):
        if proc.get(key):
            ids.add(int(proc[key][1]))
    for member in proc.get("processors") or []:
        ids |= _post_processor_ids(member)
    return ids


def _order_ids(kept: set[int], protected: set[int], n_model: int) -> list[int]:
    first = sorted(i for i in kept if i in protected and i < n_model)
    middle = sorted(i for i in kept if i not in protected and i < n_model)
    last = sorted(i for i in kept if i >= n_model)
    return first + middle + last


def _batches(texts: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for n, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"select_pieces: text #{n} is {type(text).__name__}, not str")
        batch.append(text)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----------------------------------------------------------------------------------------------
# 1. selection


def select_pieces(
    tokenizer,
    texts: Iterable[str],
    *,
    min_count: int = 1,
    max_pieces: int | None = None,
    batch_size: int = 1000,
    progress: bool = False,
    keep_texts: Iterable[str] = (),
    keep_top: int = 0,
) -> tuple[list[int], float]:
    """Choose the pieces to keep; return ``(kept_ids, coverage)``.

    Token ids are counted over ``texts`` with the fast tokenizer's backend (batched, no special
    tokens, no truncation). Always kept, whatever the counts: every special and added token, the
    model's unknown token, every single-character piece whose character occurs in the corpus
    pieces (``c`` and, for WordPiece, ``##c``; Unigram and BPE fall back to them), the byte
    pieces ``<0x00>..<0xFF>`` of a ``byte_fallback`` model, and for BPE every piece needed to
    build a kept piece by merges, and every piece of ``keep_texts`` (strings the student will
    always see whatever the corpus: e5's ``"passage: "`` / ``"query: "`` prefixes, prompt or label
    words; they do not count towards ``coverage``), and the ``keep_top`` pieces the tokenizer's
    model ranks most frequent (Unigram: the highest log-probability scores; WordPiece and BPE: the
    lowest ids, their frequency / merge order) among those written in the corpus's scripts
    (Latin, CJK, ...: see :func:`_most_frequent_pieces`), so text unlike the corpus (a new domain, words the
    training text lacks) still finds its pieces. Other pieces are kept when they occur at least ``min_count``
    times; ``max_pieces`` caps the size of the whole new vocabulary (always-kept pieces
    included, most frequent pieces first; a :class:`ConfigError` if the always-kept pieces alone
    exceed it).

    ``kept_ids`` are old ids in new-id order (see the module docstring). ``coverage`` is the
    share of corpus tokens whose piece is kept.
    """
    if not isinstance(min_count, int) or min_count < 1:
        raise ConfigError(f"min_count must be an integer >= 1, got {min_count!r}")
    if not isinstance(keep_top, int) or keep_top < 0:
        raise ConfigError(f"keep_top must be an integer >= 0, got {keep_top!r}")
    if max_pieces is not None and (not isinstance(max_pieces, int) or max_pieces < 1):
        raise ConfigError(f"max_pieces must be a positive integer or None, got {max_pieces!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")

    from tokenizers import Tokenizer

    data = _tokenizer_json(tokenizer)
    model_json = data["model"]
    mtype = model_json.get("type")
    pieces = _model_pieces(model_json)
    # A private copy of the backend, without the truncation / padding a previous call may have
    # left on the shared one (truncation would silently drop the tail of long lines).
    backend = Tokenizer.from_str(json.dumps(data))
    backend.no_truncation()
    backend.no_padding()
    old_size = backend.get_vocab_size(with_added_tokens=True)
    n_model = len(pieces) if pieces is not None else backend.get_vocab_size(with_added_tokens=False)

    counts = np.zeros(old_size, dtype=np.int64)
    encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
    batches = _batches(texts, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="counting pieces", unit="batch")
    for batch in batches:
        encodings = encode(batch, add_special_tokens=False)
        ids = [enc.ids for enc in encodings]
        flat = np.fromiter((i for seq in ids for i in seq), dtype=np.int64)
        if flat.size:
            counts += np.bincount(flat, minlength=old_size)[:old_size]
    total = int(counts.sum())

    protected = {i for i in _protected_ids(tokenizer, data, pieces) if 0 <= i < old_size}
    keep_texts = list(keep_texts)
    for n, text in enumerate(keep_texts):
        if not isinstance(text, str):
            raise ConfigError(f"select_pieces: keep_texts #{n} is {type(text).__name__}, not str")
    forced = {i for enc in encode(keep_texts, add_special_tokens=False) for i in enc.ids} if keep_texts else set()
    mandatory = set(protected) | forced

    def piece_of(i: int) -> str | None:
        if pieces is not None and i < len(pieces):
            return pieces[i]
        return backend.id_to_token(i)

    # single characters seen in the corpus pieces
    prefix = model_json.get("continuing_subword_prefix") if mtype in ("WordPiece", "BPE") else None
    suffix = model_json.get("end_of_word_suffix") if mtype == "BPE" else None
    chars: set[str] = set()
    for i in sorted({int(i) for i in np.flatnonzero(counts[:n_model])} | {i for i in forced if i < n_model}):
        piece = piece_of(i)
        if piece is None:
            continue
        if prefix and piece.startswith(prefix):
            piece = piece[len(prefix) :]
        if suffix and piece.endswith(suffix):
            piece = piece[: -len(suffix)]
        chars.update(piece)
    index: dict[str, int] = {}
    if pieces is not None:
        index = {p: i for i, p in enumerate(pieces)}
        for c in chars:
            for candidate in (c, f"{prefix}{c}" if prefix else None, f"{c}{suffix}" if suffix else None):
                if candidate is not None and candidate in index:
                    mandatory.add(index[candidate])
        if model_json.get("byte_fallback"):
            for b in range(256):
                j = index.get(f"<0x{b:02X}>")
                if j is not None:
                    mandatory.add(j)

    parents = _bpe_parents(model_json) if mtype == "BPE" and pieces is not None else {}

    def close(ids: Iterable[int]) -> set[int]:
        return _closure(ids, parents, pieces, index) if parents else set(ids)

    if keep_top:
        scripts = {s for c in chars if (s := _script(c)) is not None}
        mandatory |= set(_most_frequent_pieces(model_json, n_model, keep_top, pieces, scripts))
    mandatory = close(mandatory)
    candidates = [int(i) for i in np.flatnonzero(counts >= min_count) if int(i) not in mandatory]

    if max_pieces is None:
        kept = close(mandatory | set(candidates))
    else:
        if len(mandatory) > max_pieces:
            raise ConfigError(
                f"max_pieces={max_pieces} is smaller than the {len(mandatory)} pieces that are always "
                "kept (special tokens and the single characters of the corpus); raise max_pieces"
            )
        kept = set(mandatory)
        candidates.sort(key=lambda i: (-counts[i], i))
        for i in candidates:
            if len(kept) >= max_pieces:
                break
            if i in kept:
                continue
            add = close([i]) - kept
            if len(kept) + len(add) <= max_pieces:
                kept |= add

    kept_list = _order_ids(kept, protected, n_model)
    kept_arr = np.asarray(kept_list, dtype=np.int64)
    covered = int(counts[kept_arr].sum()) if kept_arr.size else 0
    coverage = 1.0 if total == 0 else covered / total
    return kept_list, coverage


# ----------------------------------------------------------------------------------------------
# 2. tokenizer


def _remap_post_processor(proc: dict | None, old_to_new: dict[int, int]) -> dict | None:
    if proc is None:
        return None

    def remap(i: int, what: str) -> int:
        if i not in old_to_new:
            raise ModelError(
                f"the tokenizer's post-processor uses id {i} ({what}), which the trimmed vocabulary "
                "drops; keep it in kept_ids"
            )
        return old_to_new[i]

    ptype = proc.get("type")
    if ptype == "TemplateProcessing":
        for name, spec in (proc.get("special_tokens") or {}).items():
            spec["ids"] = [remap(int(i), name) for i in spec["ids"]]
    elif ptype in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            if key in proc and proc[key] is not None:
                tok, i = proc[key]
                proc[key] = [tok, remap(int(i), tok)]
    elif ptype == "Sequence":
        proc["processors"] = [_remap_post_processor(p, old_to_new) for p in proc.get("processors") or []]
    return proc


def _validate_kept(kept_ids: list[int], old_size: int) -> dict[int, int]:
    kept_ids = [int(i) for i in kept_ids]
    old_to_new = {old: new for new, old in enumerate(kept_ids)}
    if len(old_to_new) != len(kept_ids):
        raise ModelError("kept_ids contains duplicate ids")
    bad = [i for i in kept_ids if not 0 <= i < old_size]
    if bad:
        raise ModelError(f"kept_ids contains ids outside the vocabulary (size {old_size}): {bad[:5]}")
    return old_to_new


def trim_tokenizer(tokenizer, kept_ids: list[int]):
    """A new fast tokenizer holding only ``kept_ids`` (old ids, in new-id order).

    Rewrites the backend JSON (``tokenizer.backend_tokenizer.to_str()``): the model vocabulary
    (Unigram list with ``unk_id``, WordPiece dict, BPE dict with the merges whose parts and
    result survive), the ids of ``added_tokens``, of the post-processor (TemplateProcessing,
    RobertaProcessing, BertProcessing, Sequence) and of the padding setting. Normalizer,
    pre-tokenizer and decoder are unchanged. The result is wrapped in the same transformers
    tokenizer class (falling back to ``PreTrainedTokenizerFast`` if that class cannot take a
    ready backend) with the same special tokens, ``model_max_length`` and padding /
    truncation sides. The input tokenizer is not modified.

    Kept ids past the model's own vocabulary (added tokens) must come last, in old-id order;
    :func:`select_pieces` orders them so. Dropping a special token raises :class:`ModelError`;
    so does a model type other than Unigram, WordPiece or BPE.
    """
    from tokenizers import Tokenizer

    data = _tokenizer_json(tokenizer)
    model_json = data["model"]
    mtype = model_json.get("type")
    if mtype not in SUPPORTED_MODEL_TYPES:
        raise ModelError(
            f"cannot trim a tokenizer whose model type is {mtype!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    pieces = _model_pieces(model_json)
    assert pieces is not None
    n_model = len(pieces)
    old_size = _backend(tokenizer).get_vocab_size(with_added_tokens=True)
    old_to_new = _validate_kept(kept_ids, old_size)
    kept_ids = [int(i) for i in kept_ids]

    in_model = [i for i in kept_ids if i < n_model]
    extra = [i for i in kept_ids if i >= n_model]
    if kept_ids != in_model + extra or extra != sorted(extra):
        raise ModelError(
            "kept_ids must list the model-vocabulary ids first and the added tokens past it "
            f"(ids >= {n_model}) last, in their old order; use select_pieces to build kept_ids"
        )

    for tok_id in tokenizer.all_special_ids:
        if tok_id is not None and tok_id not in old_to_new:
            tok = tokenizer.convert_ids_to_tokens(tok_id)
            raise ModelError(f"kept_ids drops the special token {tok!r} (id {tok_id}); keep every special token")
    unk_old = _model_unk_id(model_json, pieces)
    if unk_old is not None and unk_old not in old_to_new:
        raise ModelError(f"kept_ids drops the unknown token {pieces[unk_old]!r} (id {unk_old})")

    # model
    if mtype == "Unigram":
        vocab = model_json["vocab"]
        model_json["vocab"] = [vocab[i] for i in in_model]
        if model_json.get("unk_id") is not None:
            model_json["unk_id"] = old_to_new[int(model_json["unk_id"])]
    else:
        model_json["vocab"] = {pieces[i]: new for new, i in enumerate(in_model)}
        if mtype == "BPE":
            kept_pieces = model_json["vocab"]
            prefix = model_json.get("continuing_subword_prefix")
            merges = model_json.get("merges") or []
            new_merges = []
            for merge, (a, b) in zip(merges, _merge_pairs(merges)):
                if a in kept_pieces and b in kept_pieces and _merge_result(a, b, prefix) in kept_pieces:
                    new_merges.append(merge)
            model_json["merges"] = new_merges

    # added tokens
    added = []
    for tok in data.get("added_tokens") or []:
        old = int(tok["id"])
        if old in old_to_new:
            tok["id"] = old_to_new[old]
            added.append(tok)
    data["added_tokens"] = sorted(added, key=lambda t: t["id"])

    data["post_processor"] = _remap_post_processor(data.get("post_processor"), old_to_new)
    padding = data.get("padding")
    if padding and padding.get("pad_id") is not None:
        pad_old = int(padding["pad_id"])
        if pad_old not in old_to_new:
            raise ModelError(f"kept_ids drops the padding id {pad_old}")
        padding["pad_id"] = old_to_new[pad_old]

    backend = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    if backend.get_vocab_size(with_added_tokens=True) != len(kept_ids):
        raise ModelError(
            f"trimmed tokenizer has {backend.get_vocab_size(with_added_tokens=True)} ids, expected "
            f"{len(kept_ids)} (duplicate pieces in the vocabulary?)"
        )
    for tok in data["added_tokens"]:
        if backend.token_to_id(tok["content"]) != tok["id"]:
            raise ModelError(
                f"added token {tok['content']!r} got id {backend.token_to_id(tok['content'])} instead of "
                f"{tok['id']} in the trimmed tokenizer"
            )

    return rewrap(tokenizer, backend)


def rewrap(tokenizer, backend, fallback_cls=None):
    """``backend`` (a ``tokenizers.Tokenizer``) in the transformers class of ``tokenizer``, with its
    special tokens, ``model_max_length`` and padding / truncation sides."""
    from transformers import PreTrainedTokenizerFast

    fallback_cls = fallback_cls or PreTrainedTokenizerFast
    kwargs: dict[str, Any] = {k: v for k, v in tokenizer.init_kwargs.items() if k not in _DROP_INIT_KWARGS}
    special_map = getattr(tokenizer, "_special_tokens_map", None)
    if special_map is None:
        special_map = {k: getattr(tokenizer, k, None) for k in tokenizer.SPECIAL_TOKENS_ATTRIBUTES}
    for key, value in special_map.items():
        if value is not None:
            kwargs[key] = value
    extra = getattr(tokenizer, "_extra_special_tokens", None)
    if extra:
        kwargs["extra_special_tokens"] = list(extra)
    kwargs.pop("additional_special_tokens", None)
    kwargs["model_max_length"] = tokenizer.model_max_length
    kwargs["padding_side"] = tokenizer.padding_side
    kwargs["truncation_side"] = tokenizer.truncation_side

    cls = type(tokenizer)
    new = None
    if cls is not fallback_cls and isinstance(tokenizer, fallback_cls):
        try:
            new = cls(tokenizer_object=backend, **kwargs)
        except (TypeError, ValueError):
            new = None
        # A class whose __init__ rebuilt its own model instead of taking ours is no use.
        if new is not None and new.backend_tokenizer.get_vocab_size(True) != backend.get_vocab_size(True):
            new = None
    if new is None:
        new = fallback_cls(tokenizer_object=backend, **kwargs)
    return new


# ----------------------------------------------------------------------------------------------
# 3. model


def _remap_config_ids(config, old_to_new: dict[int, int], where: str) -> dict[str, Any]:
    """New values for the token-id attributes of ``config``; raises before anything changes."""
    updates: dict[str, Any] = {}
    if config is None:
        return updates
    for attr in _CONFIG_ID_ATTRS:
        value = getattr(config, attr, None)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        new_values = []
        for v in values:
            if int(v) not in old_to_new:
                raise ModelError(
                    f"{where}.{attr}={v} is not among the kept ids; keep it (add it to kept_ids) or "
                    f"unset {attr} before trimming"
                )
            new_values.append(old_to_new[int(v)])
        updates[attr] = new_values if isinstance(value, (list, tuple)) else new_values[0]
    return updates


@torch.no_grad()
def trim_embeddings(model, kept_ids: list[int]) -> None:
    """Keep only the embedding rows ``kept_ids`` (old ids, in new-id order), in place.

    The input embedding matrix (``model.get_input_embeddings()``) gets the selected rows; an
    output embedding / LM head (``model.get_output_embeddings()``), tied or not, is sliced the
    same way together with its bias; any parameter shared with these (tied weights, a tied
    bias such as BERT's ``cls.predictions.bias``) is replaced everywhere it is used. The
    embedding's ``padding_idx``, ``config.vocab_size`` and the config's token ids
    (``pad_token_id``, ``bos_token_id``, ``eos_token_id``, ...) are remapped; a :class:`ModelError`
    is raised (before anything changes) if one of those ids was dropped.
    """
    emb = model.get_input_embeddings()
    if emb is None or not hasattr(emb, "weight"):
        raise ModelError(f"{type(model).__name__} has no input embedding matrix to trim")
    old_rows = emb.weight.shape[0]
    old_to_new = _validate_kept(kept_ids, old_rows)
    idx = torch.as_tensor([int(i) for i in kept_ids], dtype=torch.long, device=emb.weight.device)
    n = len(kept_ids)

    config_updates = _remap_config_ids(getattr(model, "config", None), old_to_new, "config")
    gen_config = getattr(model, "generation_config", None)
    gen_updates = _remap_config_ids(gen_config, old_to_new, "generation_config")
    pad_idx = getattr(emb, "padding_idx", None)
    new_pad_idx = None
    if pad_idx is not None:
        new_pad_idx = old_to_new.get(int(pad_idx) % old_rows)

    out = model.get_output_embeddings()
    replacements: dict[int, nn.Parameter] = {}

    def sliced(param: nn.Parameter) -> nn.Parameter:
        new = nn.Parameter(param.data.index_select(0, idx.to(param.device)).clone(), requires_grad=param.requires_grad)
        replacements[id(param)] = new
        return new

    old_in_weight = emb.weight
    sliced(old_in_weight)
    if out is not None:
        if getattr(out, "weight", None) is not None and id(out.weight) not in replacements:
            if out.weight.shape[0] != old_rows:
                raise ModelError(
                    f"the output embeddings have {out.weight.shape[0]} rows but the input embeddings "
                    f"{old_rows}; cannot trim them together"
                )
            sliced(out.weight)
        bias = getattr(out, "bias", None)
        if bias is not None and id(bias) not in replacements:
            sliced(bias)

    # Swap every use of a replaced parameter (this keeps tied weights tied).
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and id(param) in replacements:
                module._parameters[name] = replacements[id(param)]

    if isinstance(emb, nn.Embedding) or hasattr(emb, "num_embeddings"):
        emb.num_embeddings = n
    if pad_idx is not None:
        emb.padding_idx = new_pad_idx
    if out is not None and hasattr(out, "out_features"):
        out.out_features = n

    config = getattr(model, "config", None)
    if config is not None:
        for attr, value in config_updates.items():
            setattr(config, attr, value)
        config.vocab_size = n
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else None
        if text_config is not None and text_config is not config and hasattr(text_config, "vocab_size"):
            text_config.vocab_size = n
    if gen_config is not None:
        for attr, value in gen_updates.items():
            setattr(gen_config, attr, value)


# ----------------------------------------------------------------------------------------------
# all together


def trim_vocabulary(
    model,
    tokenizer,
    texts: Iterable[str],
    *,
    min_count: int = 1,
    max_pieces: int | None = None,
    batch_size: int = 1000,
    progress: bool = False,
    keep_texts: Iterable[str] = (),
):
    """Trim ``model`` and ``tokenizer`` to the pieces ``texts`` use.

    Selection as in :func:`select_pieces` (``min_count``, ``max_pieces``, ``keep_texts``: for an
    e5 teacher pass ``keep_texts=["passage: ", "query: "]`` or prefix the corpus texts, or the
    prefix pieces may be dropped and re-segmented differently from the teacher).

    Returns ``(new_tokenizer, result)``: a new tokenizer (the input one is left unchanged) and
    a :class:`TrimResult`. The model is changed **in place** (see :func:`trim_embeddings`); pass
    a copy if the original is still needed. Save both with ``save_pretrained`` into one folder
    to get a student that ``AutoModel`` / ``AutoTokenizer`` load.
    """
    old_size = _backend(tokenizer).get_vocab_size(with_added_tokens=True)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < old_size:
        raise ModelError(
            f"the model has {rows} embedding rows but the tokenizer {old_size} ids; they do not belong together"
        )
    kept_ids, coverage = select_pieces(
        tokenizer,
        texts,
        min_count=min_count,
        max_pieces=max_pieces,
        batch_size=batch_size,
        progress=progress,
        keep_texts=keep_texts,
    )
    new_tokenizer = trim_tokenizer(tokenizer, kept_ids)
    trim_embeddings(model, kept_ids)
    result = TrimResult(
        kept_ids=kept_ids,
        old_vocab_size=old_size,
        new_vocab_size=len(kept_ids),
        coverage=coverage,
    )
    return new_tokenizer, result
