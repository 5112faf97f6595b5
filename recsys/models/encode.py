"""The item tower's encoding of a catalogue: one function for training, serving, updates and benchmarks.

A catalogue table goes through the feature pipeline and the item tower in blocks of rows; ids the
model never saw get embeddings from their content features alone (see :mod:`recsys.bench.cold_start`).
torch loads only when this runs, so importing the serving path stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from recsys.features.pipeline import FeaturePipeline
    from recsys.models.two_tower import TwoTowerModel

__all__ = ["embed_items"]


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
