"""Model folders (xdistill.models.folder): one info reader, one atomic folder write, checksummed weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from xdistill import fingerprints
from xdistill.errors import ModelError
from xdistill.io_utils import atomic_dir
from xdistill.models.folder import MODEL_INFO, read_model_info, verify_weights

TEXTS = ["a good phone", "bad battery life", "muy bueno", "很好", "it works", "never again", "ok", "great value"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from torch import nn

    from xdistill.config import Seq2SeqArchConfig
    from xdistill.models.classifier import SequenceClassifier
    from xdistill.models.encoder import load_encoder
    from xdistill.models.sentence import SentenceEncoder, save_sentence_encoder
    from xdistill.models.seq2seq import build_marian, save_translator, train_tokenizer
    from xdistill.models.tiny import create_random_encoder

    root = tmp_path_factory.mktemp("folders")
    enc = create_random_encoder(root / "enc", TEXTS * 10)
    tokenizer = AutoTokenizer.from_pretrained(enc)
    clf = SequenceClassifier.from_encoder(enc, ["negative", "positive"], tokenizer, max_length=32).eval()
    clf = clf.save(root / "teacher", tokenizer, {"role": "teacher"})
    encoder = load_encoder(enc)
    sentence = SentenceEncoder(encoder, dense=nn.Linear(encoder.config.hidden_size, 8), normalize=True, max_length=32)
    sentence = save_sentence_encoder(sentence.eval(), tokenizer, root / "student", {"role": "student"})
    tok = train_tokenizer(TEXTS * 5 + ["un buen teléfono", "mala batería"] * 5, 100, 24)
    marian = build_marian(
        Seq2SeqArchConfig(encoder_layers=1, decoder_layers=1, d_model=32, ffn_size=64, heads=2), tok, 24
    )
    mt = save_translator(marian.eval(), tok, root / "translator", {"max_length": 24})
    return {"encoder": enc, "classifier": clf, "sentence": sentence, "translator": mt}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 5] ^= 0xFF  # inside the tensor data, past the header: parses, gives wrong numbers
    path.write_bytes(bytes(data))


def _truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# -- one info reader -------------------------------------------------------------------------------


def test_read_model_info_is_one_model_error_for_a_missing_or_bad_file(tmp_path):
    with pytest.raises(ModelError, match=rf"{tmp_path}: no {MODEL_INFO}, so this is not a model folder xdistill wrote"):
        read_model_info(tmp_path)
    assert read_model_info(tmp_path, optional=True) == {}  # a plain Hugging Face folder
    (tmp_path / MODEL_INFO).write_text('{"kind": "classifier",', encoding="utf-8")
    for optional in (False, True):
        with pytest.raises(ModelError, match=rf"{tmp_path}: {MODEL_INFO} cannot be read \(.*\); restore the folder"):
            read_model_info(tmp_path, optional=optional)
    (tmp_path / MODEL_INFO).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ModelError, match=rf"{MODEL_INFO} holds a list, not a JSON object"):
        read_model_info(tmp_path)


def test_bad_info_file_is_one_line_from_the_cli(models, tmp_path):
    folder = _copy(models["classifier"], tmp_path / "clf")
    (folder / MODEL_INFO).write_text("{oops", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "xdistill", "-q", "predict", str(folder)],
        input='{"text": "ok"}\n',
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: {folder}: {MODEL_INFO} cannot be read (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)); restore the folder from a copy, or download / re-create the model"
    ]


def test_the_old_module_names_still_import():
    from xdistill.export import runtime
    from xdistill.models import e5_import, seq2seq

    assert seq2seq.MODEL_INFO == e5_import.MODEL_INFO == runtime.MODEL_INFO == MODEL_INFO
    assert seq2seq.read_model_info is read_model_info


# -- atomic folder writes ----------------------------------------------------------------------------


def test_atomic_dir_replaces_a_folder_and_keeps_it_on_failure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with atomic_dir("out") as tmp:  # a relative path
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(Path("out")) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "out" / "a.txt").read_text() == "one"
    with atomic_dir(tmp_path / "sub" / ".." / "out") as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .tmp / .old left, "sub" never made
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.txt"]


# -- checksummed weights ------------------------------------------------------------------------------


def test_every_writer_records_the_sha256_of_each_weight_file(models):
    expected = {
        "encoder": {"model.safetensors"},
        "classifier": {"model.safetensors"},  # a native sequence-classification folder: the head is inside
        "sentence": {"model.safetensors", "2_Dense/model.safetensors"},
        "translator": {"model.safetensors"},
    }
    for name, files in expected.items():
        info = json.loads((models[name] / MODEL_INFO).read_text())
        assert set(info["checksums"]) == files, name
        for rel, entry in info["checksums"].items():
            data = (models[name] / rel).read_bytes()
            assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        verify_weights(models[name])


def test_flipped_bytes_in_the_encoder_weights_are_one_model_error(models, tmp_path):
    from xdistill.export.runtime import load_model

    folder = _copy(models["classifier"], tmp_path / "teacher")
    _flip_byte(folder / "model.safetensors")
    with pytest.raises(
        ModelError,
        match=rf"^{folder}: weight file model\.safetensors is corrupted \(its SHA-256 "
        r"differs from the one in xdistill_model\.json\); re-run the stage that "
        r"wrote it \(`xdistill teacher train --config \.\.\. --force`\)",
    ):
        load_model(folder)


def test_a_classifier_of_the_old_layout_is_one_model_error_saying_to_rerun(models, tmp_path):
    from xdistill.models.classifier import SequenceClassifier

    folder = _copy(models["classifier"], tmp_path / "teacher")
    (folder / "classifier_head.safetensors").write_bytes(b"old")
    with pytest.raises(
        ModelError,
        match=rf"^model: {folder} was written by an older xdistill \(a bare encoder \+ classifier_head\.safetensors\); "
        r"classifiers are now native Hugging Face sequence-classification folders: re-run the stage",
    ):
        SequenceClassifier.load(folder)


def test_damaged_dense_and_translator_weights_are_one_model_error(models, tmp_path):
    from xdistill.models.sentence import load_sentence_encoder
    from xdistill.models.translators import Seq2SeqTranslator

    student = _copy(models["sentence"], tmp_path / "student")
    _flip_byte(student / "2_Dense" / "model.safetensors")
    with pytest.raises(ModelError, match=r"weight file 2_Dense/model\.safetensors is corrupted .*`xdistill distill "):
        load_sentence_encoder(student)
    mt = _copy(models["translator"], tmp_path / "mt")
    _truncate(mt / "model.safetensors", 0.3)
    with pytest.raises(ModelError, match=rf"^{mt}: weight file model\.safetensors is truncated"):
        Seq2SeqTranslator(mt)


def test_a_foreign_folder_without_checksums_loads_and_a_truncated_one_is_named(models, tmp_path):
    from xdistill.models.encoder import load_encoder

    folder = _copy(models["encoder"], tmp_path / "hf")
    (folder / MODEL_INFO).unlink()  # as downloaded from the Hugging Face hub
    assert load_encoder(folder).config.hidden_size == 32
    _truncate(folder / "model.safetensors")
    with pytest.raises(
        ModelError,
        match=rf"^{folder}: weight file model\.safetensors cannot be read \(the header "
        r"promises \d+ bytes, the file has \d+: the file is truncated\)",
    ):
        load_encoder(folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ModelError, match=r"model\.safetensors cannot be read \(2 bytes, too short"):
        load_encoder(folder)


def test_corrupted_weights_are_one_line_and_exit_2_from_the_cli(models, tmp_path):
    folder = _copy(models["classifier"], tmp_path / "teacher")
    _truncate(folder / "model.safetensors")
    out = subprocess.run(
        [sys.executable, "-m", "xdistill", "-q", "predict", str(folder)],
        input='{"text": "ok"}\n',
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {folder}: weight file model.safetensors is truncated")


def test_verification_is_cached_until_the_file_changes(models, tmp_path, monkeypatch):
    folder = _copy(models["classifier"], tmp_path / "teacher")
    old = time.time() - 60
    for path in folder.iterdir():
        os.utime(path, (old, old))  # written a while ago: not "racy", its hash may be remembered
    hashed = []

    def sha256():
        hashed.append(1)
        return hashlib.sha256()

    monkeypatch.setattr(fingerprints, "_HASHES", {})
    monkeypatch.setattr(fingerprints, "hashlib", types.SimpleNamespace(sha256=sha256))
    verify_weights(folder)
    verify_weights(folder)
    assert len(hashed) == 1  # model.safetensors, once
    _flip_byte(folder / "model.safetensors")  # a new mtime: hashed again
    with pytest.raises(ModelError, match="model.safetensors is corrupted"):
        verify_weights(folder)
    assert len(hashed) == 2
