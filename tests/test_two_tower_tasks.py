"""Retrieval tasks: losses worked out by hand, logQ sign and scale, accidental hits, fused full softmax."""

import math

import pytest
import torch
import torch.nn.functional as F

from recsys.errors import ConfigError
from recsys.models.tasks import (
    BPRTask,
    Candidates,
    CosineContrastiveTask,
    FullSoftmaxTask,
    SampledSoftmaxTask,
    TaskBatch,
    uniform_log_q,
)


def test_sampled_softmax_by_hand():
    # two users, two items, in-batch only, temperature 1, no correction:
    # row 0 logits [1*1, 1*0] -> loss log(e^1 + e^0) - 1 = log(1 + e^-1)
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    i = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    task = SampledSoftmaxTask(temperature=1.0, logq_correction=False)
    loss = task(u, i, TaskBatch(ids=torch.tensor([0, 1])))
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_candidates_can_span_a_larger_batch():
    # data-parallel ranks pass the whole global batch as the in-batch candidates: rows 0-1 of a batch of
    # three, scored against all three positives, give those rows' losses of the one-batch computation
    torch.manual_seed(0)
    u, i = F.normalize(torch.randn(3, 4), dim=1), F.normalize(torch.randn(3, 4), dim=1)
    ids, log_q = torch.tensor([5, 7, 5]), torch.tensor([0.3, -0.2, 0.3])
    task = SampledSoftmaxTask(temperature=0.5)
    own = TaskBatch(ids=ids, log_q=log_q)
    whole = torch.logsumexp(task.logits(u, i, own), 1) - task.logits(u, i, own)[:, 0]
    part = task(u[:2], i[:2], TaskBatch(ids=ids[:2], global_batch=Candidates(i, ids, log_q), weights=torch.ones(2)))
    assert part.item() == pytest.approx(whole[:2].mean().item(), rel=1e-6)
    assert task(u[:0], i[:0], TaskBatch(ids=ids[:0], global_batch=Candidates(i, ids, log_q),
                                        weights=torch.ones(0))).item() == 0.0
    assert task(u, i, own).item() == pytest.approx(
        task(u, i, TaskBatch(ids=ids, global_batch=Candidates(i, ids, log_q))).item())


def test_logq_correction_lowers_popular_negatives_by_log_expected_count():
    torch.manual_seed(0)
    u, i = torch.randn(4, 8), torch.randn(4, 8)
    ids = torch.arange(4)
    log_q = torch.log(torch.tensor([0.5, 0.1, 0.1, 0.01]) * 4)
    plain = SampledSoftmaxTask(temperature=0.5, logq_correction=False).logits(u, i, TaskBatch(ids=ids, log_q=log_q))
    corrected = SampledSoftmaxTask(temperature=0.5, logq_correction=True).logits(u, i, TaskBatch(ids=ids, log_q=log_q))
    # column 0 is the positive: never corrected; in-batch negatives: logit - log_q, scale exactly 1
    assert torch.equal(plain[:, 0], corrected[:, 0])
    off_diag = ~torch.eye(4, dtype=torch.bool)  # the diagonal is each row's own positive again: masked
    assert torch.allclose((plain[:, 1:] - corrected[:, 1:])[off_diag], log_q.expand(4, 4)[off_diag], atol=1e-6)
    # the most popular item (q=0.5*4 > 1) is lowered, the rarest (0.04 < 1) is raised
    assert (corrected[1:, 1] < plain[1:, 1]).all() and (corrected[:3, 4] > plain[:3, 4]).all()


def test_logq_correction_makes_popular_positives_cheaper_to_miss():
    # with correction a popular item as negative weighs less, so its rows' losses drop
    u = torch.eye(3)
    i = torch.eye(3) * 0.5 + 0.2
    ids = torch.arange(3)
    log_q = torch.log(torch.tensor([3.0, 0.1, 0.1]))
    on = SampledSoftmaxTask(temperature=1.0).logits(u, i, TaskBatch(ids=ids, log_q=log_q))
    off = SampledSoftmaxTask(temperature=1.0, logq_correction=False).logits(u, i, TaskBatch(ids=ids, log_q=log_q))
    # row 1's negative item 0 (popular) went down by log 3
    assert on[1, 1].item() == pytest.approx(off[1, 1].item() - math.log(3.0), rel=1e-6)


def test_accidental_hits_masked_but_own_positive_kept():
    u, i = torch.randn(3, 4), torch.randn(3, 4)
    ids = torch.tensor([7, 7, 9])  # rows 0 and 1 share item 7
    logits = SampledSoftmaxTask(temperature=1.0, logq_correction=False).logits(u, i, TaskBatch(ids=ids))
    assert torch.isfinite(logits[:, 0]).all()
    neg = logits[:, 1:]
    assert torch.isinf(neg[0, 0]) and torch.isinf(neg[0, 1]) and torch.isfinite(neg[0, 2])
    assert torch.isinf(neg[2, 2]) and torch.isfinite(neg[2, 0])


