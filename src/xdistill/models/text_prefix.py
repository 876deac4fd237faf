"""A text prefix (e5's ``"query: "``) written into the tokenizer, so every user of a saved model
gets it without knowing about it.

A classifier xdistill saves is loaded by ``transformers.pipeline("text-classification")`` and by
``AutoTokenizer`` users who never heard of a prefix. Prepending it as a string in xdistill's
own code would make their inputs differ from the ones the model was trained on. Instead, the
prefix's pieces become one more special token of the tokenizer's post-processor (a
``TemplateProcessing``: ``<s> [query:] $A </s>``), so ``tokenizer(text)`` yields exactly the ids
of ``prefix + text``, and truncation counts the prefix like the start and end tokens.

The pieces are the ones the tokenizer gives ``prefix + text`` before the text's own pieces; a
prefix that changes how the text after it is split (one without a trailing space before a
word-piece tokenizer that merges across it) cannot be moved into the template and is refused.
"""

from __future__ import annotations

import copy
import json

from tokenizers import Tokenizer

from ..errors import ModelError

PREFIX_TOKEN = "xdistill:text_prefix"  # the name of the prefix in the post-processor's special tokens
# Texts of several scripts and shapes; the prefix must split off the same way before each.
_PROBES = ("x", "Great product, works well.", "El producto llegó roto.", "质量很好，非常满意。", "ok", "42 stars!")


def prefix_piece_ids(tokenizer, prefix: str) -> list[int]:
    """The ids ``prefix`` contributes to ``tokenizer(prefix + text)``, the same for every text."""
    backend = tokenizer.backend_tokenizer
    found: list[int] | None = None
    for probe in _PROBES:
        full = backend.encode(prefix + probe, add_special_tokens=False).ids
        tail = backend.encode(probe, add_special_tokens=False).ids
        head = full[: len(full) - len(tail)]
        if full[len(full) - len(tail) :] != tail or (found is not None and head != found):
            raise ModelError(
                f"teacher.text_prefix {prefix!r} changes how the text after it is tokenised (e.g. before "
                f"{probe!r}), so it cannot be part of the tokenizer; end the prefix with a space or set it to ''"
            )
        found = head
    if not found:
        raise ModelError(f"teacher.text_prefix {prefix!r} has no tokens of its own; set it to ''")
    return found


def with_text_prefix(tokenizer, prefix: str):
    """A copy of ``tokenizer`` that inserts ``prefix``'s pieces before the first text of every
    input (the input tokenizer is unchanged); ``prefix=""`` returns ``tokenizer`` itself."""
    if not prefix:
        return tokenizer
    from .vocab_trim import rewrap  # the tokenizer-rebuilding helper trimming uses too

    ids = prefix_piece_ids(tokenizer, prefix)
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    data["post_processor"] = _with_prefix(data.get("post_processor"), ids, tokenizer.convert_ids_to_tokens(ids))
    return rewrap(tokenizer, Tokenizer.from_str(json.dumps(data, ensure_ascii=False)))


def has_text_prefix(tokenizer) -> bool:
    """Whether ``tokenizer`` already carries a text prefix (see :func:`with_text_prefix`)."""
    proc = json.loads(tokenizer.backend_tokenizer.to_str()).get("post_processor") or {}
    members = proc.get("processors") or [proc]
    return any(PREFIX_TOKEN in (m.get("special_tokens") or {}) for m in members)


def _with_prefix(proc: dict | None, ids: list[int], tokens: list[str]) -> dict:
    if proc is not None and proc.get("type") == "Sequence":
        proc = copy.deepcopy(proc)
        members = proc.get("processors") or []
        for i, member in enumerate(members):
            if member.get("type") in ("TemplateProcessing", "RobertaProcessing", "BertProcessing"):
                members[i] = _with_prefix(member, ids, tokens)
                return proc
        members.append(_with_prefix(None, ids, tokens))
        return proc
    template = _as_template(proc)
    marker = {"SpecialToken": {"id": PREFIX_TOKEN, "type_id": 0}}
    for key in ("single", "pair"):
        items = template[key]
        first = next(i for i, item in enumerate(items) if "Sequence" in item)
        template[key] = items[:first] + [marker] + items[first:]
    template["special_tokens"][PREFIX_TOKEN] = {"id": PREFIX_TOKEN, "ids": list(ids), "tokens": list(tokens)}
    return template


def _as_template(proc: dict | None) -> dict:
    """``proc`` as an equivalent TemplateProcessing (a copy)."""
    seq = lambda name, type_id=0: {"Sequence": {"id": name, "type_id": type_id}}  # noqa: E731
    tok = lambda name, type_id=0: {"SpecialToken": {"id": name, "type_id": type_id}}  # noqa: E731
    if proc is None:
        return {
            "type": "TemplateProcessing",
            "single": [seq("A")],
            "pair": [seq("A"), seq("B", 1)],
            "special_tokens": {},
        }
    ptype = proc.get("type")
    if ptype == "TemplateProcessing":
        return copy.deepcopy(proc)
    if ptype in ("RobertaProcessing", "BertProcessing"):
        (sep, sep_id), (cls, cls_id) = proc["sep"], proc["cls"]
        specials = {name: {"id": name, "ids": [i], "tokens": [name]} for name, i in ((cls, cls_id), (sep, sep_id))}
        if ptype == "RobertaProcessing":
            pair = [tok(cls), seq("A"), tok(sep), tok(sep), seq("B"), tok(sep)]
        else:
            pair = [tok(cls), seq("A"), tok(sep), seq("B", 1), tok(sep, 1)]
        single = [tok(cls), seq("A"), tok(sep)]
        return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}
    raise ModelError(
        f"cannot put teacher.text_prefix into a tokenizer whose post-processor is {ptype!r}; set "
        "teacher.text_prefix to '' (after fine-tuning a classifier needs no prefix)"
    )
