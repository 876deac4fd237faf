"""Vocabulary trimming (xdistill.models.vocab_trim) on tiny tokenizers and models built in code."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    BertTokenizerFast,
    PreTrainedTokenizerFast,
)

from xdistill.errors import ConfigError, ModelError
from xdistill.models.vocab_trim import (
    TrimResult,
    select_pieces,
    trim_embeddings,
    trim_tokenizer,
    trim_vocabulary,
)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]

EN = "the a good bad product arrived quickly broken quality price works great never again love it".split()
ES = "el la producto llegó rápido roto calidad precio funciona muy bien nunca más me encanta es".split()
ZH = list("这个产品很好质量太差价格便宜快递非常满意不会再买喜欢")


def _sentences(words: list[str], n: int, seed: int, joiner: str = " ") -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(3, 9)
        out.append(joiner.join(rng.choice(words) for _ in range(k)) + rng.choice([".", "!", ""]))
    return out


EN_TEXT = _sentences(EN, 150, 1)
ES_TEXT = _sentences(ES, 150, 2)
ZH_TEXT = _sentences(ZH, 150, 3, joiner="")
ALL_TEXT = EN_TEXT + ES_TEXT + ZH_TEXT


def _unigram_backend() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(ALL_TEXT, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return tok


@pytest.fixture(scope="module")
def unigram_backend() -> Tokenizer:
    return _unigram_backend()


@pytest.fixture()
def unigram_tokenizer(unigram_backend) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=unigram_backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=64,
    )


def _bert(vocab_size: int, pad_token_id: int = 1, cls=BertModel):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=pad_token_id,
    )
    return cls(config).eval()


def _hidden(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).last_hidden_state, batch["attention_mask"]


# ----------------------------------------------------------------------------------------------


def test_unigram_fixture_has_specials_first(unigram_tokenizer):
    assert [unigram_tokenizer.convert_tokens_to_ids(t) for t in SPECIALS] == [0, 1, 2, 3]
    assert len(unigram_tokenizer) == 300


def test_trim_unigram_end_to_end(unigram_tokenizer, tmp_path):
    tok = unigram_tokenizer
    model = _bert(len(tok))
    original = copy.deepcopy(model)

    new_tok, result = trim_vocabulary(model, tok, ES_TEXT)
    assert isinstance(result, TrimResult)
    assert result.old_vocab_size == 300
    assert result.new_vocab_size == len(result.kept_ids) == len(new_tok) < 300
    assert result.coverage == 1.0
    assert result.kept_ids[:4] == [0, 1, 2, 3]
    assert isinstance(new_tok, PreTrainedTokenizerFast)
    # special tokens keep their ids
    for t in SPECIALS:
        assert new_tok.convert_tokens_to_ids(t) == tok.convert_tokens_to_ids(t)
    assert (new_tok.bos_token, new_tok.eos_token, new_tok.pad_token, new_tok.unk_token) == tuple(
        (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token)
    )
    assert new_tok.model_max_length == 64

    # model: embedding shrunk, config updated
    assert model.get_input_embeddings().weight.shape == (result.new_vocab_size, 32)
    assert model.config.vocab_size == result.new_vocab_size
    assert model.config.pad_token_id == 1
    assert model.get_input_embeddings().padding_idx == 1

    # same segmentation and identical outputs on in-corpus text
    o2n = result.old_to_new
    sample = ES_TEXT[:40]
    for text in sample:
        old_ids = tok(text)["input_ids"]
        new_ids = new_tok(text)["input_ids"]
        assert new_ids == [o2n[i] for i in old_ids]
        assert new_tok.convert_ids_to_tokens(new_ids) == tok.convert_ids_to_tokens(old_ids)
        assert new_tok.decode(new_ids, skip_special_tokens=True) == tok.decode(old_ids, skip_special_tokens=True)
    h_old, m_old = _hidden(original, tok, sample)
    h_new, m_new = _hidden(model, new_tok, sample)
    assert torch.equal(m_old, m_new)
    assert torch.allclose(h_old, h_new, atol=1e-6)

    # out-of-corpus text still tokenizes (zh characters were never seen: <unk>)
    for text in ZH_TEXT[:5] + EN_TEXT[:5] + ["völlig neu ✓ 🙂"]:
        ids = new_tok(text)["input_ids"]
        assert ids[0] == new_tok.bos_token_id and ids[-1] == new_tok.eos_token_id
        assert all(0 <= i < len(new_tok) for i in ids)
    assert new_tok.unk_token_id in new_tok(ZH_TEXT[0])["input_ids"]
    with torch.no_grad():
        model(**new_tok(ZH_TEXT[:3] + EN_TEXT[:3], padding=True, return_tensors="pt"))

    # save + reload with the Auto classes, safetensors only
    out = tmp_path / "student"
    model.save_pretrained(out)
    new_tok.save_pretrained(out)
    assert (out / "model.safetensors").is_file()
    assert not (out / "pytorch_model.bin").exists()
    tok2 = AutoTokenizer.from_pretrained(out)
    model2 = AutoModel.from_pretrained(out).eval()
    assert len(tok2) == result.new_vocab_size
    for text in sample + ZH_TEXT[:3] + EN_TEXT[:3]:
        assert tok2(text)["input_ids"] == new_tok(text)["input_ids"]
    h2, _ = _hidden(model2, tok2, sample)
    assert torch.allclose(h_old, h2, atol=1e-6)
    assert model2.config.vocab_size == result.new_vocab_size


def test_original_tokenizer_is_untouched(unigram_tokenizer):
    before = unigram_tokenizer.backend_tokenizer.to_str()
    kept, _ = select_pieces(unigram_tokenizer, ES_TEXT)
    trim_tokenizer(unigram_tokenizer, kept)
    assert unigram_tokenizer.backend_tokenizer.to_str() == before


def test_select_keeps_single_chars_and_min_count(unigram_tokenizer):
    tok = unigram_tokenizer
    full, cov_full = select_pieces(tok, ALL_TEXT)
    assert cov_full == 1.0
    strict, cov = select_pieces(tok, ES_TEXT, min_count=50)
    loose, _ = select_pieces(tok, ES_TEXT)
    assert len(strict) < len(loose) <= len(full)
    assert 0.0 < cov < 1.0
    # every single character of the corpus pieces stays available
    vocab = tok.get_vocab()
    chars = {c for t in ES_TEXT for c in t.replace(" ", "▁")} | {"▁"}
    for c in chars:
        if c in vocab:
            assert vocab[c] in strict
    # Viterbi re-segments what lost its pieces; output only uses kept pieces
    new_tok = trim_tokenizer(tok, strict)
    for text in ES_TEXT[:20]:
        pieces = new_tok.tokenize(text)
        normalized = tok.backend_tokenizer.normalizer.normalize_str(text)
        assert "".join(pieces).replace("▁", " ").strip() == normalized.strip()
        assert new_tok.unk_token not in pieces


def test_keep_texts_are_always_kept(unigram_tokenizer):
    tok = unigram_tokenizer
    prefix = "the product: "
    kept, cov = select_pieces(tok, ES_TEXT, min_count=10**6, keep_texts=[prefix])
    assert cov < 1.0
    o2n = {o: n for n, o in enumerate(kept)}
    new_tok = trim_tokenizer(tok, kept)
    assert new_tok(prefix)["input_ids"] == [o2n[i] for i in tok(prefix)["input_ids"]]
    with pytest.raises(ConfigError, match="keep_texts"):
        select_pieces(tok, ES_TEXT, keep_texts=[None])


def test_max_pieces_caps_total(unigram_tokenizer):
    kept, cov = select_pieces(unigram_tokenizer, ALL_TEXT, max_pieces=100)
    assert len(kept) == 100
    assert kept[:4] == [0, 1, 2, 3]
    assert cov < 1.0
    small = trim_tokenizer(unigram_tokenizer, kept)
    assert len(small) == 100
    for text in ALL_TEXT[::7]:  # every corpus character survives, so no <unk>
        assert small.unk_token_id not in small(text)["input_ids"]
    with pytest.raises(ConfigError, match="max_pieces"):
        select_pieces(unigram_tokenizer, ALL_TEXT, max_pieces=20)
    with pytest.raises(ConfigError, match="min_count"):
        select_pieces(unigram_tokenizer, ES_TEXT, min_count=0)


def test_added_token_past_model_vocab_stays_last(unigram_backend):
    tok = PreTrainedTokenizerFast(
        tokenizer_object=unigram_backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    mask_old = tok.mask_token_id
    assert mask_old == 300
    kept, _ = select_pieces(tok, ES_TEXT[:30])
    assert kept[-1] == mask_old
    new_tok = trim_tokenizer(tok, kept)
    assert new_tok.mask_token_id == len(kept) - 1
    text = "el producto <mask> muy bien"
    o2n = {o: n for n, o in enumerate(kept)}
    assert new_tok(text)["input_ids"] == [o2n[i] for i in tok(text)["input_ids"]]


def test_xlm_roberta_tokenizer_class_round_trip(unigram_backend, tmp_path):
    """The e5 teacher ships an XLM-R style tokenizer; its class rebuilds the model with unk_id=3."""
    from transformers import XLMRobertaTokenizer

    vocab = [tuple(p) for p in json.loads(unigram_backend.to_str())["model"]["vocab"]]
    tok = XLMRobertaTokenizer(vocab=vocab)
    assert tok.unk_token_id == 3
    model = _bert(len(tok))
    original = copy.deepcopy(model)
    new_tok, result = trim_vocabulary(model, tok, ES_TEXT)
    assert type(new_tok) is XLMRobertaTokenizer
    assert new_tok.mask_token_id == len(new_tok) - 1
    out = tmp_path / "xlmr"
    new_tok.save_pretrained(out)
    model.save_pretrained(out)
    assert not (out / "sentencepiece.bpe.model").exists()
    tok2 = AutoTokenizer.from_pretrained(out)
    assert type(tok2).__name__ == "XLMRobertaTokenizer"
    o2n = result.old_to_new
    for text in ES_TEXT[:20]:
        want = [o2n[i] for i in tok(text)["input_ids"]]
        assert new_tok(text)["input_ids"] == want
        assert tok2(text)["input_ids"] == want
    for text in ZH_TEXT[:3]:
        assert tok2(text)["input_ids"] == new_tok(text)["input_ids"]
    h_old, _ = _hidden(original, tok, ES_TEXT[:10])
    h_new, _ = _hidden(AutoModel.from_pretrained(out).eval(), tok2, ES_TEXT[:10])
    assert torch.allclose(h_old, h_new, atol=1e-6)


def _wordpiece_tokenizer() -> BertTokenizerFast:
    words = sorted({w.lower() for w in EN + ES})
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(5)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in words for c in w} | set(".!"))
    vocab += chars + [f"##{c}" for c in chars]
    vocab += [w for w in words if len(w) > 1]
    vocab += ["##ido", "##ad", "##ly", "pro", "##ducto", "##duct"]
    vocab += ZH
    return BertTokenizerFast(vocab={p: i for i, p in enumerate(dict.fromkeys(vocab))})


def test_wordpiece_round_trip(tmp_path):
    tok = _wordpiece_tokenizer()
    assert tok.backend_tokenizer.to_str().count('"WordPiece"') >= 1
    model = _bert(len(tok), pad_token_id=0)
    original = copy.deepcopy(model)
    new_tok, result = trim_vocabulary(model, tok, EN_TEXT)
    assert result.new_vocab_size < result.old_vocab_size
    # [PAD] [UNK] [CLS] [SEP] [MASK] first, in their old order
    assert new_tok.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "[unused0]" not in new_tok.get_vocab()
    o2n = result.old_to_new
    for text in EN_TEXT[:30]:
        assert new_tok(text)["input_ids"] == [o2n[i] for i in tok(text)["input_ids"]]
    h_old, _ = _hidden(original, tok, EN_TEXT[:10])
    h_new, _ = _hidden(model, new_tok, EN_TEXT[:10])
    assert torch.allclose(h_old, h_new, atol=1e-6)
    # unseen words fall back to [UNK]
    assert new_tok.unk_token_id in new_tok("这个 producto")["input_ids"]

    out = tmp_path / "wp"
    model.save_pretrained(out)
    new_tok.save_pretrained(out)
    tok2 = AutoTokenizer.from_pretrained(out)
    for text in EN_TEXT[:30] + ES_TEXT[:5] + ZH_TEXT[:3]:
        assert tok2(text)["input_ids"] == new_tok(text)["input_ids"]
    h2, _ = _hidden(AutoModel.from_pretrained(out).eval(), tok2, EN_TEXT[:10])
    assert torch.allclose(h_old, h2, atol=1e-6)


def _bpe_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=250, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(ALL_TEXT, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def test_bpe_keeps_merge_parts(tmp_path):
    tok = _bpe_tokenizer()
    kept, cov = select_pieces(tok, ES_TEXT)
    assert cov == 1.0
    new_tok = trim_tokenizer(tok, kept)
    assert len(new_tok) < len(tok)
    o2n = {o: n for n, o in enumerate(kept)}
    for text in ES_TEXT[:30]:
        assert new_tok(text)["input_ids"] == [o2n[i] for i in tok(text)["input_ids"]]
    # every surviving merge has surviving parts
    model_json = json.loads(new_tok.backend_tokenizer.to_str())["model"]
    for merge in model_json["merges"]:
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        assert a in model_json["vocab"] and b in model_json["vocab"] and a + b in model_json["vocab"]
    # pieces that only occur as merge steps towards kept pieces are kept as well
    used = {i for text in ES_TEXT for i in tok(text, add_special_tokens=False)["input_ids"]}
    assert any(len(tok.convert_ids_to_tokens(i)) > 1 for i in set(kept) - used - set(tok.all_special_ids))
    new_tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    for text in ES_TEXT[:10] + EN_TEXT[:5]:
        assert tok2(text)["input_ids"] == new_tok(text)["input_ids"]

    # a capped vocabulary re-segments into shorter pieces, losing no text
    capped, cov = select_pieces(tok, ALL_TEXT, max_pieces=120)
    assert len(capped) <= 120 and cov < 1.0
    small = trim_tokenizer(tok, capped)
    for text in ALL_TEXT[::10]:
        ids = small(text)["input_ids"]
        assert small.unk_token_id not in ids
        assert small.decode(ids, skip_special_tokens=True).replace(" ", "") == text.replace(" ", "")


def test_masked_lm_head_is_trimmed_too(unigram_tokenizer):
    tok = unigram_tokenizer
    model = _bert(len(tok), cls=BertForMaskedLM)
    original = copy.deepcopy(model)
    new_tok, result = trim_vocabulary(model, tok, ES_TEXT)
    n = result.new_vocab_size
    assert model.get_output_embeddings().weight.shape[0] == n
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.cls.predictions.bias.shape[0] == n
    batch_old = tok(ES_TEXT[:4], padding=True, return_tensors="pt")
    batch_new = new_tok(ES_TEXT[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        old_logits = original(**batch_old).logits[..., result.kept_ids]
        new_logits = model(**batch_new).logits
    assert new_logits.shape[-1] == n
    assert torch.allclose(old_logits, new_logits, atol=1e-5)


def test_trim_embeddings_errors_when_config_id_dropped(unigram_tokenizer):
    model = _bert(len(unigram_tokenizer), pad_token_id=7)
    kept, _ = select_pieces(unigram_tokenizer, ["el"])
    assert 7 not in kept
    before = model.get_input_embeddings().weight.clone()
    with pytest.raises(ModelError, match="pad_token_id=7"):
        trim_embeddings(model, kept)
    assert torch.equal(model.get_input_embeddings().weight, before)  # nothing changed
    with pytest.raises(ModelError, match="duplicate"):
        trim_embeddings(model, [0, 1, 1])


def test_trim_tokenizer_refuses_dropping_specials(unigram_tokenizer):
    with pytest.raises(ModelError, match="special token"):
        trim_tokenizer(unigram_tokenizer, [0, 2, 3, 10, 11])


def test_unsupported_model_type_raises():
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "hola": 1, "mundo": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(ModelError, match="WordLevel"):
        trim_tokenizer(tok, [0, 1])


def test_keep_top_keeps_the_most_probable_pieces_beyond_the_corpus(unigram_tokenizer):
    tok = unigram_tokenizer
    vocab = json.loads(tok.backend_tokenizer.to_str())["model"]["vocab"]
    latin = [i for i, (piece, _) in enumerate(vocab) if not any(c in ZH for c in piece)]  # the corpus's script
    top = set(sorted(latin, key=lambda i: (-float(vocab[i][1]), i))[:50])
    plain, _ = select_pieces(tok, ES_TEXT[:3])
    kept, _ = select_pieces(tok, ES_TEXT[:3], keep_top=50)
    assert top <= set(kept) and not top <= set(plain)
    assert set(plain) <= set(kept)
    with pytest.raises(ConfigError, match=r"keep_top must be an integer >= 0, got -1"):
        select_pieces(tok, ES_TEXT, keep_top=-1)


def test_keep_top_ranks_only_pieces_in_the_corpus_scripts():
    # A multilingual vocabulary: Cyrillic and Han pieces outrank the Latin ones. A Latin corpus
    # keeps the top Latin pieces (and script-less ones such as digits), never a Cyrillic or Han one.
    vocab = [("<unk>", 0.0), ("<pad>", 0.0), ("▁привет", -1.0), ("▁你好", -1.5), ("▁tried", -2.0),
             ("▁track", -2.5), ("▁42", -3.0), ("▁мир", -3.5), ("▁zzz", -9.0)]  # fmt: skip
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab.append((c, -10.0))
    backend = Tokenizer(models.Unigram(vocab, unk_id=0))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>")
    kept, _ = select_pieces(tok, ["zzz"], keep_top=5)  # <unk> and <pad> rank first (score 0)
    names = {vocab[i][0] for i in kept}
    assert {"▁tried", "▁track", "▁42"} <= names
    assert not names & {"▁привет", "▁你好", "▁мир"}