def test_mixed_negatives_each_source_gets_its_own_correction():
    torch.manual_seed(1)
    u, i = torch.randn(2, 4), torch.randn(2, 4)
    extra = Candidates(torch.randn(3, 4), torch.tensor([10, 11, 12]), torch.full((3,), uniform_log_q(3, 100)))
    batch_q = torch.log(torch.tensor([0.2, 0.3]))
    b = TaskBatch(ids=torch.tensor([0, 1]), log_q=batch_q, negatives=extra)
    on = SampledSoftmaxTask(temperature=1.0).logits(u, i, b)
    off = SampledSoftmaxTask(temperature=1.0, logq_correction=False).logits(u, i, b)
    diff = off[:, 1:] - on[:, 1:]
    # in-batch block: row 0 vs item 1 is corrected by log 0.3, row 1 vs item 0 by log 0.2
    assert diff[0, 1].item() == pytest.approx(math.log(0.3), rel=1e-5)
    assert diff[1, 0].item() == pytest.approx(math.log(0.2), rel=1e-5)
    assert torch.allclose(diff[:, 2:], torch.full((2, 3), math.log(3 / 100)), atol=1e-6)


@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("bounded", [False, True])
def test_fused_full_softmax_matches_autograd(exclude, bounded):
    torch.manual_seed(0)
    u = F.normalize(torch.randn(5, 8), dim=1).requires_grad_()
    v = F.normalize(torch.randn(11, 8), dim=1).requires_grad_()
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 4])
    cols = torch.tensor([1, 3, 0, 5, 6, 10, 2])
    loss = FullSoftmaxTask(temperature=0.2, exclude_other_positives=exclude, bounded=bounded)(
        u, v, TaskBatch(rows=rows, cols=cols))
    loss.backward()
    gu, gv = u.grad.clone(), v.grad.clone()
    u.grad = v.grad = None
    logits = u @ v.T / 0.2
    terms = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=False):
        row = logits[r]
        if exclude:
            mask = torch.zeros(11, dtype=torch.bool)
            mask[cols[rows == r]] = True
            mask[c] = False
            row = row.masked_fill(mask, float("-inf"))
        terms.append(torch.logsumexp(row, 0) - row[c])
    ref = torch.stack(terms).mean()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(gu, u.grad, atol=1e-5) and torch.allclose(gv, v.grad, atol=1e-5)


def test_ccl_by_hand():
    # cos(u,i)=1 -> positive part 0; negatives cos 1 and 0 with margin 0.5, weight 2: 2 * (0.5 + 0)/2 = 0.5
    u = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    loss = CosineContrastiveTask(margin=0.5, negative_weight=2.0)(u, pos, TaskBatch(ids=torch.tensor([0]),
                                                                                   row_negatives=neg))
    assert loss.item() == pytest.approx(0.5)


def test_bpr_by_hand():
    u, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    assert BPRTask()(u, p, TaskBatch(row_negatives=n[:, None, :])).item() == pytest.approx(math.log(1 + math.exp(-1.0)))


def test_bad_hyperparameters_raise_config_errors():
    with pytest.raises(ConfigError, match="temperature"):
        SampledSoftmaxTask(temperature=0.0)
    with pytest.raises(ConfigError, match="margin"):
        CosineContrastiveTask(margin=2.0)
    with pytest.raises(ConfigError, match="bounded"):
        FullSoftmaxTask(temperature=0.01, bounded=True)


def test_known_positives_are_neither_targets_nor_negatives():
    torch.manual_seed(2)
    u = F.normalize(torch.randn(3, 6), dim=1)
    v = F.normalize(torch.randn(9, 6), dim=1).requires_grad_()
    rows, cols = torch.tensor([0, 1, 2]), torch.tensor([4, 5, 6])
    known = (torch.tensor([0, 0, 2]), torch.tensor([1, 2, 3]))
    loss = FullSoftmaxTask(temperature=0.5, exclude_other_positives=True)(u, v, TaskBatch(rows=rows, cols=cols,
                                                                                          known=known))
    loss.backward()
    logits = u @ v.detach().T / 0.5
    logits[known] = float("-inf")
    ref = (torch.logsumexp(logits, 1) - logits[rows, cols]).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.all(v.grad[1:4].abs().sum(1)[:2] > 0)  # item 1, 2: negatives of users 1, 2 still
    # user 0's known items 1 and 2 and user 2's item 3 get no push from those users
    g_only_user0 = torch.autograd.grad(FullSoftmaxTask(temperature=0.5, exclude_other_positives=True)(
        u[:1], v, TaskBatch(rows=rows[:1] * 0, cols=cols[:1], known=(known[0][:2], known[1][:2]))), v)[0]
    assert torch.all(g_only_user0[1:3] == 0)


