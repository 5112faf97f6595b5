"""The interface every retrieval task shares: its one call, what it asks of the trainer, what a batch holds.

The tasks themselves live in :mod:`recsys.models.tasks` (sampled, cosine-contrastive, BPR) and
:mod:`recsys.models.full_softmax`; all of these names are importable from :mod:`recsys.models.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from recsys.errors import ConfigError

__all__ = ["Candidates", "TaskBatch", "TaskNeeds", "RetrievalTask"]


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
