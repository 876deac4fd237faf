from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from xdistill.config import StudentConfig
from xdistill.distill.classify import default_layer_map
from xdistill.errors import ModelError
from xdistill.models.encoder import load_encoder
from xdistill.models.student import build_student
from xdistill.models.tiny import create_random_encoder

CORPUS = [
    "the lamp is bright and cheap",
    "la lámpara es muy buena",
    "这个台灯很好用",
    "terrible headphones, broke fast",
    "los auriculares se rompieron",
    "耳机质量太差了",
] * 5


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = create_random_encoder(tmp_path_factory.mktemp("teacher") / "enc", CORPUS, "tiny", seed=0)
    return load_encoder(folder).eval(), AutoTokenizer.from_pretrained(folder)


def hidden(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state


def test_copying_every_layer_reproduces_the_teacher(teacher):
    model, tok = teacher
    cfg = StudentConfig(init="teacher", layers=list(range(model.config.num_hidden_layers)), trim_vocab=False)
    student, s_tok, _ = build_student(model, tok, cfg, CORPUS, progress=False)
    torch.testing.assert_close(hidden(student.eval(), s_tok, CORPUS[:3]), hidden(model, tok, CORPUS[:3]))


def test_chosen_layers_are_copied(teacher):
    model, tok = teacher
    student, _, info = build_student(model, tok, StudentConfig(layers=[0, 3], trim_vocab=False), CORPUS, progress=False)
    assert student.config.num_hidden_layers == 2
    assert info["teacher_layers"] == [0, 3]
    for s_idx, t_idx in ((0, 0), (1, 3)):
        torch.testing.assert_close(
            student.encoder.layer[s_idx].attention.self.query.weight,
            model.encoder.layer[t_idx].attention.self.query.weight,
        )


def test_trimmed_student_is_smaller_and_round_trips_through_from_pretrained(teacher, tmp_path):
    model, tok = teacher
    full, full_tok, _ = build_student(
        model, tok, StudentConfig(layers=[0, 3], trim_vocab=False), CORPUS, progress=False
    )
    spanish = [t for t in CORPUS[:6] if "la" in t or "los" in t]
    small, small_tok, info = build_student(model, tok, StudentConfig(layers=[0, 3]), spanish, progress=False)
    assert info["vocab_after"] < info["vocab_before"]
    assert small.get_input_embeddings().weight.shape[0] == len(small_tok) < len(tok)
    small.save_pretrained(tmp_path, safe_serialization=True)
    small_tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded, loaded_tok = AutoModel.from_pretrained(tmp_path).eval(), AutoTokenizer.from_pretrained(tmp_path)
    # In-corpus text: same segmentation, same outputs as the untrimmed copy.
    torch.testing.assert_close(hidden(loaded, loaded_tok, spanish), hidden(full.eval(), full_tok, spanish))
    assert loaded_tok("这个台灯")["input_ids"]  # out-of-corpus text still tokenizes


def test_random_student_has_the_configured_shape(teacher):
    model, tok = teacher
    cfg = StudentConfig(init="random", num_layers=2, hidden_size=16, num_heads=2, ffn_size=32)
    student, s_tok, _ = build_student(model, tok, cfg, CORPUS, progress=False)
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.config.intermediate_size) == (
        2,
        16,
        32,
    )
    assert student.get_input_embeddings().weight.shape == (len(s_tok), 16)


def test_layer_out_of_range_is_a_clear_error(teacher):
    model, tok = teacher
    with pytest.raises(
        ModelError, match=r"student.layers \[0, 9\] names layer\(s\) \[9\], but the teacher has 4 layers"
    ):
        build_student(model, tok, StudentConfig(layers=[0, 9], trim_vocab=False), CORPUS, progress=False)


def test_default_layer_map():
    assert default_layer_map(2, [0, 11], 12) == [(0, 0), (1, 1), (2, 12)]
    assert default_layer_map(3, None, 12) == [(0, 0), (1, 4), (2, 8), (3, 12)]


def test_a_student_with_frozen_embeddings_keeps_the_teachers_word_vectors(tiny_raw):
    from xdistill.api import distill, train_teacher
    from xdistill.config import RunConfig, from_dict

    tiny_raw["student"]["freeze_embeddings"] = True
    cfg = from_dict(RunConfig, tiny_raw, source="test")
    train_teacher(cfg, progress=False, echo=lambda _: None)
    distill(cfg, progress=False, echo=lambda _: None)
    run = cfg.run_dir
    teacher, t_tok = AutoModel.from_pretrained(f"{run}/teacher"), AutoTokenizer.from_pretrained(f"{run}/teacher")
    student, s_tok = AutoModel.from_pretrained(f"{run}/student"), AutoTokenizer.from_pretrained(f"{run}/student")
    t_vocab = t_tok.get_vocab()
    pieces = sorted(s_tok.get_vocab().items(), key=lambda kv: kv[1])
    t_rows = teacher.get_input_embeddings().weight[torch.tensor([t_vocab[p] for p, _ in pieces])]
    s_rows = student.get_input_embeddings().weight[torch.tensor([i for _, i in pieces])]
    assert torch.equal(t_rows, s_rows)  # trimmed, but not trained
    # ... while the layers above did train.
    assert not torch.equal(teacher.encoder.layer[0].output.dense.weight, student.encoder.layer[0].output.dense.weight)


def test_batches_and_predictions_follow_the_device_of_the_model():
    # On a GPU, fit() and predict() move each batch to where the model is; checked here with the
    # "meta" device, which every torch build has.
    from xdistill.models.batches import model_device, to_device

    assert model_device(torch.nn.Linear(2, 2).to("meta")).type == "meta"
    assert model_device(object()) == torch.device("cpu")  # ONNX / OpenVINO runtimes: no torch weights
    batch = to_device({"input_ids": torch.ones(2, 3), "rows": [0, 1]}, torch.device("meta"))
    assert batch["input_ids"].device.type == "meta" and batch["rows"] == [0, 1]
