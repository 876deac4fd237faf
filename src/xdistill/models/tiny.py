"""Tiny random encoders built from a config, for smoke runs and tests (no downloads).

``teacher.path: random:tiny`` in a config names one; it is built once (a Unigram tokenizer
trained on the given texts + a randomly initialised BERT) and kept in the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from ..errors import ModelError

RANDOM_PREFIX = "random:"
SIZES = {
    # name: (layers, hidden, heads, ffn, vocab)
    "tiny": (4, 32, 2, 64, 800),
    "small": (6, 128, 4, 256, 4000),
}
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def train_unigram_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """An XLM-R-shaped tokenizer (Unigram + metaspace, ``<s> A </s>``) trained on ``texts``."""
    texts = list(texts)
    # Unigram must hold every character as a piece; Chinese text alone brings hundreds.
    vocab_size = max(vocab_size, len(set("".join(texts))) + 300)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("<s>", "</s>")],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=512)


def create_random_encoder(out_dir: str | Path, texts: list[str], size: str = "tiny", seed: int = 0) -> Path:
    if size not in SIZES:
        raise ModelError(f"unknown random model size {size!r}; choose one of {sorted(SIZES)} (e.g. random:tiny)")
    layers, hidden, heads, ffn, vocab = SIZES[size]
    out_dir = Path(out_dir)
    tokenizer = train_unigram_tokenizer(texts, vocab)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id)
    model = BertModel(config, add_pooling_layer=False)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "xdistill_model.json").write_text(json.dumps({"kind": "encoder", "random": size, "seed": seed}))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def resolve_random_encoder(spec: str, cache_dir: str | Path, texts: list[str], seed: int = 0) -> Path:
    """Path of the random encoder named by ``random:SIZE``, building it on first use."""
    size = spec[len(RANDOM_PREFIX):]
    digest = hashlib.sha256(("\n".join(texts) + f"|{size}|{seed}").encode()).hexdigest()[:12]
    folder = Path(cache_dir) / "models" / f"random-{size}-{digest}"
    from ..distributed import barrier, is_main

    if is_main() and not (folder / "config.json").is_file():
        create_random_encoder(folder, texts, size, seed)
    barrier()  # the other processes use the folder the main one built
    return folder
