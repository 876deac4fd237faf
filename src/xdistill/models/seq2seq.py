"""Small translation models: a joint subword tokenizer trained on the corpus and a Marian-style
transformer built from a config, saved as a Hugging Face seq2seq folder.

The folder loads with ``AutoModelForSeq2SeqLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``:
a fast tokenizer over one joint vocabulary (no sentencepiece needed), or, with per-side
vocabularies, a ``MarianTokenizer`` over two sentencepiece models (``source.spm``, ``target.spm``).
Id layout follows Marian's: ``</s>`` = 0, ``<unk>`` = 1, ``<pad>`` last, the pad token doubling as
the decoder start token; CTranslate2's Marian converter expects the pad token to be the last
vocabulary entry.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from ..config import Seq2SeqArchConfig
from ..errors import XdistillError
from ..io_utils import atomic_dir
from .folder import MODEL_INFO, read_model_info, write_model_info  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

EOS, UNK, PAD = "</s>", "<unk>", "<pad>"


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
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, unk_token=UNK, pad_token=PAD, model_max_length=max_length
    )


FILLER = "<unused{}>"


def train_per_side_tokenizer(sources: Sequence[str], targets: Sequence[str], vocab_size: int, max_length: int):
    """A ``MarianTokenizer`` with one Unigram vocabulary per side (``separate_vocabs``), each
    trained on its side only and holding at most ``vocab_size`` entries.

    Useful when the two scripts share little (English and Chinese): a joint vocabulary spends
    half its entries on pieces one side never uses. Both vocabularies get the same size (the
    smaller is filled with ``<unused…>`` entries no text maps to), so ``</s>`` = 0, ``<unk>`` = 1
    and ``<pad>`` (last) have one id on both sides, as Marian's single ``pad_token_id`` needs.
    No normalisation: NFKC would turn Chinese full-width punctuation into ASCII.
    """
    try:
        import sentencepiece as spm
    except ImportError:
        raise XdistillError(
            "mt.separate_vocabs needs sentencepiece: pip install sentencepiece (or pip install 'xdistill[e5]')"
        ) from None
    from transformers import MarianTokenizer

    with tempfile.TemporaryDirectory(prefix="xdistill-spm-") as tmp, _quiet_about_sacremoses():
        # MarianTokenizer reads its files from disk but keeps them in memory (save_pretrained writes them).
        folder = Path(tmp)
        _write_per_side_vocabularies(spm, folder, sources, targets, vocab_size)
        return MarianTokenizer(
            str(folder / "source.spm"),
            str(folder / "target.spm"),
            str(folder / "vocab.json"),
            target_vocab_file=str(folder / "target_vocab.json"),
            separate_vocabs=True,
            model_max_length=max_length,
        )


def _write_per_side_vocabularies(
    spm, folder: Path, sources: Sequence[str], targets: Sequence[str], vocab_size: int
) -> None:
    pieces = {}
    for side, texts in (("source", sources), ("target", targets)):
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter([t for t in texts if t.strip()]),
                model_writer=model,
                model_type="unigram",
                vocab_size=vocab_size - 2,
                hard_vocab_limit=False,
                character_coverage=1.0,
                normalization_rule_name="identity",
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                max_sentence_length=1 << 16,
                minloglevel=2,
            )
        except RuntimeError as exc:  # e.g. fewer entries than the side has distinct characters
            raise XdistillError(
                f"could not train the {side}-side vocabulary with mt.vocab_size {vocab_size}: "
                f"{str(exc).strip().splitlines()[-1]}; raise mt.vocab_size or use one joint "
                "vocabulary (mt.separate_vocabs: false)"
            ) from None
        (folder / f"{side}.spm").write_bytes(model.getvalue())
        proc = spm.SentencePieceProcessor(model_proto=model.getvalue())
        pieces[side] = [proc.id_to_piece(i) for i in range(proc.get_piece_size()) if i != proc.unk_id()]
    size = max(len(p) for p in pieces.values())
    for side, name in (("source", "vocab.json"), ("target", "target_vocab.json")):
        vocab = {EOS: 0, UNK: 1}
        for piece in pieces[side]:
            vocab.setdefault(piece, len(vocab))
        while len(vocab) < size + 2:
            vocab[FILLER.format(len(vocab))] = len(vocab)
        vocab[PAD] = len(vocab)
        (folder / name).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")


@contextlib.contextmanager
def _quiet_about_sacremoses():
    # A MarianTokenizer warns when sacremoses is missing: it would only normalise source
    # punctuation with it (when installed, at training and inference alike; see the README).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*sacremoses")
        yield


def load_translation_tokenizer(folder: str | Path):
    """``AutoTokenizer.from_pretrained(folder)``, without the sacremoses warning."""
    from transformers import AutoTokenizer

    with _quiet_about_sacremoses():
        return AutoTokenizer.from_pretrained(folder)


def has_separate_vocabs(tokenizer) -> bool:
    return bool(getattr(tokenizer, "separate_vocabs", False))


def target_vocab_size(tokenizer) -> int:
    """The decoder's vocabulary: the target side's for per-side vocabularies, else the joint one."""
    return len(tokenizer.target_encoder) if has_separate_vocabs(tokenizer) else len(tokenizer)


def build_marian(arch: Seq2SeqArchConfig, tokenizer, max_length: int):
    """A randomly initialised ``MarianMTModel`` sized by ``arch`` over ``tokenizer``'s vocabulary."""
    from transformers import MarianConfig, MarianMTModel

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = MarianConfig(
        vocab_size=len(tokenizer),
        decoder_vocab_size=target_vocab_size(tokenizer),
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
        share_encoder_decoder_embeddings=not has_separate_vocabs(tokenizer),
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
    banned = [tokenizer.pad_token_id]
    if has_separate_vocabs(tokenizer):  # the fillers that level the two vocabularies
        banned += [i for piece, i in tokenizer.target_encoder.items() if piece.startswith("<unused")]
    gen.bad_words_ids = [[i] for i in banned]


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
        write_model_info(tmp, {"task": "translation", **info})
    return folder
