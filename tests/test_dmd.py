"""The DMD network: shapes, masks, edges, losses, devices."""

import dataclasses

import pytest
import torch

from models.config import MODALITIES, PRESETS, ModelConfig, TrainConfig
from models.corrkd import corrkd_losses, drop_missing
from models.dmd import DMD
from models.graph_distill import EDGE_NAMES, EDGES, edge_prior
from models.losses import dmd_losses, margin_loss


def make_cfg(steps=(12, 20, 16), dims=(24, 8, 10), classes=()):
    return ModelConfig(dims=dict(zip(MODALITIES, dims)), steps=dict(zip(MODALITIES, steps)),
                       class_names=classes, **PRESETS["small"]["model"])


def make_batch(cfg, batch=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(batch, cfg.steps[m], cfg.dims[m], generator=gen) for m in MODALITIES}
    masks = {m: torch.ones(batch, cfg.steps[m]) for m in MODALITIES}
    return inputs, masks


@pytest.mark.parametrize("steps", [(10, 10, 10), (12, 30, 18)], ids=["aligned", "unaligned"])
def test_output_shapes(steps):
    cfg = make_cfg(steps=steps, classes=("happy", "sad", "angry"))
    net = DMD(cfg)
    inputs, masks = make_batch(cfg, batch=5)
    out = net(inputs, masks)
    assert out.sentiment.shape == (5,)
    assert out.class_logits.shape == (5, 3)
    assert out.edges_homo.shape == (5, 6) and out.edges_hetero.shape == (5, 6)
    for m in MODALITIES:
        assert out.logits_homo[m].shape == (5, 1) and out.logits_hetero[m].shape == (5, 1)
        assert out.repr_homo[m].shape == (5, cfg.d) and out.repr_hetero[m].shape == (5, 2 * cfg.d)
        assert out.recon[m].shape == (5, cfg.steps[m], cfg.d)
    assert set(out.branch_predictions()) == {"L_homo", "A_homo", "V_homo", "L_hetero", "A_hetero",
                                             "V_hetero", "c_fusion"}


def test_wrong_input_shape_is_named():
    cfg = make_cfg()
    inputs, masks = make_batch(cfg)
    inputs["A"] = inputs["A"][:, :, :3]
    with pytest.raises(ValueError, match="modality A"):
        DMD(cfg)(inputs, masks)


def test_masked_steps_change_nothing():
    torch.manual_seed(0)
    cfg = make_cfg()
    net = DMD(cfg).eval()
    inputs, masks = make_batch(cfg)
    masks["A"][:, 5:12] = 0
    masks["V"][2] = 0  # a wholly missing modality for one sample
    masks["L"][:, -3:] = 0
    with torch.no_grad():
        before = net(inputs, masks)
        changed = {m: x.clone() for m, x in inputs.items()}
        for m in MODALITIES:
            changed[m][masks[m] == 0] = torch.randn_like(changed[m][masks[m] == 0]) * 100
        after = net(changed, masks)
    torch.testing.assert_close(before.sentiment, after.sentiment)
    torch.testing.assert_close(before.edges_homo, after.edges_homo)
    torch.testing.assert_close(before.edges_hetero, after.edges_hetero)
    # and a present step does matter
    changed["A"][:, 0] += 10
    with torch.no_grad():
        moved = net(changed, masks)
    assert not torch.allclose(before.sentiment, moved.sentiment)


def test_edges_are_distributions_and_absent_teachers_teach_nothing():
    cfg = make_cfg()
    net = DMD(cfg).eval()
    inputs, masks = make_batch(cfg, batch=4)
    masks["L"][1] = 0
    with torch.no_grad():
        out = net(inputs, masks)
    for edges in (out.edges_homo, out.edges_hetero):
        assert (edges >= 0).all()
        torch.testing.assert_close(edges.sum(1), torch.ones(4))
        for x, (teacher, _) in enumerate(EDGES):
            if teacher == "L":
                assert edges[1, x] == 0
    assert EDGE_NAMES == ("V->L", "A->L", "L->V", "A->V", "L->A", "V->A")


def test_prior_says_language_teaches_most():
    for kind in ("homo", "hetero"):
        prior = dict(zip(EDGE_NAMES, edge_prior(kind).tolist()))
        assert prior["L->A"] > prior["A->L"] and prior["L->V"] > prior["V->L"]
        assert sum(prior.values()) == pytest.approx(1.0)


