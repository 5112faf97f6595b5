"""Retrieval tasks: the loss, temperature, sampling-bias correction and accidental-hit removal.

A task never owns towers (TFRS ``tasks/retrieval.py``): the model turns ids into embeddings, a
negative sampler chooses candidates, and the task scores user embeddings against them.

Sign convention of the sampling-bias (logQ) correction, used by every task here: a candidate's
logit is *lowered* by ``log_q``, the log of its expected number of occurrences among the
candidates (``log(batch_size * p(item))`` for in-batch negatives drawn in proportion to item
frequency, ``log(num_uniform / num_items)`` for uniform negatives). Popular items show up as
negatives more often than the full softmax would weigh them, so without the correction they are
pushed down too hard; subtracting ``log_q`` (scale 1, not tuned) makes the sampled softmax an
unbiased estimate of the full one (Yi et al., RecSys 2019; mixed negatives: Yang et al., WWW 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F

from recsys.errors import ConfigError

__all__ = [
    "Candidates", "TaskBatch", "TaskNeeds", "RetrievalTask", "SampledSoftmaxTask", "FullSoftmaxTask",
    "CosineContrastiveTask", "BPRTask", "full_softmax_loss", "TASKS",
]


@dataclass
class Candidates:
    """Negative candidates shared by every row of a batch.

    ``emb`` [M, d] candidate embeddings, ``ids`` [M] their item indices (for accidental hits),
    ``log_q`` [M] log expected count of each candidate in the sample (``None``: no correction).
    """

    emb: torch.Tensor
    ids: torch.Tensor
    log_q: torch.Tensor | None = None


@dataclass(frozen=True)
class TaskNeeds:
    """What a task asks of the trainer; each task declares it as ``needs`` and the trainer reads only that.

    ``catalogue``: scores every item: batches of users, ``candidates`` is the whole catalogue and the
    positives are ``TaskBatch.rows``/``cols`` (``known`` under history hold-out). Otherwise batches of
    (user, item) pairs and ``candidates`` are the rows' positives [B, d], with ``TaskBatch.ids``.
    ``in_batch``: the other rows' positives are negatives (the trainer passes their ``log_q`` and, under
    data-parallel training, the whole global batch). ``shared_negatives``: takes shared uniform
    negatives when the trainer's ``negatives`` is ``uniform`` or ``mixed``; ``requires_shared_negatives``:
    always, whatever ``negatives`` says. ``pairwise``: one uniform negative per row, as
    ``row_negatives`` [B, 1, d], whatever ``negatives`` says. ``impressions``: takes per-row
    impression negatives (``negatives="impressions"``).
    """

    catalogue: bool = False
    in_batch: bool = False
    shared_negatives: bool = False
    requires_shared_negatives: bool = False
    pairwise: bool = False
    impressions: bool = False


@dataclass(frozen=True)
class TaskBatch:
    """Everything a task may read besides the query and candidate embeddings; a task reads what it needs.

    Row-aligned tasks: ``ids`` [B] each row's positive item (accidental hits), ``log_q`` [B] the
    positives' log expected count as in-batch negatives, ``in_batch`` whether those are negatives at
    all (``False``: uniform negatives only), ``global_batch`` the in-batch candidates when they span more
    rows than this batch (the positives of a data-parallel run's global batch), ``negatives`` shared
    sampled candidates, ``row_negatives`` [B, K, d] per-row negatives with ``row_negative_mask`` [B, K],
    ``weights`` [B] row weights of the mean. Catalogue tasks: ``rows``/``cols`` the positives (user row
    in the batch, item column) and ``known`` (rows, cols) further positives that are neither.
    """

    ids: torch.Tensor | None = None
    log_q: torch.Tensor | None = None
    in_batch: bool = True
    global_batch: Candidates | None = None
    negatives: Candidates | None = None
    row_negatives: torch.Tensor | None = None
    row_negative_mask: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    known: tuple[torch.Tensor, torch.Tensor] | None = None


class RetrievalTask(Protocol):
    """The one call of every retrieval task (TFRS ``Retrieval.call(query, candidates, ...)``).

    ``task(query, candidates, batch) -> loss``: ``query`` [B, d] user embeddings, ``candidates`` the item
    embeddings the positives are found in (row-aligned positives [B, d], or the whole catalogue [N, d]
    when ``needs.catalogue``), ``batch`` the :class:`TaskBatch` fields the task's ``needs`` ask for.
    """

    needs: TaskNeeds

    def __call__(self, query: torch.Tensor, candidates: torch.Tensor,
                 batch: TaskBatch | None = None) -> torch.Tensor: ...


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}; typical values 0.05-0.2 (cosine) or 1.0")


class SampledSoftmaxTask:
    """Softmax over the positive and sampled negatives, with logQ correction and accidental hits removed.

    Row ``r`` scores its positive against (a) the other rows' positives (in-batch negatives),
    (b) optional shared ``extra`` candidates (e.g. uniform from the catalogue: mixed negatives) and
    (c) optional per-row ``row_negatives`` [B, K, d] such as impressions shown but not clicked
    (not sampled by us, so not corrected). A candidate with the same item id as the row's positive
    is an accidental hit and is masked out (the row's own positive is kept). ``batch`` replaces the
    in-batch candidates (a) when they are more than this batch's own rows: under data-parallel
    training, the positives of the whole global batch, gathered from every rank. (a), (b), (c) and
    ``batch`` are the :class:`TaskBatch` fields ``in_batch``/``ids``/``log_q``, ``negatives``,
    ``row_negatives`` and ``global_batch``.
    """

    def __init__(self, *, temperature: float = 0.1, logq_correction: bool = True,
                 remove_accidental_hits: bool = True, in_batch: bool = True) -> None:
        _check_temperature(temperature)
        self.temperature = temperature
        self.logq_correction = logq_correction
        self.remove_accidental_hits = remove_accidental_hits
        self.in_batch = in_batch

    @property
    def needs(self) -> TaskNeeds:
        return TaskNeeds(in_batch=self.in_batch, shared_negatives=True, impressions=True)

    def logits(self, query: torch.Tensor, candidates: torch.Tensor, batch: TaskBatch | None = None) -> torch.Tensor:
        """Corrected logits [B, 1 + C]; column 0 is each row's positive (``candidates``, row-aligned)."""
        b = batch or TaskBatch()
        pos = (query * candidates).sum(-1, keepdim=True)
        blocks, ids, log_qs = [pos], [], []
        if self.in_batch and b.in_batch:
            inb = b.global_batch if b.global_batch is not None else Candidates(candidates, b.ids, b.log_q)
            blocks.append(query @ inb.emb.T)
            ids.append(inb.ids)
            log_qs.append(inb.log_q)
        if b.negatives is not None:
            blocks.append(query @ b.negatives.emb.T)
            ids.append(b.negatives.ids)
            log_qs.append(b.negatives.log_q)
        logits = torch.cat(blocks, dim=1) / self.temperature
        if len(blocks) > 1:
            neg = logits[:, 1:]
            if self.logq_correction:
                corr = [q if q is not None else torch.zeros_like(i, dtype=logits.dtype) for q, i in zip(log_qs, ids, strict=False)]
                if any(q is not None for q in log_qs):
                    neg = neg - torch.cat(corr)[None, :]
            if self.remove_accidental_hits:
                hit = b.ids[:, None] == torch.cat(ids)[None, :]
                neg = neg.masked_fill(hit, float("-inf"))
            logits = torch.cat([logits[:, :1], neg], dim=1)
        if b.row_negatives is not None:
            rn = (query[:, None, :] * b.row_negatives).sum(-1) / self.temperature
            if b.row_negative_mask is not None:
                rn = rn.masked_fill(~b.row_negative_mask, float("-inf"))
            logits = torch.cat([logits, rn], dim=1)
        return logits

    def __call__(self, query: torch.Tensor, candidates: torch.Tensor, batch: TaskBatch | None = None) -> torch.Tensor:
        """Mean (or ``batch.weights``-weighted mean) over rows of -log softmax of the positive."""
        logits = self.logits(query, candidates, batch)
        loss = torch.logsumexp(logits, dim=1) - logits[:, 0]
        weights = batch.weights if batch is not None else None
        if weights is not None:
            return (loss * weights).sum() / weights.sum().clamp_min(1e-12)
        return loss.mean()


class _FullSoftmax(torch.autograd.Function):
    """Multi-positive softmax over the whole catalogue; the gradient is formed in forward.

    Works on one [B, N] buffer in place (a few memory passes instead of autograd's dozen), which
    is what makes a full softmax over ~40k items affordable on a CPU.
    """

    @staticmethod
    def forward(ctx, user: torch.Tensor, items: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                exclude_other_positives: bool, bounded: bool, known: tuple[torch.Tensor, torch.Tensor] | None,
                weights: torch.Tensor | None = None):
        logits = user @ items.T  # user is pre-scaled by 1/temperature
        pos_logit = (user[rows] * items[cols]).sum(-1)
        shift = None
        if not bounded:
            shift = logits.max(dim=1, keepdim=True).values
            logits.sub_(shift)
        exp = logits.exp_()
        n_pos = torch.bincount(rows, minlength=user.shape[0]).to(user.dtype)
        if exclude_other_positives:
            exp[rows, cols] = 0.0
        if known is not None:  # the user's other known positives (e.g. the history) are never negatives
            exp[known[0], known[1]] = 0.0
        z = exp.sum(dim=1)
        log_z = z.log() if shift is None else z.log() + shift.squeeze(1)
        total = rows.numel() if weights is None else weights.sum()  # a weighted mean over positives
        if exclude_other_positives:
            # each positive against negatives only: softplus(logZ_neg - s_i)
            miss = torch.sigmoid(log_z[rows] - pos_logit)  # 1 - p(positive beats the negatives)
            if weights is None:
                loss = F.softplus(log_z[rows] - pos_logit).sum() / total
            else:
                loss = (weights * F.softplus(log_z[rows] - pos_logit)).sum() / total
                miss = miss * weights
            coef = torch.zeros_like(z).index_add_(0, rows, miss)
            grad = exp.mul_((coef / (z * total))[:, None])
            grad[rows, cols] = -miss / total
        else:
            if weights is None:
                loss = ((n_pos * log_z).sum() - pos_logit.sum()) / total
                step = torch.full_like(pos_logit, -1.0 / total)
            else:
                n_pos = torch.zeros_like(n_pos).index_add_(0, rows, weights)
                loss = ((n_pos * log_z).sum() - (weights * pos_logit).sum()) / total
                step = -weights / total
            grad = exp.mul_((n_pos / (z * total))[:, None])
            grad.index_put_((rows, cols), step, accumulate=True)
        ctx.save_for_backward(user, items, grad)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        user, items, grad = ctx.saved_tensors
        g_user = (grad @ items) * grad_out if ctx.needs_input_grad[0] else None
        g_items = (grad.T @ user) * grad_out if ctx.needs_input_grad[1] else None
        return g_user, g_items, None, None, None, None, None, None


def full_softmax_loss(user_emb: torch.Tensor, item_emb: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                      temperature: float, exclude_other_positives: bool = False, bounded: bool = False,
                      known: tuple[torch.Tensor, torch.Tensor] | None = None,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positives (rows[k], cols[k]) of -log softmax over all items; see :class:`FullSoftmaxTask`.

    ``known`` (rows, cols): further positives of the same users that are neither targets nor negatives.
    ``weights`` [len(rows)]: a weighted mean instead (``None``: every positive weighs 1).
    """
    return _FullSoftmax.apply(user_emb / temperature, item_emb, rows, cols, exclude_other_positives, bounded, known,
                              weights)


class FullSoftmaxTask:
    """Softmax over the *whole* catalogue for a batch of users, every training item a positive.

    No sampling, hence no sampling bias to correct (logQ is constant). With
    ``exclude_other_positives`` each positive competes with the user's non-interacted items only
    (the user's other positives are accidental hits and are removed). ``bounded`` states that
    embeddings are L2-normalised, so logits are at most 1/temperature and need no max shift.
    ``user_weight_power`` p weighs each positive by ``n_u ** -p`` (``n_u``: that user's positives in
    the batch): 0 counts every interaction once, 1 every user once (as the per-user metrics do).
    ``item_side_weight`` w adds ``w`` x the reverse softmax: each positive item picks its user among
    the batch's users (uniform in-batch negatives, so no logQ; the batch users who also hold that item
    are accidental hits and are removed), which spreads user vectors apart as the main term does items.
    ``item_prior`` [num_items]: a fixed per-item offset added to every score before the temperature
    (``softmax((u.i + prior_i) / T)``), e.g. ``b * log1p(training count)``, the same popularity prior the
    served scores get (:meth:`TwoTowerModel.with_item_prior`), so the vectors need not encode it.
    """

    needs: ClassVar[TaskNeeds] = TaskNeeds(catalogue=True)

    def __init__(self, *, temperature: float = 0.1, exclude_other_positives: bool = False,
                 bounded: bool = False, user_weight_power: float = 0.0, item_side_weight: float = 0.0,
                 item_prior: torch.Tensor | None = None) -> None:
        _check_temperature(temperature)
        if bounded and temperature < 0.02:
            raise ConfigError(f"bounded full softmax needs temperature >= 0.02 (exp overflow), got {temperature}")
        if not 0.0 <= user_weight_power <= 1.0:
            raise ConfigError(f"user_weight_power must lie in [0, 1], got {user_weight_power}")
        self.temperature = temperature
        self.exclude_other_positives = exclude_other_positives
        self.bounded = bounded
        self.user_weight_power = user_weight_power
        if item_side_weight < 0:
            raise ConfigError(f"item_side_weight must be >= 0, got {item_side_weight}")
        self.item_side_weight = item_side_weight
        self.item_prior = None
        if item_prior is not None:
            item_prior = torch.as_tensor(item_prior, dtype=torch.float32).reshape(-1)
            if not torch.isfinite(item_prior).all():
                raise ConfigError("item_prior must be finite (e.g. b * log1p(count), not log(count) of an unseen item)")
            self.item_prior = item_prior
            self._prior_bound = float(item_prior.abs().max()) if item_prior.numel() else 0.0

    def __call__(self, query: torch.Tensor, candidates: torch.Tensor, batch: TaskBatch | None = None) -> torch.Tensor:
        """Mean over the positives ``batch.rows``/``cols`` of -log softmax over ``candidates`` (the catalogue)."""
        user_emb, item_emb, rows, cols, known = query, candidates, batch.rows, batch.cols, batch.known
        weights = None
        if self.user_weight_power:
            n_pos = torch.bincount(rows, minlength=user_emb.shape[0]).to(user_emb.dtype)
            weights = n_pos.clamp_min(1.0).pow(-self.user_weight_power)[rows]
        user_in, item_in, bounded = user_emb, item_emb, self.bounded
        if self.item_prior is not None:  # one more coordinate: user 1, item its prior
            prior = self.item_prior.to(item_emb)
            if prior.numel() != item_emb.shape[0]:
                raise ConfigError(f"item_prior has {prior.numel()} offsets but the batch scores {item_emb.shape[0]} "
                                  f"items; build it from the data being fitted")
            user_in = torch.cat([user_emb, user_emb.new_ones(user_emb.shape[0], 1)], dim=1)
            item_in = torch.cat([item_emb, prior[:, None]], dim=1)
            bounded = bounded and (1.0 + self._prior_bound) / self.temperature < 50.0  # exp stays finite
        loss = full_softmax_loss(user_in, item_in, rows, cols, self.temperature,
                                 self.exclude_other_positives, bounded, known, weights)
        if self.item_side_weight:
            loss = loss + self.item_side_weight * self._item_side(user_emb, item_emb, rows, cols)
        return loss

    def _item_side(self, user_emb: torch.Tensor, item_emb: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor) -> torch.Tensor:
        """Mean over positives of -log softmax over the batch's users (other holders of the item masked)."""
        logits = item_emb[cols] @ user_emb.T / self.temperature  # [P, B]
        holds = torch.zeros(user_emb.shape[0], item_emb.shape[0], dtype=torch.bool, device=rows.device)
        holds[rows, cols] = True
        hit = holds[:, cols].T  # [P, B]: batch users who hold positive k's item
        hit[torch.arange(len(rows), device=rows.device), rows] = False  # the positive itself stays
        logits = logits.masked_fill(hit, float("-inf"))
        return (torch.logsumexp(logits, dim=1) - logits[torch.arange(len(rows), device=rows.device), rows]).mean()


class CosineContrastiveTask:
    """SimpleX's cosine contrastive loss: ``(1 - cos(u, i)) + w / |N| * sum_j relu(cos(u, j) - margin)``.

    Expects L2-normalised embeddings. The negatives are per row (``row_negatives`` [B, K, d]) or a shared
    :class:`Candidates` set (``negatives``); shared negatives equal to the row's positive are removed.
    """

    needs: ClassVar[TaskNeeds] = TaskNeeds(shared_negatives=True, requires_shared_negatives=True)

    def __init__(self, *, margin: float = 0.9, negative_weight: float = 150.0) -> None:
        if not -1.0 <= margin <= 1.0:
            raise ConfigError(f"margin must lie in [-1, 1] for cosine scores, got {margin}")
        self.margin = margin
        self.negative_weight = negative_weight

    def __call__(self, query: torch.Tensor, candidates: torch.Tensor, batch: TaskBatch | None = None) -> torch.Tensor:
        """``batch.negatives`` (shared, with ``batch.ids``) or else ``batch.row_negatives`` [B, K, d]."""
        pos_loss = 1.0 - (query * candidates).sum(-1)
        if batch.negatives is not None:
            s = query @ batch.negatives.emb.T
            keep = (batch.ids[:, None] != batch.negatives.ids[None, :]).to(s.dtype)
        else:
            s = (query[:, None, :] * batch.row_negatives).sum(-1)
            keep = torch.ones_like(s)
        neg = (F.relu(s - self.margin) * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return (pos_loss + self.negative_weight * neg).mean()


class BPRTask:
    """Bayesian personalised ranking: ``-log sigmoid(s(u, i) - s(u, j))`` with one negative per row."""

    needs: ClassVar[TaskNeeds] = TaskNeeds(pairwise=True)

    def __init__(self, *, temperature: float = 1.0) -> None:
        _check_temperature(temperature)
        self.temperature = temperature

    def __call__(self, query: torch.Tensor, candidates: torch.Tensor, batch: TaskBatch | None = None) -> torch.Tensor:
        """Mean over rows and ``batch.row_negatives`` [B, K, d] of the pairwise loss against ``candidates``."""
        pos = (query * candidates).sum(-1, keepdim=True)
        diff = (pos - (query[:, None, :] * batch.row_negatives).sum(-1)) / self.temperature
        return F.softplus(-diff).mean()


TASKS = {"full_softmax": FullSoftmaxTask, "sampled_softmax": SampledSoftmaxTask,
         "ccl": CosineContrastiveTask, "bpr": BPRTask}


def uniform_log_q(num_sampled: int, num_items: int) -> float:
    """Log expected count of one item among ``num_sampled`` uniform draws from ``num_items``."""
    return math.log(num_sampled / num_items)
