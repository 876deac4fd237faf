"""Tiny random encoders built from a config, for smoke runs and tests (no downloads).

``teacher.path: random:tiny`` in a config names one; it is built once (a Unigram tokenizer
trained on the given texts + a randomly initialised BERT) and kept in the cache folder.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from ..distributed import barrier, is_main
from ..errors import ModelError
from ..io_utils import atomic_dir
from .folder import write_model_info

RANDOM_PREFIX = "random:"
SIZES = {
    # name: (layers, hidden, heads, ffn, vocab)
    "tiny": (4, 32, 2, 64, 800),
    "small": (6, 128, 4, 256, 4000),
}
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
METASPACE = "\u2581"  # the word-start marker of SentencePiece / the Metaspace pre-tokenizer


def train_unigram_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """An XLM-R-shaped tokenizer (Unigram + metaspace, ``<s> A </s>``) over ``texts``.

    The pieces are counted here rather than learned by ``tokenizers``' UnigramTrainer: that
    trainer iterates Rust hash maps whose seed changes with every process, so two fresh runs got
    differently ordered pieces and scores, and so different random teachers. Every character
    (Unigram must be able to spell any text) plus the most frequent words, scored by log frequency,
    ties broken by the piece itself: the same texts always give the same tokenizer.
    """
    normalizer = normalizers.NFKC()
    words: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for text in texts:
        for word in normalizer.normalize_str(text).split():
            words[METASPACE + word] += 1
            chars.update(word)
    chars[METASPACE] += sum(words.values())
    n_words = max(0, vocab_size - len(SPECIALS) - len(chars))
    pieces = chars + Counter(dict(sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:n_words]))
    total = sum(pieces.values())
    vocab = [(t, 0.0) for t in SPECIALS]
    vocab += [(p, math.log(c / total)) for p, c in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))]
    tok = Tokenizer(models.Unigram(vocab, unk_id=SPECIALS.index("<unk>"), byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("<s>", "</s>")],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=512,
    )


def create_random_encoder(out_dir: str | Path, texts: list[str], size: str = "tiny", seed: int = 0) -> Path:
    if size not in SIZES:
        raise ModelError(f"unknown random model size {size!r}; choose one of {sorted(SIZES)} (e.g. random:tiny)")
    layers, hidden, heads, ffn, vocab = SIZES[size]
    out_dir = Path(out_dir)
    tokenizer = train_unigram_tokenizer(texts, vocab)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Its own random stream: a run that builds the encoder must leave torch's global generator as a
    # run that finds it cached does, or the two would draw different heads and dropout masks.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_model_info(tmp, {"kind": "encoder", "random": size, "seed": seed})
    return out_dir


def resolve_random_encoder(spec: str, cache_dir: str | Path, texts: list[str], seed: int = 0) -> Path:
    """Path of the random encoder named by ``random:SIZE``, building it on first use."""
    size = spec[len(RANDOM_PREFIX) :]
    digest = hashlib.sha256(("\n".join(texts) + f"|{size}|{seed}").encode()).hexdigest()[:12]
    folder = Path(cache_dir) / "models" / f"random-{size}-{digest}"
    if is_main() and not (folder / "config.json").is_file():
        create_random_encoder(folder, texts, size, seed)
    barrier()  # the other processes use the folder the main one built
    return folder
