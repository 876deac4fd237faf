"""Tests for xdistill.losses.

Fixed-value tests compare each loss with a number worked out independently with `math`
on tiny hand-made tensors (the arithmetic is written out in comments), never by calling the
same torch function the implementation uses.
"""

from __future__ import annotations

import math

import pytest
import torch

from xdistill.losses import (
    AttentionKLLoss,
    EmbeddingMSELoss,
    HiddenStateMSELoss,
    SoftTargetLoss,
    TranslationRankingLoss,
    WordKDLoss,
)


def _softmax(z):
    m = max(z)
    e = [math.exp(x - m) for x in z]
    s = sum(e)
    return [x / s for x in e]


def _kl(p, q):
    """KL(p ‖ q) = Σ p·(ln p − ln q), skipping p = 0 terms (0·ln 0 = 0)."""
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0)


# ---------------------------------------------------------------------------------------------
# SoftTargetLoss
# ---------------------------------------------------------------------------------------------

STUDENT = [[2.0, 0.0], [0.0, 1.0]]
TEACHER = [[1.0, 1.0], [0.0, 3.0]]


def _t(x, **kw):
    return torch.tensor(x, dtype=torch.float32, **kw)


def test_soft_target_fixed_value():
    # T = 2, α = 0.5, labels [0, -100].
    # Row 1: z_s/T = [1, 0]   → p_s = [e/(e+1), 1/(e+1)] = [0.731059, 0.268941]
    #        z_t/T = [.5, .5] → p_t = [0.5, 0.5]
    #        KL = .5·ln(.5/.731059) + .5·ln(.5/.268941) = 0.120115
    # Row 2: z_s/T = [0, .5]  → p_s = [0.377541, 0.622459]
    #        z_t/T = [0, 1.5] → p_t = [0.182426, 0.817574]
    #        KL = .182426·ln(.182426/.377541) + .817574·ln(.817574/.622459) = 0.090238
    # kd = T² · (0.120115 + 0.090238) / 2 = 4 · 0.105177 = 0.420705
    # ce = only row 1 is labelled: −ln softmax([2, 0])[0] = ln(1 + e^−2) = 0.126928
    # loss = .5 · 0.126928 + .5 · 0.420705 = 0.273817
    kl1 = _kl([0.5, 0.5], [math.e / (math.e + 1), 1 / (math.e + 1)])
    p_s2 = [1 / (1 + math.exp(0.5)), math.exp(0.5) / (1 + math.exp(0.5))]
    p_t2 = [1 / (1 + math.exp(1.5)), math.exp(1.5) / (1 + math.exp(1.5))]
    kl2 = _kl(p_t2, p_s2)
    kd = 4.0 * (kl1 + kl2) / 2
    ce = math.log(1 + math.exp(-2))
    assert kd == pytest.approx(0.420705, abs=1e-6)
    assert ce == pytest.approx(0.126928, abs=1e-6)

    out = SoftTargetLoss(temperature=2.0, alpha=0.5)(_t(STUDENT), _t(TEACHER), torch.tensor([0, -100]))
    assert set(out) == {"loss", "kd", "ce"}
    assert out["kd"].item() == pytest.approx(kd, rel=1e-5)
    assert out["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.5 * ce + 0.5 * kd, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.273817, abs=1e-5)
    for v in out.values():
        assert v.dim() == 0


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 7.0])
def test_soft_target_kd_is_t_squared_times_kl_at_t(temperature):
    z_s = [[0.3, -1.2, 2.0], [1.0, 0.0, -0.5]]
    z_t = [[1.5, 0.2, -0.7], [0.0, 2.5, 1.0]]
    kls = [
        _kl(_softmax([x / temperature for x in t]), _softmax([x / temperature for x in s])) for s, t in zip(z_s, z_t)
    ]
    expected = temperature**2 * sum(kls) / len(kls)
    out = SoftTargetLoss(temperature=temperature, alpha=0.0)(_t(z_s), _t(z_t))
    assert out["kd"].item() == pytest.approx(expected, rel=1e-5)


def test_soft_target_gradient_size_roughly_independent_of_t():
    # With the T² factor, ∂kd/∂z_s = T·(p_s − p_t)/B, which tends to (z_s − z_t − mean)/(C·B)
    # for large T, so the gradient norm stays about the same as T grows.
    z_t = _t([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]])
    norms = []
    for temperature in (8.0, 16.0, 32.0):
        z_s = _t([[0.2, 0.4, -0.3], [-0.6, 0.1, 0.9]], requires_grad=True)
        SoftTargetLoss(temperature=temperature, alpha=0.0)(z_s, z_t)["loss"].backward()
        norms.append(z_s.grad.norm().item())
    assert max(norms) / min(norms) < 1.05


