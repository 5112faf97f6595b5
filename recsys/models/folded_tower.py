"""The user tower evaluated in NumPy, for serving a few users at a time without torch's per-call overhead.

With mean pooling (or none) the user tower is linear up to its final normalisation::

    u = g * (E_id[user] + sum_k E_k[x_k]) + (1 - g) * W mean(T[history])

so a request costs a few row gathers, one mean and one small matrix-vector product. With its inputs, that
is about a third of what torch's forward costs one user at a time (the recommend benchmark times the two
side by side: ``tower_engines`` in experiments/recommend/recommend.json). :class:`FoldedUserTower` reads
the model's weights through NumPy views taken once (no copies: in-place updates show through; a model
given new tensors needs a new fold). It refuses (``supports`` is False) any tower it cannot evaluate
exactly: attention pooling, an audience-pooled history table or a training-mode model; a weighted history
raises. The result equals :meth:`TwoTowerModel.user_embeddings` up to float32 rounding
(``tests/test_folded_tower.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recsys.models.two_tower import TwoTowerModel

__all__ = ["FoldedUserTower"]

NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's default


def _view(param) -> np.ndarray:
    return param.detach().cpu().numpy()


class FoldedUserTower:
    """User embeddings of a :class:`~recsys.models.two_tower.TwoTowerModel` computed with NumPy.

    Call it with the tower's input arrays (the same keys as the torch inputs: ``user_id``, one code array
    per profile or context feature, ``history`` + ``history_offsets``) to get float32 ``[B, dim]``
    embeddings (``[B, dim + 1]`` with ``item_bias``), as ``model.user_embeddings`` gives them in eval mode.
    """

    def __init__(self, model: TwoTowerModel) -> None:
        why = self.unsupported(model)
        if why:
            raise ValueError(f"cannot fold this user tower: {why}; use model.user_embeddings")
        self.model = model
        tower = model.user_tower
        # NumPy views of the weights (shared memory: in-place updates show through), taken once
        self._id = _view(tower.id_embedding.weight) if tower.use_id else None
        self._categorical = [(key, _view(emb.weight)) for key, emb in tower.categorical.items()]
        self._history = None
        if tower.history != "none":
            table = model.history_embedding.weight if model.history_embedding is not None else \
                model.item_tower.id_embedding.weight
            self._history = (_view(table), _view(tower.history_proj.weight), _view(tower.gate))

    @staticmethod
    def unsupported(model: TwoTowerModel) -> str | None:
        """Why the tower cannot be folded (None when it can)."""
        tower = model.user_tower
        if tower.pool_attention:
            return "attention pooling is not linear in the history"
        if model.config.history_audience:
            return "history_audience pools a table the torch audience module computes"
        if model.training:
            return "the model is in training mode (dropout); call model.eval() first"
        if next(model.parameters()).device.type != "cpu":
            return "the model's weights are not on the CPU"
        return None

    @classmethod
    def supports(cls, model: TwoTowerModel) -> bool:
        """Whether ``model``'s user tower can be folded."""
        return cls.unsupported(model) is None

    def __call__(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Embeddings of the users whose tower inputs are ``feats`` (arrays, not tensors)."""
        model = self.model
        if "history_weights" in feats:
            raise ValueError("weighted histories are not folded; use model.user_embeddings")
        static = None if self._id is None else self._id[feats["user_id"]]
        for key, table in self._categorical:
            rows = table[feats[key]]
            static = rows if static is None else static + rows
        if self._history is None:
            if static is None:
                raise ValueError("user tower has no inputs: enable the user id, profile features or history")
            out = static
        else:
            table, proj, gate = self._history
            hist = self._mean_history(table, feats["history"], feats["history_offsets"]) @ proj.T
            if static is None:
                out = hist
            else:
                g = 1.0 / (1.0 + np.exp(-gate))
                out = g * static + (1 - g) * hist
        out = np.asarray(out, dtype=np.float32)
        if model.config.normalize:
            norm = np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
            out = out / np.maximum(norm, NORMALIZE_EPS)
        if model.config.item_bias:
            out = np.concatenate([out, np.ones((len(out), 1), np.float32)], axis=1)
        return out.astype(np.float32, copy=False)

    @staticmethod
    def _mean_history(table: np.ndarray, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """EmbeddingBag-style mean of ``table`` rows per bag (an empty bag gives zeros)."""
        flat, offsets = np.asarray(flat, np.int64), np.asarray(offsets, np.int64)
        n = len(offsets)
        if n == 1:  # the serving path: one user
            return (table[flat].mean(axis=0, keepdims=True) if len(flat)
                    else np.zeros((1, table.shape[1]), table.dtype))
        lens = np.diff(np.r_[offsets, len(flat)])
        sums = np.zeros((n, table.shape[1]), table.dtype)
        full = np.flatnonzero(lens)
        if len(full):
            sums[full] = np.add.reduceat(table[flat], offsets[full], axis=0)
        return sums / np.maximum(lens, 1)[:, None].astype(table.dtype)
