"""Item-side behaviour pooling: an item is also described by the users who interacted with it.

The mirror image of the user tower's pooled history (SimpleX's behaviour aggregation): an item's
*audience* is the set of users who interacted with it in the training data the model sees, and
its pooled user-id embeddings are blended with the item's own (id / content) vector by a learned
per-dimension gate::

    item = g * static + (1 - g) * W(pool(user_table[audience]))

``pool`` is the mean (``"mean"``) or the LightGCN-style degree-normalised sum
``sum_u e_u / sqrt(deg_u * deg_i)`` (``"degree"``). An item with no audience (cold start, an
out-of-vocabulary row) keeps its static vector unchanged.

The audience graph lives in the module as CSR buffers (``indptr`` [num_items + 1], ``indices``),
so it is saved with the weights (safetensors) and a loaded model scores exactly what it scored
when saved. Set it with :meth:`AudiencePooling.set_graph`; the buffers resize on load.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import ConfigError

__all__ = ["AudiencePooling", "AUDIENCE_MODES"]

AUDIENCE_MODES = ("none", "mean", "degree")


class AudiencePooling(nn.Module):
    """Pooled audience embeddings of items, gated with the items' static vectors.

    ``table_rows`` > 0 gives the module its own user table (``table_rows`` x ``dim``); 0 means the
    caller passes a table (e.g. the user tower's id embeddings) to :meth:`forward`.
    """

    def __init__(self, *, num_items: int, dim: int, mode: str = "mean", table_rows: int = 0,
                 gate_init: float = 0.5, learn_gate: bool = True, init_std: float = 0.1) -> None:
        super().__init__()
        if mode not in AUDIENCE_MODES[1:]:
            raise ConfigError(f"audience pooling mode must be one of {AUDIENCE_MODES[1:]}, got {mode!r}")
        self.mode = mode
        self.register_buffer("indptr", torch.zeros(num_items + 1, dtype=torch.long))
        self.register_buffer("indices", torch.zeros(0, dtype=torch.long))
        self.proj = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.proj.weight)
        self.gate = nn.Parameter(torch.full((dim,), math.log(gate_init / (1 - gate_init))), requires_grad=learn_gate)
        self.table = None
        if table_rows:
            self.table = nn.Embedding(table_rows, dim)
            nn.init.normal_(self.table.weight, std=init_std)

    @property
    def num_items(self) -> int:
        return self.indptr.numel() - 1

    def set_graph(self, positives: sp.spmatrix, num_users: int | None = None) -> None:
        """Record each item's audience from ``positives`` (users x items, nonzero = interaction).

        Items beyond ``positives``' columns (e.g. out-of-vocabulary rows) get an empty audience;
        ``num_users`` (the user table's rows) is checked against the users referenced.
        """
        positives = sp.csr_matrix(positives)
        n_users, n_items = positives.shape
        if n_items > self.num_items:
            raise ConfigError(f"audience graph has {n_items} item columns but the model has {self.num_items} "
                              f"item rows; pass the users x items matrix of the data the model was built for")
        if num_users is not None and n_users > num_users:
            raise ConfigError(f"audience graph has {n_users} user rows but the user table has {num_users}; "
                              f"build the model with num_users >= {n_users}")
        by_item = sp.csr_matrix(positives.T)
        by_item.sum_duplicates()
        by_item.sort_indices()
        indptr = np.concatenate([by_item.indptr, np.full(self.num_items - n_items, by_item.indptr[-1])])
        device = self.indptr.device
        self.indptr = torch.from_numpy(indptr.astype(np.int64)).to(device)
        self.indices = torch.from_numpy(by_item.indices.astype(np.int64)).to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # the graph's size is data, not config
        key = prefix + "indices"
        if key in state_dict:
            self.indices = torch.empty_like(state_dict[key], device=self.indices.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _bags(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat user indices, bag offsets and bag sizes of ``item_ids``' audiences."""
        n = self.num_items
        if item_ids.numel() == n and torch.equal(item_ids, torch.arange(n, device=item_ids.device)):
            return self.indices, self.indptr[:-1], self.indptr.diff()  # the whole catalogue: no copy
        starts, lens = self.indptr[item_ids], self.indptr[item_ids + 1] - self.indptr[item_ids]
        offsets = torch.cumsum(lens, 0) - lens
        within = torch.arange(int(lens.sum()), device=item_ids.device) - torch.repeat_interleave(offsets, lens)
        return self.indices[torch.repeat_interleave(starts, lens) + within], offsets, lens

    def pooled(self, item_ids: torch.Tensor, user_table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``pool(user_table[audience])`` [n, dim] (zeros for an empty audience) and the bag sizes [n]."""
        table = self.table.weight if self.table is not None else user_table
        if table is None:
            raise ConfigError("AudiencePooling has no user table: pass the user tower's id table or build it "
                              "with table_rows > 0")
        flat, offsets, lens = self._bags(item_ids)
        if self.mode == "mean":
            return F.embedding_bag(flat, table, offsets, mode="mean"), lens
        deg_user = self._user_degrees(table.shape[0]).to(table.dtype)
        deg_item = torch.repeat_interleave(lens, lens).to(table.dtype)
        w = (deg_user[flat] * deg_item).clamp_min(1.0).rsqrt()
        return F.embedding_bag(flat, table, offsets, mode="sum", per_sample_weights=w), lens

    def _user_degrees(self, n_users: int) -> torch.Tensor:
        """Each user's audience count, computed once per graph (``indices`` is replaced, never changed in
        place, by :meth:`set_graph`, loading and moving the module), not on every forward."""
        hit = self.__dict__.get("_degrees")
        if hit is None or hit[0] is not self.indices or hit[1].numel() != n_users:
            hit = self.__dict__["_degrees"] = (self.indices, torch.bincount(self.indices, minlength=n_users))
        return hit[1]

    def forward(self, item_ids: torch.Tensor, static: torch.Tensor,
                user_table: torch.Tensor | None = None) -> torch.Tensor:
        """Gated blend of ``static`` [n, dim] with the pooled audience; items without one keep ``static``."""
        pooled, lens = self.pooled(item_ids, user_table)
        g = torch.sigmoid(self.gate)
        blended = g * static + (1 - g) * self.proj(pooled)
        return torch.where((lens > 0)[:, None], blended, static)