@pytest.mark.parametrize("exclude", [True, False])
def test_full_softmax_user_weight_power_is_a_weighted_mean_with_matching_gradients(exclude):
    # p = 1: a user with 3 positives weighs each 1/3, so every user counts once; checked against autograd
    torch.manual_seed(0)
    u = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    it = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    rows, cols = torch.tensor([0, 0, 0, 1, 2]), torch.tensor([1, 2, 3, 0, 5])
    loss = FullSoftmaxTask(temperature=0.5, exclude_other_positives=exclude, user_weight_power=1.0)(
        u, it, TaskBatch(rows=rows, cols=cols))
    s = (u / 0.5) @ it.T
    if exclude:
        mask = torch.zeros_like(s, dtype=torch.bool)
        mask[rows, cols] = True
        per = F.softplus(torch.logsumexp(s.masked_fill(mask, float("-inf")), 1)[rows] - s[rows, cols])
    else:
        per = torch.logsumexp(s, 1)[rows] - s[rows, cols]
    w = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0, 1.0], dtype=torch.float64)
    ref = (w * per).sum() / w.sum()
    assert torch.allclose(loss, ref)
    for g, r in zip(torch.autograd.grad(loss, (u, it)), torch.autograd.grad(ref, (u, it)), strict=True):
        assert torch.allclose(g, r)
    with pytest.raises(ConfigError, match="user_weight_power"):
        FullSoftmaxTask(user_weight_power=2.0)


def test_full_softmax_item_side_term_by_hand():
    # 2 users, 3 items; user 0 holds items 0 and 1, user 1 holds item 1: for the positive (0, 1) user 1 is an
    # accidental hit (it holds item 1 too), so that term is -log 1 = 0; (0, 0) and (1, 1) are 2-way softmaxes
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    it = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    base = FullSoftmaxTask(temperature=0.5, exclude_other_positives=True)
    both = FullSoftmaxTask(temperature=0.5, exclude_other_positives=True, item_side_weight=2.0)
    t00 = -torch.log_softmax(torch.tensor([1.0, 0.0]) / 0.5, 0)[0]  # item 0 vs users (0, 1)
    want = (t00 + 0.0 + 0.0) / 3  # (1, 1): user 0 also holds item 1 -> masked -> 0
    pos = TaskBatch(rows=rows, cols=cols)
    assert torch.allclose(both(u, it, pos) - base(u, it, pos), 2.0 * want)


@pytest.mark.parametrize("exclude", [True, False])
def test_full_softmax_item_prior_is_added_to_every_score_before_the_temperature(exclude):
    torch.manual_seed(0)
    u = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1).requires_grad_()
    it = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1).requires_grad_()
    rows, cols = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 5])
    prior = torch.tensor([0.0, 0.3, 0.1, 0.0, 0.5, 0.2])
    pos = TaskBatch(rows=rows, cols=cols)
    loss = FullSoftmaxTask(temperature=0.5, exclude_other_positives=exclude, bounded=True, item_prior=prior)(
        u, it, pos)
    s = (u @ it.T + prior.double()[None, :]) / 0.5
    if exclude:
        mask = torch.zeros_like(s, dtype=torch.bool)
        mask[rows, cols] = True
        ref = F.softplus(torch.logsumexp(s.masked_fill(mask, float("-inf")), 1)[rows] - s[rows, cols]).mean()
    else:
        ref = (torch.logsumexp(s, 1)[rows] - s[rows, cols]).mean()
    assert torch.allclose(loss, ref)
    for g, r in zip(torch.autograd.grad(loss, (u, it)), torch.autograd.grad(ref, (u, it)), strict=True):
        assert torch.allclose(g, r)
    # a zero prior is no prior
    plain = FullSoftmaxTask(temperature=0.5, exclude_other_positives=exclude)
    zero = FullSoftmaxTask(temperature=0.5, exclude_other_positives=exclude, item_prior=torch.zeros(6))
    # not bit-equal: the prior rides along as a fifth coordinate (user 1, item its prior), so BLAS sums a
    # 5-term dot product in another order than the plain 4-term one: ~1e-16 relative in float64
    torch.testing.assert_close(zero(u, it, pos), plain(u, it, pos), rtol=1e-12, atol=0)
    with pytest.raises(ConfigError, match="item_prior has 5 offsets"):
        FullSoftmaxTask(item_prior=torch.zeros(5))(u, it, pos)
    with pytest.raises(ConfigError, match="finite"):
        FullSoftmaxTask(item_prior=torch.tensor([float("-inf")]))
