"""On-policy distillation (GKD) for translation: the loss, the student's own samples as targets,
and a tiny teacher -> student run that mixes on-policy and seq-KD steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from test_translate import _config, mt_data, mt_raw  # noqa: F401  (mt_data is a fixture)
from xdistill.losses import GeneralizedJSDLoss


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_generalized_jsd_matches_the_formula_worked_by_hand():
    p_t, p_s, beta = [0.7, 0.2, 0.1], [0.2, 0.5, 0.3], 0.3
    m = [beta * a + (1 - beta) * b for a, b in zip(p_t, p_s)]
    want = beta * _kl(p_t, m) + (1 - beta) * _kl(p_s, m)
    logits = lambda p: torch.log(torch.tensor([[p, p]]))  # noqa: E731  (B=1, L=2, V=3)
    labels = torch.tensor([[5, -100]])  # the second position is padding and does not count
    got = GeneralizedJSDLoss(beta=beta)(logits(p_s), logits(p_t), labels)
    assert got["loss"].item() == pytest.approx(want, rel=1e-5)
    same = GeneralizedJSDLoss(beta=beta)(logits(p_t), logits(p_t), labels)["loss"]
    assert same.item() == pytest.approx(0.0, abs=1e-7)


def test_generalized_jsd_gradient_moves_the_student_towards_the_teacher():
    student = torch.zeros(1, 1, 3, requires_grad=True)
    teacher = torch.tensor([[[3.0, 0.0, 0.0]]])
    GeneralizedJSDLoss()(student, teacher, torch.tensor([[1]]))["loss"].backward()
    assert student.grad[0, 0, 0] < 0  # raising the teacher's favourite class lowers the loss


def test_bad_on_policy_settings_name_the_flag():
    with pytest.raises(ValueError, match=r"mt\.on_policy_beta must be in \(0, 1\), got 1"):
        GeneralizedJSDLoss(beta=1.0)


def test_the_student_trains_on_its_own_samples(tmp_path, monkeypatch):
    from transformers.generation import utils as generation_utils

    from xdistill.config import Seq2SeqArchConfig
    from xdistill.distill.translate import sample_translations
    from xdistill.models.seq2seq import build_marian, train_tokenizer

    tok = train_tokenizer(["a good phone", "un buen teléfono", "bad battery", "mala batería"] * 10, 60, 16)
    torch.manual_seed(0)
    model = build_marian(
        Seq2SeqArchConfig(encoder_layers=1, decoder_layers=1, d_model=16, ffn_size=32, heads=2), tok, 16
    ).train()
    batch = tok(["a good phone", "bad battery"], padding=True, return_tensors="pt")
    warnings = []
    monkeypatch.setattr(generation_utils.logger, "warning", lambda msg, *a, **k: warnings.append(msg))
    labels = sample_translations(model, tok, batch, 12, 1.0)
    assert not [w for w in warnings if "max_new_tokens" in w]  # no length warning on every sampled batch
    assert model.training  # back in training mode after sampling
    assert labels.shape[0] == 2 and labels.shape[1] <= 12
    assert ((labels == -100) | (labels >= 0)).all() and (labels != tok.pad_token_id).all()


@pytest.mark.slow
def test_on_policy_steps_mix_with_seqkd_in_a_tiny_run(tmp_path, mt_data):  # noqa: F811  (the fixture)
    from xdistill.pipeline import run_all

    raw = mt_raw(tmp_path, mt_data, train={"epochs": 2, "batch_size": 16, "lr": 3e-3})
    raw["mt"]["on_policy_ratio"] = 0.5
    run_all(_config(raw), progress=False, echo=lambda _: None)
    run = Path(raw["run_dir"])
    records = [json.loads(line) for line in (run / "student-logs" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    share = sum(r["on_policy"] for r in train) / len(train)
    assert 0.0 < share < 1.0  # both kinds of steps happened
    assert any(r.get("gkd_jsd", 0) > 0 for r in train)
    info = json.loads((run / "student" / "xdistill_model.json").read_text())
    assert "on_policy" in json.dumps(info)
