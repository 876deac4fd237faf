"""A fine-tuned Hugging Face sequence-classification checkpoint as the teacher, used as it is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from xdistill.config import load_config
from xdistill.data.splits import load_test
from xdistill.distill.cache import TeacherCache
from xdistill.distill.classify import teacher_outputs
from xdistill.errors import ModelError
from xdistill.export.runtime import detect_kind, load_model
from xdistill.fingerprints import fingerprint_folder
from xdistill.models.classifier import SequenceClassifier, load_classifier
from xdistill.models.tiny import train_unigram_tokenizer
from xdistill.pipeline import run_all

from conftest import MIXED_TEXTS, write_config

DEMO = Path(__file__).resolve().parents[1] / "src" / "xdistill" / "demo_data"
LABELS = ["negative", "positive"]
TEXTS = MIXED_TEXTS


def _save_hf_classifier(folder: Path, id2label: dict[int, str]) -> Path:
    """A tiny BertForSequenceClassification with its tokenizer, saved the way HF users have them."""
    texts = [
        line
        for p in sorted(DEMO.glob("*"))
        if p.suffix in (".csv", ".txt")
        for line in p.read_text(encoding="utf-8").splitlines()
    ]
    tokenizer = train_unigram_tokenizer(texts, 800)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        initializer_range=1.0,
    )  # wide weights: the texts get both classes, by clear margins
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    # Reversed on purpose: class 0 is POSITIVE, data.labels starts with negative.
    return _save_hf_classifier(tmp_path_factory.mktemp("hf") / "sentiment", {0: "POSITIVE", 1: "NEGATIVE"})


def test_adaptor_logits_are_the_checkpoints_own_reordered_to_data_labels(hf_folder):
    model, tokenizer = load_classifier(hf_folder, flag="teacher", labels=LABELS)
    assert isinstance(model, SequenceClassifier)
    assert model.labels == LABELS and model.label_order == [1, 0]
    reference = AutoModelForSequenceClassification.from_pretrained(hf_folder).eval()
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = reference(**enc).logits[:, [1, 0]]
        out = model(enc["input_ids"], enc["attention_mask"], output_hidden_states=True)
    torch.testing.assert_close(out["logits"], want)
    assert out["pooled"].shape == (len(TEXTS), 32) and len(out["hidden"]) == 3  # embeddings + 2 layers
    assert model.encoder.config.num_hidden_layers == 2 and model.hidden_size == 32

    # The HF pipeline's top label agrees with xdistill's, both through the adaptor (data.labels
    # order) and through predict / serve's loader (the checkpoint's own labels).
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(hf_folder), tokenizer=str(hf_folder))
    hf_top = [r["label"] for r in classify(TEXTS)]
    ours = [LABELS[i] for i in out["logits"].argmax(-1).tolist()]
    assert [label.lower() for label in hf_top] == ours
    assert detect_kind(hf_folder)[0] == "classifier"
    loaded = load_model(hf_folder)
    assert loaded.labels == ["POSITIVE", "NEGATIVE"]
    assert [r["label"] for r in loaded.classify(TEXTS)] == hf_top


def test_cached_teacher_outputs_follow_the_data_labels_order(hf_folder, tmp_path, tiny_raw):
    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_raw))
    cache, fp = TeacherCache(tmp_path / "cache"), fingerprint_folder(hf_folder)
    got = {}
    for labels in (LABELS, LABELS[::-1]):
        teacher, tok = load_classifier(hf_folder, labels=labels, max_length=48)
        got[tuple(labels)] = teacher_outputs(cache, fp, teacher, tok, TEXTS, None, cfg, ("logits",), "t", False)[
            "logits"
        ]
    np.testing.assert_allclose(got[tuple(LABELS)], got[tuple(LABELS[::-1])][:, ::-1], rtol=1e-5, atol=1e-6)


def test_hf_checkpoint_teacher_distils_and_evaluates_end_to_end(hf_folder, tmp_path, tiny_raw):
    raw = {
        **tiny_raw,
        "teacher": {"path": str(hf_folder), "finetune": False, "max_length": 48},
        "student": {"init": "teacher", "layers": [0, 1], "trim_vocab": True},
        "distill": {**tiny_raw["distill"], "embedding_weight": 0.5},
        "train": {"epochs": 1, "batch_size": 32, "lr": 1.0e-3},
        "evaluate": {"speed": False},
    }
    cfg = load_config(write_config(tmp_path / "hf.yaml", raw))
    results = run_all(cfg, echo=lambda _: None, progress=False)
    run = Path(cfg.run_dir)
    assert not (run / "teacher").exists()  # used as it is
    info = json.loads((run / "student" / "xdistill_model.json").read_text())
    assert info["labels"] == LABELS and info["teacher"] == str(hf_folder)
    # The student is the checkpoint's own class, its head copied and its classes in data.labels order.
    config = json.loads((run / "student" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}

    teacher_row = results["models"]["teacher"]
    assert teacher_row["path"] == str(hf_folder)
    assert set(results["models"]["student"]["metrics"]) == {"en", "es", "zh"}
    assert "agreement" in results["models"]["student"]["metrics"]["es"]
    # The teacher row is the checkpoint itself, its classes mapped by name onto data.labels.
    reference = AutoModelForSequenceClassification.from_pretrained(hf_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_folder)
    for lang, examples in load_test(cfg, "test").items():
        with torch.no_grad():
            pred = [
                int(
                    reference(**tokenizer(e.text, truncation=True, max_length=48, return_tensors="pt")).logits.argmax(
                        -1
                    )
                )
                for e in examples
            ]
        mapped = [LABELS.index(reference.config.id2label[i].lower()) for i in pred]
        assert len(set(mapped)) == 2  # both classes predicted: a wrong label order would show
        confusion = np.zeros((2, 2), dtype=int)
        for e, p in zip(examples, mapped):
            confusion[e.label, p] += 1
        assert teacher_row["metrics"][lang]["confusion"] == confusion.tolist()


def test_labels_that_do_not_match_data_labels_are_one_clear_error(hf_folder):
    with pytest.raises(
        ModelError,
        match=r"teacher: the labels of the Hugging Face classifier .*sentiment "
        r"\['POSITIVE', 'NEGATIVE'\] do not match data.labels "
        r"\['negative', 'neutral', 'positive'\] \(labels are matched by name, "
        r"ignoring case and order\); rename data.labels",
    ):
        load_classifier(hf_folder, flag="teacher", labels=["negative", "neutral", "positive"])
    with pytest.raises(ModelError, match=r"do not match data.labels \['bad', 'good'\]"):
        load_classifier(hf_folder, flag="teacher", labels=["bad", "good"])


def test_generic_label_names_are_refused_with_what_to_write(hf_folder, tmp_path):
    generic = tmp_path / "generic"
    shutil.copytree(hf_folder, generic)
    config = json.loads((generic / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
    config["label2id"] = {"LABEL_0": 0, "LABEL_1": 1}
    (generic / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ModelError,
        match=r"teacher: the Hugging Face classifier .*generic has only generic label "
        r"names \['LABEL_0', 'LABEL_1'\].*set \"id2label\" \(and \"label2id\"\) "
        r"in .*config.json.*\"id2label\": \{\"0\": \"negative\", \"1\": \"positive\"\}",
    ):
        load_classifier(generic, flag="teacher", labels=LABELS)
    # Without data.labels to map onto (predict, serve) the checkpoint loads with its own names.
    assert load_classifier(generic)[0].labels == ["LABEL_0", "LABEL_1"]


def test_a_bert_pair_teacher_reads_the_segment_ids_its_tokenizer_would_give(tmp_path):
    from transformers import BertTokenizerFast

    words = sorted({w for t in ["the phone is good", "the battery is bad", "it is not good at all"] for w in t.split()})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=1.0,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    folder = tmp_path / "nli"
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model, tok = load_classifier(folder, labels=LABELS)
    reference = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tok(
        ["the phone is good", "the battery"], ["it is not good at all", "is bad"], padding=True, return_tensors="pt"
    )
    assert enc["token_type_ids"].sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(enc["input_ids"], enc["attention_mask"])["logits"], reference(**enc).logits)
