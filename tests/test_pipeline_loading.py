"""Saved classifiers load where users reach for them: from_pretrained and pipeline() give
xdistill's own scores, the text prefix included, with no trust_remote_code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from xdistill.config import load_config
from xdistill.errors import ModelError
from xdistill.export.runtime import load_model
from xdistill.models.classifier import SequenceClassifier, reorder_head
from xdistill.models.text_prefix import has_text_prefix, prefix_piece_ids, with_text_prefix
from xdistill.models.tiny import train_unigram_tokenizer
from xdistill.pipeline import run_all

from conftest import MIXED_TEXTS, write_config

TEXTS = MIXED_TEXTS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    import yaml

    root = tmp_path_factory.mktemp("pipeline")
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml").read_text())
    raw.update(run_dir=str(root / "run"), cache_dir=str(root / "cache"))
    raw["teacher"]["text_prefix"] = "query: "  # the prefix must reach pipeline() users too
    raw["train"]["epochs"] = 1
    raw["teacher"]["train"]["epochs"] = 1
    raw["evaluate"] = {"speed": False}
    run_all(load_config(write_config(root / "tiny.yaml", raw)), echo=lambda _: None, progress=False)
    return root / "run"


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_pipeline_gives_xdistills_own_scores(tiny_run, role):
    folder = tiny_run / role
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}

    ours = load_model(folder).classify(TEXTS)  # what xdistill predict / serve answer
    classify = pipeline("text-classification", model=str(folder), top_k=None)
    theirs = classify(TEXTS)
    for mine, hf in zip(ours, theirs):
        hf_scores = {r["label"]: r["score"] for r in hf}
        assert set(hf_scores) == set(mine["scores"])
        for label, score in mine["scores"].items():
            assert hf_scores[label] == pytest.approx(score, abs=1e-4)  # float noise of padding and batching

    # from_pretrained sees the prefix too: the tokenizer inserts it.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert has_text_prefix(tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(
        torch.softmax(logits, -1).numpy(),
        [[m["scores"]["negative"], m["scores"]["positive"]] for m in ours],
        atol=1e-4,
    )


def test_the_prefix_in_the_tokenizer_gives_the_ids_of_prefix_plus_text():
    tokenizer = train_unigram_tokenizer(TEXTS * 5 + ["query: a question"] * 5, 200)
    baked = with_text_prefix(tokenizer, "query: ")
    assert not has_text_prefix(tokenizer) and has_text_prefix(baked)
    for text in TEXTS:
        assert baked(text)["input_ids"] == tokenizer("query: " + text)["input_ids"]
        # Truncation counts the prefix like the start and end tokens.
        assert (
            baked(text * 9, truncation=True, max_length=12)["input_ids"]
            == tokenizer("query: " + text * 9, truncation=True, max_length=12)["input_ids"]
        )
    pair = baked("good phone", "bad battery")["input_ids"]
    assert pair == tokenizer("query: good phone", "bad battery")["input_ids"]
    assert with_text_prefix(tokenizer, "") is tokenizer
    assert len(prefix_piece_ids(tokenizer, "query: ")) >= 1


def test_a_prefix_that_merges_with_the_text_is_refused():
    import tempfile

    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "q", "##x", "x", "great", "product"]) + "\n")
        tokenizer = BertTokenizerFast(vocab_file=str(vocab))
        with pytest.raises(ModelError, match=r"teacher\.text_prefix 'q' changes how the text after it is tokenised"):
            with_text_prefix(tokenizer, "q")


def test_reorder_head_permutes_the_classes():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=3
    )
    model = BertForSequenceClassification(config).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    before = model(ids).logits
    reorder_head(model, [2, 0, 1])
    torch.testing.assert_close(model(ids).logits, before[:, [2, 0, 1]])


def test_a_saved_classifier_is_loaded_by_xdistill_with_its_own_labels(tiny_run):
    model, _ = SequenceClassifier.load(tiny_run / "student", labels=["positive", "negative"])
    assert model.labels == ["negative", "positive"] and model.label_order == [0, 1]


def test_a_new_pooler_starts_as_the_identity(tmp_path):
    """e5 ships no pooler (it was trained with mean pooling): the new head must read the [CLS]
    state itself, not a random projection that shrinks it (the quick MARC teacher fell from
    85.0 to 71.8 en accuracy with one)."""
    from xdistill.models.tiny import create_random_encoder

    enc = create_random_encoder(tmp_path / "enc", TEXTS * 10)
    model = SequenceClassifier.from_encoder(enc, ["negative", "positive"], AutoTokenizer.from_pretrained(enc))
    dense = model.model.bert.pooler.dense
    torch.testing.assert_close(dense.weight, torch.eye(dense.out_features))
    assert float(dense.bias.abs().sum()) == 0.0