def test_soft_target_alpha_one_is_pure_ce():
    out = SoftTargetLoss(temperature=2.0, alpha=1.0)(_t(STUDENT), _t(TEACHER), torch.tensor([0, 1]))
    # ce = mean(ln(1 + e^−2), ln(1 + e^−1)) = mean(0.126928, 0.313262)
    ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert out["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["loss"].item() == pytest.approx(ce, rel=1e-5)
    assert out["kd"].item() > 0  # still reported for logging


def test_soft_target_alpha_zero_is_pure_kd():
    out = SoftTargetLoss(temperature=2.0, alpha=0.0)(_t(STUDENT), _t(TEACHER), torch.tensor([0, 1]))
    assert out["loss"].item() == pytest.approx(out["kd"].item(), rel=1e-6)
    assert out["ce"].item() > 0


def test_soft_target_no_labels_gives_zero_ce():
    loss_fn = SoftTargetLoss(temperature=2.0, alpha=0.3)
    for labels in (torch.tensor([-100, -100]), None):
        z_s = _t(STUDENT, requires_grad=True)
        out = loss_fn(z_s, _t(TEACHER), labels)
        assert out["ce"].item() == 0.0
        assert out["loss"].item() == pytest.approx(0.7 * out["kd"].item(), rel=1e-6)
        out["loss"].backward()
        assert torch.isfinite(z_s.grad).all()


def test_soft_target_label_mask_overrides_label_values():
    # Rows masked out are ignored whatever their label holds (here an invalid -1).
    loss_fn = SoftTargetLoss(alpha=1.0)
    out = loss_fn(_t(STUDENT), _t(TEACHER), torch.tensor([0, -1]), label_mask=torch.tensor([True, False]))
    assert out["ce"].item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-5)
    none_labelled = loss_fn(_t(STUDENT), _t(TEACHER), torch.tensor([0, 1]), label_mask=torch.tensor([False, False]))
    assert none_labelled["ce"].item() == 0.0


def test_soft_target_without_teacher_is_ce():
    z_s = _t(STUDENT, requires_grad=True)
    out = SoftTargetLoss(temperature=2.0, alpha=0.3)(z_s, None, torch.tensor([0, 1]))
    ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert out["kd"].item() == 0.0
    assert out["loss"].item() == pytest.approx(ce, rel=1e-5)
    assert out["loss"].item() == out["ce"].item()
    out["loss"].backward()
    assert z_s.grad is not None


def test_soft_target_no_teacher_no_labels_still_backpropagates():
    z_s = _t(STUDENT, requires_grad=True)
    out = SoftTargetLoss()(z_s, None, torch.tensor([-100, -100]))
    assert out["loss"].item() == 0.0
    out["loss"].backward()  # must not raise "does not require grad"
    assert torch.count_nonzero(z_s.grad) == 0


def test_soft_target_identical_logits_give_zero_kd():
    z = _t([[0.3, -2.0, 1.1], [4.0, 0.0, 0.0]])
    out = SoftTargetLoss(temperature=3.0, alpha=0.5)(z, z.clone())
    assert out["kd"].item() == pytest.approx(0.0, abs=1e-6)


