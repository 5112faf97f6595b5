"""User and item towers: features in, one embedding per row out, in a shared space.

Inputs are dicts of integer tensors produced by :mod:`recsys.features.pipeline` (or, for
id-only data such as the public LightGCN splits, built directly from indices):

items
    ``item_id`` [n]; one [n] tensor per categorical feature (category, brand, shop,
    price_bucket, ...); optional ``title_tokens`` [n, T] of hashed token ids (0 = padding).
users
    ``user_id`` [B]; one [B] tensor per profile or context feature (e.g. ``media_id``);
    optional behaviour history as ``history`` (flat item indices) + ``history_offsets`` [B]
    (start of each user's slice, EmbeddingBag layout, items oldest to newest).

Every input is optional except what the config turns on, so either side works with ids alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ItemTower", "UserTower", "last_n_padded"]


def _embedding(n: int, dim: int, std: float) -> nn.Embedding:
    emb = nn.Embedding(n, dim)
    nn.init.normal_(emb.weight, std=std)
    return emb


class ItemTower(nn.Module):
    """Item id embedding plus content features (categoricals, hashed title bag of words), summed.

    ``id_dropout`` replaces the id by the out-of-vocabulary row during training, so the content
    part learns to stand alone: that is what gives a brand-new item a useful embedding.
    """

    def __init__(self, *, num_items: int, dim: int, use_id: bool = True, categorical: dict[str, int] | None = None,
                 title_buckets: int = 0, id_dropout: float = 0.0, oov_index: int | None = None,
                 init_std: float = 0.1) -> None:
        super().__init__()
        self.use_id = use_id
        self.id_dropout = id_dropout
        self.oov_index = oov_index
        self.id_embedding = _embedding(num_items, dim, init_std)
        self.categorical = nn.ModuleDict({k: _embedding(n, dim, init_std) for k, n in (categorical or {}).items()})
        self.title = nn.EmbeddingBag(title_buckets, dim, mode="mean", padding_idx=0) if title_buckets else None
        if self.title is not None:
            nn.init.normal_(self.title.weight, std=init_std)
        self.has_content = bool(self.categorical) or self.title is not None
        self.project = nn.Linear(dim, dim) if self.has_content else None

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        out = None
        if self.use_id:
            ids = feats["item_id"]
            if self.training and self.id_dropout > 0 and self.oov_index is not None:
                drop = torch.rand(ids.shape, device=ids.device) < self.id_dropout
                ids = ids.masked_fill(drop, self.oov_index)
            out = self.id_embedding(ids)
        if self.has_content:
            content = sum(emb(feats[k]) for k, emb in self.categorical.items())
            if self.title is not None:
                content = content + self.title(feats["title_tokens"])
            content = self.project(content)
            out = content if out is None else out + content
        if out is None:
            raise ValueError("item tower has neither ids nor content features enabled")
        return out


def last_n_padded(flat: torch.Tensor, offsets: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``n`` entries of each EmbeddingBag-style slice as [B, n] indices and a validity mask."""
    ends = torch.cat([offsets[1:], offsets.new_tensor([flat.numel()])])
    pos = ends[:, None] - n + torch.arange(n, device=flat.device)[None, :]
    mask = pos >= offsets[:, None]
    padded = flat[pos.clamp_min(0).clamp_max(max(flat.numel() - 1, 0))] if flat.numel() else torch.zeros_like(pos)
    return padded.masked_fill(~mask, 0), mask


class UserTower(nn.Module):
    """User id and profile/context embeddings, blended with the pooled behaviour history.

    ``u = g * static + (1 - g) * W(pool(history))`` with a learned per-dimension gate ``g``
    (SimpleX's behaviour aggregation), where ``static`` sums the id, profile and context
    embeddings and ``pool`` is the mean and/or an attention pooling over the last N items (query:
    the static part). History items are embedded with the item tower's id table (shared weights).
    """

    def __init__(self, *, num_users: int, dim: int, use_id: bool = True, categorical: dict[str, int] | None = None,
                 history: str = "none", history_len: int = 50, gate_init: float = 0.5, learn_gate: bool = True,
                 init_std: float = 0.1) -> None:
        super().__init__()
        self.use_id = use_id
        self.history = history
        self.history_len = history_len
        self.id_embedding = _embedding(num_users, dim, init_std) if use_id else None
        self.categorical = nn.ModuleDict({k: _embedding(n, dim, init_std) for k, n in (categorical or {}).items()})
        self.pool_mean = history in ("mean", "mean+attention")
        self.pool_attention = history in ("attention", "mean+attention")
        if self.history != "none":
            self.history_proj = nn.Linear(dim * (self.pool_mean + self.pool_attention), dim, bias=False)
            nn.init.eye_(self.history_proj.weight[:, :dim]) if self.pool_mean else None
            gate_logit = math.log(gate_init / (1 - gate_init))
            self.gate = nn.Parameter(torch.full((dim,), gate_logit), requires_grad=learn_gate)
        if self.pool_attention:
            self.attn_key = nn.Linear(dim, dim, bias=False)

    def static(self, feats: dict[str, torch.Tensor]) -> torch.Tensor | None:
        out = self.id_embedding(feats["user_id"]) if self.use_id else None
        for k, emb in self.categorical.items():
            out = emb(feats[k]) if out is None else out + emb(feats[k])
        return out

    def pooled_history(self, feats: dict[str, torch.Tensor], item_table: torch.Tensor,
                       query: torch.Tensor | None) -> torch.Tensor:
        flat, offsets = feats["history"], feats["history_offsets"]
        weights = feats.get("history_weights")
        parts = []
        if self.pool_mean:
            parts.append(F.embedding_bag(flat, item_table, offsets, mode="sum" if weights is not None else "mean",
                                         per_sample_weights=weights))
        if self.pool_attention:
            idx, mask = last_n_padded(flat, offsets, self.history_len)
            keys = item_table[idx]  # [B, n, d]
            q = query if query is not None else keys.new_zeros(keys.shape[0], keys.shape[2])
            scores = (self.attn_key(keys) * q[:, None, :]).sum(-1) / math.sqrt(keys.shape[-1])
            scores = scores.masked_fill(~mask, float("-inf"))
            alpha = torch.softmax(scores, dim=1).nan_to_num(0.0)  # users with no history: all zeros
            parts.append((alpha[:, :, None] * keys).sum(1))
        return self.history_proj(torch.cat(parts, dim=1))

    def forward(self, feats: dict[str, torch.Tensor], item_table: torch.Tensor) -> torch.Tensor:
        static = self.static(feats)
        if self.history == "none":
            if static is None:
                raise ValueError("user tower has no inputs: enable the user id, profile features or history")
            return static
        hist = self.pooled_history(feats, item_table, static)
        if static is None:
            return hist
        g = torch.sigmoid(self.gate)
        return g * static + (1 - g) * hist
