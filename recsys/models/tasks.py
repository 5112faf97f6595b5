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
from typing import ClassVar

import torch
import torch.nn.functional as F

from recsys.errors import ConfigError
from recsys.models.full_softmax import FullSoftmaxTask, full_softmax_loss
from recsys.models.task_interface import (
    Candidates,
    RetrievalTask,
    TaskBatch,
    TaskNeeds,
    _check_temperature,
)

# the interface (task_interface.py) and the full softmax (full_softmax.py) are re-exported here
__all__ = [
    "Candidates", "TaskBatch", "TaskNeeds", "RetrievalTask", "SampledSoftmaxTask", "FullSoftmaxTask",
    "CosineContrastiveTask", "BPRTask", "full_softmax_loss", "TASKS",
]


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
