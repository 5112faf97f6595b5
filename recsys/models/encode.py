"""Encoding with the two towers, in one module: a catalogue table through the item tower (training, serving,
updates, benchmarks), and every user and item of the training data (validation, evaluation, the pipeline).

A catalogue table goes through the feature pipeline and the item tower in blocks of rows; ids the
model never saw get embeddings from their content features alone (see :mod:`recsys.bench.cold_start`).
torch loads only when these run, so importing the serving path stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.features.sequences import history_tensors

if TYPE_CHECKING:
    import torch

    from recsys.features.pipeline import FeaturePipeline
    from recsys.features.retrieval_data import RetrievalData
    from recsys.models.two_tower import TwoTowerModel

__all__ = ["embed_items", "encode_all", "user_inputs"]


def embed_items(model: TwoTowerModel, pipeline: FeaturePipeline, items: pd.DataFrame, *,
                batch_size: int = 65_536) -> np.ndarray:
    """Item-tower embeddings [n, dim] (float32, eval mode) of ``items`` rows, in their order.

    ``pipeline`` encodes the rows (known or brand-new ids) and the model runs on its own device;
    ``batch_size`` rows are encoded at a time, which bounds memory on a large catalogue.
    """
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            feats = pipeline.encode_items(items.iloc[start:start + batch_size])
            feats = {k: v.to(model.device) for k, v in feats.items()}
            out.append(model.item_embeddings(feats).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.dim), np.float32)


def user_inputs(model: TwoTowerModel, data: RetrievalData, users: np.ndarray, device: torch.device | str = "cpu", *,
                history_dropout: float = 0.0) -> dict[str, torch.Tensor]:
    """User-tower inputs for user indices ``users``: their features plus history (with optional dropout)."""
    import torch

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


def encode_all(model: TwoTowerModel, data: RetrievalData, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every user and every item of ``data`` (eval mode), as float32 numpy arrays."""
    import torch

    was_training = model.training
    model.eval()
    device = model.device
    with torch.no_grad():
        items = model.item_embeddings({k: v.to(device) for k, v in data.item_features.items()})
        n_users = data.positives.shape[0]
        users = [model.user_embeddings(user_inputs(model, data, np.arange(s, min(s + batch_size, n_users)), device))
                 for s in range(0, n_users, batch_size)]
    model.train(was_training)
    return torch.cat(users).float().cpu().numpy(), items.float().cpu().numpy()
