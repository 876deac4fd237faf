"""Translation models warm-started from a pretrained BERT-style encoder (e.g. multilingual-e5-small).

Training a translation model from scratch on a few thousand pairs with 2 CPU cores gets nowhere
(BLEU near 0 after hours). A pretrained multilingual encoder already represents the source; the
decoder then only has to learn to write the target (Rothe et al. 2020, "Leveraging Pre-trained
Checkpoints for Sequence Generation Tasks").

The model is a ``BartForConditionalGeneration`` because BART's encoder layer *is* BERT's layer
(post-LayerNorm, GELU, learned positions, a LayerNorm on the embeddings), so the weights copy one to
one and ``AutoModelForSeq2SeqLM`` / CTranslate2 load the result like any BART:

* token embeddings: the encoder's, trimmed to the pieces the corpus uses (one vocabulary for both
  sides, shared by encoder, decoder and output layer);
* encoder positions: BERT's position embeddings plus its token-type-0 embedding (a constant every
  BERT input adds), shifted by BART's position offset of 2;
* encoder layers: the chosen BERT layers (``encoder_layer_ids``);
* decoder layers: random, or started from BERT layers (``decoder_layer_ids``): self-attention and
  feed-forward copied, cross-attention starting from the same layer's attention weights.

BART normalises with eps 1e-5 where BERT uses 1e-12; on activations of unit scale the difference is
far below training noise.
"""

from __future__ import annotations

import logging
from typing import Iterable

import torch
from torch import nn

from ..config import Seq2SeqArchConfig
from ..errors import ModelError
from .folder import verify_weights
from .sentence import resolve_model_path
from .seq2seq import configure_generation
from .vocab_trim import select_pieces, trim_tokenizer

log = logging.getLogger(__name__)

BART_POSITION_OFFSET = 2


def load_pretrained_encoder(spec: str):
    """The BERT-style encoder and tokenizer of ``spec`` (a folder or ``package:NAME``)."""
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_model_path(spec, flag="mt.*.init_encoder")
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"mt init_encoder: {folder} is not a model folder (no config.json); for e5 run "
            f"`xdistill models import e5-small --out {folder}`"
        )

    verify_weights(folder)
    encoder = AutoModel.from_pretrained(folder, add_pooling_layer=False)
    if not hasattr(encoder, "embeddings") or not hasattr(encoder.embeddings, "position_embeddings"):
        raise ModelError(
            f"mt init_encoder: {folder} is a {encoder.config.model_type} model; a BERT-style encoder "
            "(BERT, XLM-R, e5, MiniLM) is needed"
        )
    return encoder, AutoTokenizer.from_pretrained(folder)


def kept_ids_for(tokenizer, encoder_tokenizer) -> list[int]:
    """The encoder-vocabulary ids of ``tokenizer``'s pieces, in ``tokenizer``'s id order."""
    vocab = encoder_tokenizer.get_vocab()
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    missing = [p for p in pieces if p not in vocab]
    if missing:
        raise ModelError(
            f"the tokenizer has {len(missing)} pieces the init_encoder's vocabulary lacks (e.g. "
            f"{missing[:3]}); word-level KD needs a teacher warm-started from the same encoder"
        )
    return [vocab[p] for p in pieces]


