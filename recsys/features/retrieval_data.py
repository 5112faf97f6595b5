"""The two-tower's training data in index space, as the feature pipeline builds it and the trainer reads it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recsys.errors import DataValidationError

__all__ = ["RetrievalData"]


@dataclass
class RetrievalData:
    """Training data in index space.

    ``positives`` users x items (CSR): the interactions to fit. ``history`` (CSR, default
    ``positives``): each user's behaviour input, items in each row oldest to newest.
    ``impressions`` (CSR, optional): shown but not clicked, for impression negatives.
    ``user_features``/``item_features``: tensors indexed by user/item index (default: ids only).
    """

    positives: sp.csr_matrix
    history: sp.csr_matrix | None = None
    impressions: sp.csr_matrix | None = None
    user_features: dict[str, torch.Tensor] | None = None
    item_features: dict[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.positives = sp.csr_matrix(self.positives)
        if self.positives.nnz == 0:
            raise DataValidationError("RetrievalData.positives is empty: expected at least one interaction")
        n_users, n_items = self.positives.shape
        self.user_features = self.user_features or {"user_id": torch.arange(n_users)}
        self.item_features = self.item_features or {"item_id": torch.arange(n_items)}
        counts = np.bincount(self.positives.indices, minlength=n_items).astype(np.float64)
        self.item_log_freq = torch.from_numpy(np.log(np.maximum(counts, 0.5) / counts.sum())).float()
        coo = self.positives.tocoo()
        self.pair_users, self.pair_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
