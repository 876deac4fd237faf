"""Small translation models: a joint subword tokenizer trained on the corpus and a Marian-style
transformer built from a config, saved as a Hugging Face seq2seq folder.

The folder loads with ``AutoModelForSeq2SeqLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``
(a fast tokenizer, no sentencepiece needed). Id layout follows Marian's: ``</s>`` = 0, ``<unk>`` = 1,
``<pad>`` last, the pad token doubling as the decoder start token; CTranslate2's Marian converter
expects the pad token to be the last vocabulary entry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

from ..config import Seq2SeqArchConfig
from ..io_utils import atomic_dir, atomic_write_json

log = logging.getLogger(__name__)

EOS, UNK, PAD = "</s>", "<unk>", "<pad>"
MODEL_INFO = "xdistill_model.json"


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int):
    """A Unigram tokenizer (sentencepiece-style: Metaspace, no lower-casing) trained on ``texts``.

    One vocabulary for both sides: the encoder and decoder share their embeddings, which halves
    the embedding parameters of a small student. NFC only: NFKC would turn Chinese full-width
    punctuation into ASCII and cost BLEU against references that keep it.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 1, special_tokens=[EOS, UNK], unk_token=UNK, max_piece_length=16, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([PAD])  # added after training: the last id
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A $B {EOS}",
                                                       special_tokens=[(EOS, eos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, unk_token=UNK, pad_token=PAD,
                                   model_max_length=max_length)


def build_marian(arch: Seq2SeqArchConfig, tokenizer, max_length: int):
    """A randomly initialised ``MarianMTModel`` sized by ``arch`` over ``tokenizer``'s vocabulary."""
    from transformers import MarianConfig, MarianMTModel

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=arch.d_model,
        encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers,
        encoder_attention_heads=arch.heads,
        decoder_attention_heads=arch.heads,
        encoder_ffn_dim=arch.ffn_size,
        decoder_ffn_dim=arch.ffn_size,
        max_position_embeddings=max(arch.max_positions, max_length + 2),
        dropout=arch.dropout,
        pad_token_id=pad,
        eos_token_id=eos,
        decoder_start_token_id=pad,
        forced_eos_token_id=eos,
        share_encoder_decoder_embeddings=True,
    )
    model = MarianMTModel(config)
    configure_generation(model, tokenizer, max_length)
    return model


def configure_generation(model, tokenizer, max_length: int) -> None:
    gen = model.generation_config
    gen.max_length = max_length
    gen.num_beams = 1
    gen.pad_token_id = tokenizer.pad_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.decoder_start_token_id = model.config.decoder_start_token_id
    gen.bad_words_ids = [[tokenizer.pad_token_id]]


def save_translator(model, tokenizer, folder: str | Path, info: dict) -> Path:
    """Save model + tokenizer + ``xdistill_model.json`` (task, languages, how it was made)."""
    folder = Path(folder)
    decoding = info.get("decoding") or {}
    # The repetition guard goes into generation_config.json too: `from_pretrained(...).generate()` uses it.
    for key in ("no_repeat_ngram_size", "repetition_penalty"):
        if key in decoding:
            setattr(model.generation_config, key, decoding[key])
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / MODEL_INFO, {"task": "translation", **info})
    return folder


def read_model_info(folder: str | Path) -> dict:
    path = Path(folder) / MODEL_INFO
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
