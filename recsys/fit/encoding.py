"""Tower inputs and embeddings: what the user tower reads for a set of users, every user and item embedded.

Shared by the training loop (:mod:`recsys.fit.trainer`), validation, the pipeline and the benchmarks.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recsys.features.retrieval_data import RetrievalData
from recsys.features.sequences import history_tensors
from recsys.models.two_tower import TwoTowerModel

__all__ = ["encode_all", "user_inputs"]


def user_inputs(model: TwoTowerModel, data: RetrievalData, users: np.ndarray, device: torch.device | str = "cpu", *,
                history_dropout: float = 0.0) -> dict[str, torch.Tensor]:
    """User-tower inputs for user indices ``users``: their features plus history (with optional dropout)."""
    users = np.asarray(users, dtype=np.int64)
    idx = torch.from_numpy(users)
    feats = {k: v[idx].to(device) for k, v in data.user_features.items()}
    if model.config.history != "none":
        hist = data.history if data.history is not None else data.positives
        drop = None
        if history_dropout > 0:
            n = int((hist.indptr[users + 1] - hist.indptr[users]).sum())
            drop = (torch.rand(n) < history_dropout).numpy()
        feats.update({k: v.to(device) for k, v in history_tensors(hist, users, drop).items()})
    return feats


@torch.no_grad()
def encode_all(model: TwoTowerModel, data: RetrievalData, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every user and every item of ``data`` (eval mode), as float32 numpy arrays."""
    was_training = model.training
    model.eval()
    device = model.device
    items = model.item_embeddings({k: v.to(device) for k, v in data.item_features.items()})
    n_users = data.positives.shape[0]
    users = [model.user_embeddings(user_inputs(model, data, np.arange(s, min(s + batch_size, n_users)), device))
             for s in range(0, n_users, batch_size)]
    model.train(was_training)
    return torch.cat(users).float().cpu().numpy(), items.float().cpu().numpy()


def _slices(csr: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and column indices of ``csr`` restricted to ``users`` (rows 0..len-1)."""
    starts, ends = csr.indptr[users], csr.indptr[users + 1]
    lens = ends - starts
    rows = np.repeat(np.arange(len(users)), lens)
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    return rows, csr.indices[pos]