def test_soft_target_does_not_backprop_into_teacher():
    z_t = _t(TEACHER, requires_grad=True)
    z_s = _t(STUDENT, requires_grad=True)
    SoftTargetLoss()(z_s, z_t, torch.tensor([0, 1]))["loss"].backward()
    assert z_t.grad is None
    assert z_s.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1}, r"distill\.temperature must be > 0, got -1"),
        ({"temperature": 0}, r"distill\.temperature must be > 0, got 0"),
        ({"temperature": float("nan")}, r"distill\.temperature"),
        ({"alpha": 1.5}, r"distill\.alpha must be in \[0, 1\], got 1\.5"),
        ({"alpha": -0.1}, r"distill\.alpha"),
    ],
)
def test_soft_target_rejects_bad_args(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SoftTargetLoss(**kwargs)


def test_soft_target_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="teacher_logits shape"):
        SoftTargetLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="labels must have shape"):
        SoftTargetLoss()(torch.zeros(2, 3), None, torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# HiddenStateMSELoss
# ---------------------------------------------------------------------------------------------

# One sequence of 3 tokens, the last one padding; width 2 for both models.
MASK = torch.tensor([[1, 1, 0]])
S_HIDDEN = (
    _t([[[1, 2], [0, 0], [9, 9]]]),  # 0: embeddings
    _t([[[1, 1], [1, 1], [7, 7]]]),  # 1
)
T_HIDDEN = (
    _t([[[0, 2], [1, 1], [-5, 5]]]),  # 0
    _t([[[5, 5], [5, 5], [5, 5]]]),  # 1 (unused)
    _t([[[1, 3], [0, 1], [0, 0]]]),  # 2
)


def test_hidden_mse_fixed_value():
    # pair (0, 0): token 0: (1−0)² + (2−2)² = 1; token 1: (0−1)² + (0−1)² = 2; token 2 padding.
    #              mse = (1 + 2) / (2 tokens · 2 units) = 0.75
    # pair (1, 2): token 0: 0² + (1−3)² = 4;     token 1: 1² + 0² = 1.
    #              mse = 5 / 4 = 1.25
    # loss = (0.75 + 1.25) / 2 = 1.0
    loss_fn = HiddenStateMSELoss(2, 2, [(0, 0), (1, 2)])
    out = loss_fn(S_HIDDEN, T_HIDDEN, MASK)
    assert set(out) == {"loss", "hidden_0_0", "hidden_1_2"}
    assert out["hidden_0_0"].item() == pytest.approx(0.75)
    assert out["hidden_1_2"].item() == pytest.approx(1.25)
    assert out["loss"].item() == pytest.approx(1.0)


def test_hidden_mse_without_mask_uses_all_tokens():
    # pair (0, 0) over all 3 tokens: 1 + 2 + ((9+5)² + (9−5)²) = 3 + 196 + 16 = 215; / (3·2)
    out = HiddenStateMSELoss(2, 2, [(0, 0)])(S_HIDDEN, T_HIDDEN)
    assert out["loss"].item() == pytest.approx(215 / 6)


def test_hidden_mse_ignores_padding():
    loss_fn = HiddenStateMSELoss(2, 2, [(0, 0), (1, 2)])
    base = loss_fn(S_HIDDEN, T_HIDDEN, MASK)["loss"].item()
    s2 = tuple(h.clone() for h in S_HIDDEN)
    t2 = tuple(h.clone() for h in T_HIDDEN)
    for h in s2 + t2:
        h[:, 2] = torch.randn(2) * 100
    s2[0][:, 2] = float("inf")  # even non-finite padding must not leak in
    assert loss_fn(s2, t2, MASK)["loss"].item() == pytest.approx(base)


def test_hidden_mse_projection_only_when_widths_differ():
    assert HiddenStateMSELoss(4, 4, [(1, 1)]).projection is None
    assert list(HiddenStateMSELoss(4, 4, [(1, 1)]).parameters()) == []
    proj = HiddenStateMSELoss(2, 3, [(1, 1)]).projection
    assert isinstance(proj, torch.nn.Linear)
    assert proj.weight.shape == (3, 2) and proj.bias is None


def test_hidden_mse_projection_fixed_value_and_gradients():
    # W maps [a, b] → [a, b, a + b]. Token 0: [1, 2] → [1, 2, 3] vs teacher [1, 2, 0]: error 3² = 9.
    # Token 1 is padding. mse = 9 / (1 token · 3 units) = 3.
    loss_fn = HiddenStateMSELoss(2, 3, [(0, 0)])
    with torch.no_grad():
        loss_fn.projection.weight.copy_(_t([[1, 0], [0, 1], [1, 1]]))
    student = (_t([[[1, 2], [5, 5]]], requires_grad=True),)
    teacher = (_t([[[1, 2, 0], [0, 0, 0]]]),)
    out = loss_fn(student, teacher, torch.tensor([[1, 0]]))
    assert out["loss"].item() == pytest.approx(3.0)
    out["loss"].backward()
    grad = loss_fn.projection.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert student[0].grad is not None


@pytest.mark.parametrize("layer_map", [[], [(-1, 0)], [(0, -2)], [(0,)], [(0, 1, 2)], [(0.5, 1)], ["ab"]])
def test_hidden_mse_rejects_bad_layer_map(layer_map):
    with pytest.raises(ValueError, match=r"distill\.layer_map"):
        HiddenStateMSELoss(2, 2, layer_map)


def test_hidden_mse_accepts_yaml_style_lists():
    assert HiddenStateMSELoss(2, 2, [[0, 0], [1, 2]]).layer_map == [(0, 0), (1, 2)]


def test_hidden_mse_out_of_range_index_names_index_and_layer_count():
    with pytest.raises(ValueError, match=r"student layer index 5 .*returned 2 hidden states"):
        HiddenStateMSELoss(2, 2, [(5, 0)])(S_HIDDEN, T_HIDDEN, MASK)
    with pytest.raises(ValueError, match=r"teacher layer index 3 .*returned 3 hidden states"):
        HiddenStateMSELoss(2, 2, [(0, 3)])(S_HIDDEN, T_HIDDEN, MASK)


# ---------------------------------------------------------------------------------------------
# AttentionKLLoss
# ---------------------------------------------------------------------------------------------

# One sequence of 2 tokens, one head.
A_T = _t([[[[0.5, 0.5], [1.0, 0.0]]]])
A_S = _t([[[[0.25, 0.75], [0.5, 0.5]]]])
# query 0: KL = .5·ln(.5/.25) + .5·ln(.5/.75) = .5·ln 2 + .5·ln(2/3) = 0.143841
# query 1: KL = 1·ln(1/.5) + 0 = ln 2 = 0.693147   (0·ln 0 counts as 0)
KL_Q0 = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
KL_Q1 = math.log(2)


def test_attention_kl_fixed_value():
    assert KL_Q0 == pytest.approx(0.143841, abs=1e-6)  # noqa: SIM300 (KL_Q0 is computed, not a constant)
    out = AttentionKLLoss([(0, 1)])((A_S,), (A_T * 0 + 0.5, A_T), torch.tensor([[1, 1]]))
    assert set(out) == {"loss", "attention_0_1"}
    assert out["attention_0_1"].item() == pytest.approx((KL_Q0 + KL_Q1) / 2, rel=1e-5)
    assert out["loss"].item() == pytest.approx((KL_Q0 + KL_Q1) / 2, rel=1e-5)


def test_attention_kl_averages_over_layers_and_heads():
    # Layer pair (0, 0) has 2 identical heads: per-head KL mean = (KL_Q0 + KL_Q1)/2.
    # Layer pair (1, 1) is identical in both models: KL = 0. loss = mean of the two.
    a_s = A_S.repeat(1, 2, 1, 1)
    a_t = A_T.repeat(1, 2, 1, 1)
    same = _t([[[[0.2, 0.8], [0.6, 0.4]]]]).repeat(1, 2, 1, 1)
    out = AttentionKLLoss([(0, 0), (1, 1)])((a_s, same), (a_t, same.clone()))
    assert out["attention_0_0"].item() == pytest.approx((KL_Q0 + KL_Q1) / 2, rel=1e-5)
    assert out["attention_1_1"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["loss"].item() == pytest.approx((KL_Q0 + KL_Q1) / 4, rel=1e-5)


def test_attention_kl_ignores_padded_queries():
    mask = torch.tensor([[1, 0]])
    loss_fn = AttentionKLLoss([(0, 0)])
    out = loss_fn((A_S,), (A_T,), mask)
    assert out["loss"].item() == pytest.approx(KL_Q0, rel=1e-5)
    a_s2, a_t2 = A_S.clone(), A_T.clone()
    a_s2[..., 1, :] = _t([0.99, 0.01])
    a_t2[..., 1, :] = _t([0.0, 1.0])
    assert loss_fn((a_s2,), (a_t2,), mask)["loss"].item() == pytest.approx(KL_Q0, rel=1e-5)


def test_attention_kl_different_head_counts_average_heads_first():
    # Teacher heads at query 1: [1, 0] and [0, 1] → mean [.5, .5]; at query 0 both [.5, .5].
    # Student (1 head): [[.25, .75], [.5, .5]].
    # query 0: KL_Q0 = 0.143841; query 1: KL([.5,.5] ‖ [.5,.5]) = 0. loss = 0.143841 / 2
    a_t = _t([[[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]]])
    out = AttentionKLLoss([(0, 0)])((A_S,), (a_t,), torch.tensor([[1, 1]]))
    assert out["loss"].item() == pytest.approx(KL_Q0 / 2, rel=1e-5)


def test_attention_kl_exact_zeros_stay_finite_and_get_gradients():
    a_s = _t([[[[1.0, 0.0], [0.0, 1.0]]]], requires_grad=True)
    out = AttentionKLLoss([(0, 0)])((a_s,), (_t([[[[1.0, 0.0], [0.5, 0.5]]]]),))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert torch.isfinite(a_s.grad).all()


def test_attention_kl_identical_maps_give_zero():
    a = torch.softmax(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), -1)
    out = AttentionKLLoss([(0, 0)])((a,), (a.clone(),), torch.ones(2, 4))
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_attention_kl_validation():
    with pytest.raises(ValueError, match=r"distill\.layer_map"):
        AttentionKLLoss([])
    with pytest.raises(ValueError, match=r"distill\.layer_map"):
        AttentionKLLoss([(0, -1)])
    with pytest.raises(ValueError, match=r"teacher layer index 4 .*returned 1 attention maps"):
        AttentionKLLoss([(0, 4)])((A_S,), (A_T,))
    with pytest.raises(ValueError, match="output_attentions=True"):
        AttentionKLLoss([(0, 0)])((A_S,), None)


# ---------------------------------------------------------------------------------------------
# EmbeddingMSELoss
# ---------------------------------------------------------------------------------------------


def test_embedding_mse_fixed_value():
    # squared errors: (1−1)², (2−0)², (3−0)², (4−4)² = 0, 4, 9, 0 → 13 / (2 · 2) = 3.25
    out = EmbeddingMSELoss(2, 2)(_t([[1, 2], [3, 4]]), _t([[1, 0], [0, 4]]))
    assert set(out) == {"loss"}
    assert out["loss"].item() == pytest.approx(3.25)


def test_embedding_mse_projection_only_when_dims_differ_and_gets_gradients():
    assert EmbeddingMSELoss(3, 3).projection is None
    loss_fn = EmbeddingMSELoss(2, 3)
    assert loss_fn.projection.weight.shape == (3, 2) and loss_fn.projection.bias is None
    # W maps [a, b] → [a, b, a + b]: [1, 2] → [1, 2, 3] vs [0, 2, 3]: 1; [1, 1] → [1, 1, 2]
    # vs [1, 1, 0]: 4. loss = (1 + 4) / (2 · 3) = 5/6
    with torch.no_grad():
        loss_fn.projection.weight.copy_(_t([[1, 0], [0, 1], [1, 1]]))
    out = loss_fn(_t([[1, 2], [1, 1]]), _t([[0, 2, 3], [1, 1, 0]]))
    assert out["loss"].item() == pytest.approx(5 / 6)
    out["loss"].backward()
    assert loss_fn.projection.weight.grad.abs().sum() > 0


def test_embedding_mse_rejects_wrong_widths():
    with pytest.raises(ValueError, match="student_dim=2"):
        EmbeddingMSELoss(2, 3)(torch.zeros(1, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="student_dim"):
        EmbeddingMSELoss(0, 3)


# ---------------------------------------------------------------------------------------------
# WordKDLoss (translation students: per-token KD against a white-box teacher)
# ---------------------------------------------------------------------------------------------


def test_word_kd_loss_matches_a_hand_computed_value():
    # One sentence, two target positions (the second is padding), vocabulary of 2.
    student = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])
    teacher = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])  # p_t = (1/4, 3/4)
    labels = torch.tensor([[1, -100]])
    parts = WordKDLoss(weight=0.5, temperature=1.0)(student, labels, teacher)
    ce = math.log(2.0)  # -log 1/2
    kd = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # KL((1/4,3/4) || (1/2,1/2))
    assert parts["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert parts["word_kd"].item() == pytest.approx(kd, abs=1e-6)
    assert parts["loss"].item() == pytest.approx(0.5 * ce + 0.5 * kd, abs=1e-6)
    with pytest.raises(ValueError, match="shared vocabulary"):
        WordKDLoss(weight=0.5)(student, labels, teacher[..., :1])


# ---------------------------------------------------------------------------------------------
# TranslationRankingLoss (sentence-embedding students: in-batch translation ranking)
# ---------------------------------------------------------------------------------------------


def test_translation_ranking_loss():
    loss_fn = TranslationRankingLoss(scale=20.0)
    eye = torch.eye(4)
    aligned = loss_fn(eye, eye * 3)
    assert aligned["accuracy"] == 1.0 and aligned["loss"] < 1e-6
    shuffled = loss_fn(eye, eye[[1, 0, 3, 2]])
    assert shuffled["accuracy"] == 0.0 and shuffled["loss"] > 10
    with pytest.raises(ValueError, match="aligned"):
        loss_fn(eye, eye[:3])