def build_warm_started(
    arch: Seq2SeqArchConfig,
    corpus: Iterable[str],
    max_length: int,
    *,
    vocab_size: int,
    tokenizer=None,
    progress: bool = False,
):
    """``(model, tokenizer)``: a BART over ``arch.init_encoder``'s weights and trimmed vocabulary.

    With ``tokenizer`` (a teacher's, for word-level KD) its vocabulary is kept as is; else the
    encoder's is trimmed to the pieces of ``corpus`` (at most ``vocab_size``, the most frequent).
    """
    from transformers import BartConfig, BartForConditionalGeneration

    encoder, enc_tok = load_pretrained_encoder(arch.init_encoder)
    if tokenizer is None:
        kept, coverage = select_pieces(enc_tok, corpus, max_pieces=vocab_size, progress=progress)
        tokenizer = trim_tokenizer(enc_tok, kept)
        log.info("warm start: vocabulary trimmed to %d pieces (corpus coverage %.4f)", len(kept), coverage)
    else:
        kept = kept_ids_for(tokenizer, enc_tok)
    tokenizer.model_max_length = max_length
    bert = encoder.config
    layers = list(arch.encoder_layer_ids) or list(range(bert.num_hidden_layers))
    dec_layers = list(arch.decoder_layer_ids)
    for name, ids in (("encoder_layer_ids", layers), ("decoder_layer_ids", dec_layers)):
        bad = [i for i in ids if not 0 <= i < bert.num_hidden_layers]
        if bad:
            raise ModelError(f"mt {name} {bad}: {arch.init_encoder} has layers 0..{bert.num_hidden_layers - 1}")
    if not dec_layers and bert.hidden_size % arch.heads:
        raise ModelError(f"mt heads ({arch.heads}) must divide the encoder's hidden size ({bert.hidden_size})")
    if max_length > bert.max_position_embeddings:
        raise ModelError(f"mt max_length {max_length} exceeds the encoder's {bert.max_position_embeddings} positions")
    eos, pad = tokenizer.convert_tokens_to_ids(tokenizer.eos_token), tokenizer.pad_token_id
    bos = tokenizer.convert_tokens_to_ids(tokenizer.bos_token) if tokenizer.bos_token else eos
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=bert.hidden_size,
        encoder_layers=len(layers),
        encoder_attention_heads=bert.num_attention_heads,
        encoder_ffn_dim=bert.intermediate_size,
        decoder_layers=len(dec_layers) or arch.decoder_layers,
        decoder_attention_heads=bert.num_attention_heads if dec_layers else arch.heads,
        decoder_ffn_dim=bert.intermediate_size if dec_layers else arch.ffn_size,
        activation_function=bert.hidden_act,
        max_position_embeddings=bert.max_position_embeddings,
        dropout=arch.dropout,
        scale_embedding=False,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        decoder_start_token_id=eos,
        forced_eos_token_id=eos,
        # A frozen encoder with a trained output layer needs its own copy of the embedding matrix.
        tie_word_embeddings=not (arch.freeze_encoder and arch.train_output_layer),
        # Post-LayerNorm, as BERT; CTranslate2's BART converter reads this attribute, which newer
        # transformers no longer set.
        normalize_before=False,
    )
    model = BartForConditionalGeneration(config)
    _copy_weights(encoder, model, kept, layers, dec_layers)
    if arch.freeze_encoder:
        # The shared embeddings too: else gradients would flow back through every frozen layer
        # to reach them, and the frozen encoder would cost as much as a trained one.
        for p in model.model.encoder.parameters():
            p.requires_grad = False
        for table in _input_embeddings(model):
            table.weight.requires_grad = False
        if arch.train_output_layer:
            # The output layer (untied above) starts as the embeddings and trains: a frozen one caps
            # the teacher at what the encoder's word vectors can score.
            with torch.no_grad():
                model.lm_head.weight = nn.Parameter(model.model.shared.weight.detach().clone())
    configure_generation(model, tokenizer, max_length)
    return model, tokenizer


@torch.no_grad()
def _copy_weights(bert_model, bart, kept: list[int], enc_layers: list[int], dec_layers: list[int]) -> None:
    emb = bert_model.embeddings
    words = emb.word_embeddings.weight[torch.tensor(kept)]
    # Untied (tie_word_embeddings false, for a trained output layer), transformers gives the encoder
    # and the decoder input embeddings of their own, not views of `shared`: each gets the copy, else
    # the frozen encoder would read random word vectors and its teacher ignore the source.
    for table in _input_embeddings(bart):
        table.weight.copy_(words)
    pos = bart.model.encoder.embed_positions.weight
    n = emb.position_embeddings.weight.shape[0]
    pos[BART_POSITION_OFFSET : BART_POSITION_OFFSET + n].copy_(
        emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]
    )
    _copy_ln(emb.LayerNorm, bart.model.encoder.layernorm_embedding)
    # The decoder reads the same embeddings: it starts from BERT's positions and embedding LayerNorm
    # too (random positions would make it learn word order from nothing).
    bart.model.decoder.embed_positions.weight[BART_POSITION_OFFSET : BART_POSITION_OFFSET + n].copy_(
        emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]
    )
    _copy_ln(emb.LayerNorm, bart.model.decoder.layernorm_embedding)
    bart.final_logits_bias.zero_()
    for dst, src in zip(bart.model.encoder.layers, enc_layers):
        _copy_layer(bert_model.encoder.layer[src], dst)
    for dst, src in zip(bart.model.decoder.layers, dec_layers):
        _copy_layer(bert_model.encoder.layer[src], dst)
        _copy_attention(bert_model.encoder.layer[src].attention, dst.encoder_attn)


def _input_embeddings(bart) -> list[nn.Embedding]:
    """``shared`` and the encoder's and decoder's input embeddings, each table once (tied: one)."""
    tables = [bart.model.shared, bart.model.encoder.embed_tokens, bart.model.decoder.embed_tokens]
    unique: dict[int, nn.Embedding] = {}
    for table in tables:
        unique.setdefault(id(table.weight), table)
    return list(unique.values())


def _copy_linear(src, dst) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _copy_ln(src, dst) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _copy_attention(src, dst) -> None:
    _copy_linear(src.self.query, dst.q_proj)
    _copy_linear(src.self.key, dst.k_proj)
    _copy_linear(src.self.value, dst.v_proj)
    _copy_linear(src.output.dense, dst.out_proj)


def _copy_layer(src, dst) -> None:
    _copy_attention(src.attention, dst.self_attn)
    _copy_ln(src.attention.output.LayerNorm, dst.self_attn_layer_norm)
    _copy_linear(src.intermediate.dense, dst.fc1)
    _copy_linear(src.output.dense, dst.fc2)
    _copy_ln(src.output.LayerNorm, dst.final_layer_norm)