def _terms(net, t_out, inputs, masks, labels):
    out = net(inputs, masks)
    terms = dmd_losses(out, labels, TrainConfig()).__dict__
    kd = corrkd_losses(out, t_out, labels, None, tau=0.5)
    terms.update(kd_sample=kd.sample, kd_prototype=kd.prototype, kd_response=kd.response)
    terms.pop("classes")  # no class head here; zero by construction
    return terms


@pytest.mark.parametrize("term", [
    *(pytest.param(term, marks=pytest.mark.slow)  # the fast lane trains on the total only
      for term in ("task", "gd_homo_logit", "gd_homo_repr", "gd_homo_reg", "gd_hetero_logit", "gd_hetero_repr",
                   "gd_hetero_reg", "self_regression", "reconstruction", "margin", "orthogonality", "kd_sample",
                   "kd_prototype", "kd_response")),
    "total"])
def test_each_loss_term_is_finite_and_decreases(term):
    torch.manual_seed(1)
    # one cross-modal layer instead of the preset's two: every loss term is still there,
    # and each step costs about half (the shapes above are checked at the preset's depth)
    cfg = dataclasses.replace(make_cfg(), cross_layers=1)
    net, teacher = DMD(cfg), DMD(cfg).eval()
    inputs, masks = make_batch(cfg, batch=12, seed=2)
    masks = drop_missing(masks, 0.3, torch.Generator().manual_seed(0))
    labels = torch.linspace(-3, 3, 12)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.no_grad():  # the teacher is frozen and sees the same batch every step: one forward
        t_out = teacher(inputs, {m: torch.ones_like(v) for m, v in masks.items()})
    first = None
    for _ in range(10):  # after 8 steps every term was at most 0.73 of its start (kd_sample)
        value = _terms(net, t_out, inputs, masks, labels)[term]
        assert torch.isfinite(value)
        first = float(value.detach()) if first is None else first
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    last = float(_terms(net, t_out, inputs, masks, labels)[term].detach())
    assert last < first, f"{term}: {first} -> {last}"


def test_margin_loss_groups_rounded_classes():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    # 0.9 and 1.1 round to the same class; a separated layout costs nothing
    assert float(margin_loss(feats, torch.tensor([1.0, 1.0, -2.0, -2.0]))) == 0.0
    assert float(margin_loss(feats, torch.tensor([1.0, -2.0, 1.0, -2.0]))) > 0.0


def test_drop_missing_keeps_a_modality_and_respects_rate():
    masks = {m: torch.ones(2000, 10) for m in MODALITIES}
    none = drop_missing(masks, 0.0, torch.Generator().manual_seed(0))
    assert all(torch.equal(none[m], masks[m]) for m in MODALITIES)
    half = drop_missing(masks, 0.5, torch.Generator().manual_seed(0))
    kept = torch.stack([half[m].mean(1) for m in MODALITIES], 1)
    whole_present = (kept > 0).sum(1)
    assert (whole_present >= 1).float().mean() > 0.99  # a dropped sample keeps a subset
    share = float(torch.stack([half[m] for m in MODALITIES]).mean())
    assert 0.2 < share < 0.45


def test_runs_on_cpu_in_bfloat16_and_float32():
    cfg = make_cfg()
    net = DMD(cfg).eval()
    inputs, masks = make_batch(cfg, batch=2)
    with torch.no_grad():
        full = net(inputs, masks)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(inputs, masks)
    assert full.sentiment.dtype == torch.float32 and torch.isfinite(full.sentiment).all()
    assert torch.isfinite(half.sentiment.float()).all()
    # bfloat16 keeps about 3 significant digits: the two agree to within that
    torch.testing.assert_close(half.sentiment.float(), full.sentiment, atol=0.05, rtol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_runs_on_cuda_like_cpu():
    torch.manual_seed(0)
    cfg = make_cfg()
    net = DMD(cfg).eval()
    inputs, masks = make_batch(cfg, batch=3)
    with torch.no_grad():
        cpu = net(inputs, masks).sentiment
        gpu = net.cuda()({m: v.cuda() for m, v in inputs.items()}, {m: v.cuda() for m, v in masks.items()})
    torch.testing.assert_close(gpu.sentiment.cpu(), cpu, atol=1e-4, rtol=1e-4)
