"""ESMM: pCTCVR = pCTR x pCVR, and the CVR tower learns only through the CTR and CTCVR losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys.models.rankers.esmm import ESMMConfig, ESMMNet, esmm_loss


def _batch(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, 20, (n,), generator=g), torch.randint(0, 7, (n,), generator=g)], dim=1)
    num = torch.randn(n, 5, generator=g)
    click = (torch.rand(n, generator=g) < 0.3).float()
    purchase = click * (torch.rand(n, generator=g) < 0.4).float()
    return cat, num, click, purchase


def _net(seed: int = 0) -> ESMMNet:
    torch.manual_seed(seed)
    return ESMMNet(ESMMConfig(vocab_sizes=(20, 7), n_numeric=5, dim=4, hidden=(16, 8)))


def _grads(net: ESMMNet, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    net.zero_grad()
    loss.backward()
    return {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for k, p in net.named_parameters()}


def test_pctcvr_is_the_product_of_pctr_and_pcvr():
    net = _net()
    cat, num, _, _ = _batch()
    pctr, pcvr, pctcvr = ESMMNet.probabilities(*net(cat, num))
    assert torch.equal(pctcvr, pctr * pcvr)
    assert ((pctcvr <= pctr) & (pctcvr <= pcvr)).all()


def test_loss_is_bce_ctr_plus_bce_ctcvr_on_impressions():
    net = _net()
    cat, num, click, purchase = _batch()
    lc, lv = net(cat, num)
    pctr, _, pctcvr = ESMMNet.probabilities(lc, lv)
    # by hand: L = BCE(pCTR, click) + BCE(pCTR * pCVR, purchase), both averaged over all impressions
    expected = F.binary_cross_entropy(pctr, click) + F.binary_cross_entropy(pctcvr, purchase)
    assert esmm_loss(lc, lv, click, purchase).item() == pytest.approx(expected.item(), rel=1e-5)


def test_cvr_tower_is_trained_only_through_the_ctcvr_loss():
    net = _net()
    cat, num, click, purchase = _batch()
    total = _grads(net, esmm_loss(*net(cat, num), click, purchase))
    lc, lv = net(cat, num)
    pctr, pcvr, pctcvr = ESMMNet.probabilities(lc, lv)
    ctr_only = _grads(net, F.binary_cross_entropy(pctr, click))
    lc, lv = net(cat, num)
    pctr, pcvr, pctcvr = ESMMNet.probabilities(lc, lv)
    ctcvr_only = _grads(net, F.binary_cross_entropy(pctcvr, purchase))
    cvr_params = [k for k in total if k.startswith("cvr_tower")]
    assert cvr_params
    for k in cvr_params:
        assert torch.count_nonzero(ctr_only[k]) == 0  # the CTR loss does not reach the CVR tower
        torch.testing.assert_close(total[k], ctcvr_only[k], rtol=1e-4, atol=1e-7)
        assert torch.count_nonzero(total[k]) > 0
    for k in total:  # and the whole gradient is the sum of the two losses' gradients
        torch.testing.assert_close(total[k], ctr_only[k] + ctcvr_only[k], rtol=1e-4, atol=1e-7)
    # a naive CVR loss on clicked rows would change the CVR tower's gradient: it is not part of the loss
    lc, lv = net(cat, num)
    clicked = click > 0
    naive = _grads(net, F.binary_cross_entropy_with_logits(lv[clicked], purchase[clicked]))
    assert any(torch.count_nonzero(naive[k]) > 0 for k in cvr_params)


def test_cvr_tower_learns_from_unclicked_impressions_too():
    """Entire-space training: impressions without a click still send gradient to the CVR tower."""
    net = _net()
    cat, num, click, purchase = _batch()
    grads = _grads(net, esmm_loss(*net(cat, num), torch.zeros_like(click), torch.zeros_like(purchase)))
    assert any(torch.count_nonzero(grads[k]) > 0 for k in grads if k.startswith("cvr_tower"))


def test_escm2_ips_term_adds_a_propensity_weighted_cvr_loss():
    net = _net()
    cat, num, click, purchase = _batch()
    lc, lv = net(cat, num)
    base = esmm_loss(lc, lv, click, purchase)
    with_ips = esmm_loss(lc, lv, click, purchase, ips_weight=0.5, propensity_floor=0.05)
    propensity = torch.sigmoid(lc).detach().clamp_min(0.05)
    ips = (click * F.binary_cross_entropy_with_logits(lv, purchase, reduction="none") / propensity).mean()
    assert with_ips.item() == pytest.approx((base + 0.5 * ips).item(), rel=1e-5)
    # the propensity is detached: the IPS term alone sends no gradient to the CTR tower
    g = _grads(net, esmm_loss(*net(cat, num), click, purchase, ips_weight=1.0)
               - esmm_loss(*net(cat, num), click, purchase))
    assert all(torch.count_nonzero(g[k]) == 0 for k in g if k.startswith("ctr_tower"))
    assert any(torch.count_nonzero(g[k]) > 0 for k in g if k.startswith("cvr_tower"))


def test_loss_stays_finite_for_extreme_logits():
    lc = torch.tensor([-40.0, 40.0, 0.0], requires_grad=True)
    lv = torch.tensor([-40.0, 40.0, -30.0], requires_grad=True)
    loss = esmm_loss(lc, lv, torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]))
    loss.backward()
    assert np.isfinite(loss.item()) and torch.isfinite(lc.grad).all() and torch.isfinite(lv.grad).all()
