"""Fitting the two-tower channel for the retrieval pipeline: embeddings for validation and for test.

The fused pipeline chooses its channel weights on a validation split carved from the *training* data, so it
needs every channel twice: fitted on the fit part (scores for the validation users) and fitted for serving
(scores on test). :func:`fit_two_tower_embeddings` does both in one selection run, exactly as
``recsys benchmark retrieval`` trains the two-tower alone (the same carve, epoch and popularity prior chosen
on validation, ``retrain_full`` honoured), and returns plain arrays. Training takes minutes, so the result can
be kept in a cache directory (safetensors + JSON, no pickle) keyed by the data, the settings and the seed.
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.fit.two_tower_settings import TwoTowerSettings

__all__ = ["TwoTowerEmbeddings", "fit_two_tower_embeddings", "cache_key"]


@dataclass
class TwoTowerEmbeddings:
    """User and item vectors of the selection model (history = fit split) and of the served model (history =
    all training data); a score is the inner product (the chosen popularity prior is one extra coordinate)."""

    valid_users: np.ndarray
    valid_items: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write ``embeddings.safetensors`` and ``meta.json`` into the directory ``path``."""
        from safetensors.numpy import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                  for k in ("valid_users", "valid_items", "test_users", "test_items")}
        save_file(arrays, str(out / "embeddings.safetensors.tmp"))
        (out / "embeddings.safetensors.tmp").replace(out / "embeddings.safetensors")
        (out / "meta.json").write_text(json.dumps(self.meta, indent=2, default=float) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> TwoTowerEmbeddings:
        """Read what :meth:`save` wrote."""
        from safetensors.numpy import load_file

        arrays = load_file(str(Path(path) / "embeddings.safetensors"))
        meta = json.loads((Path(path) / "meta.json").read_text())
        return cls(meta=meta, **arrays)


def cache_key(cfg: TwoTowerSettings, train: sp.csr_matrix, held_for_fusion: float = 0.0) -> str:
    """A name for the cache entry: seed, a digest of the settings, of the validation users held apart and of the
    training matrix."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("threads", "baselines")}  # no effect on the fit
    if held_for_fusion:
        settings["held_for_fusion"] = float(held_for_fusion)
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(np.asarray(train.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(train.indptr, np.int64).tobytes())
    h.update(np.ascontiguousarray(train.indices, np.int64).tobytes())
    return f"seed{cfg.seed}-{h.hexdigest()[:16]}"


def _encode(model: Any, positives: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    from recsys.features.retrieval_data import RetrievalData
    from recsys.models.encode import encode_all

    users, items = encode_all(model, RetrievalData(positives))
    return np.asarray(users, np.float32), np.asarray(items, np.float32)


def train_on_ids(cfg: TwoTowerSettings, train: sp.csr_matrix, epochs: int, validation: sp.csr_matrix | None,
                 log: Callable[[str], None]) -> tuple[Any, dict]:
    """One run of :func:`~recsys.fit.two_tower.train_two_tower` on ids only, logging each epoch."""
    from recsys.features.retrieval_data import RetrievalData
    from recsys.fit.callbacks import Callback
    from recsys.fit.two_tower import train_two_tower

    class Log(Callback):
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            log("  epoch " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in metrics.items()))

    fitted = train_two_tower(cfg, RetrievalData(train), epochs=epochs, validation=validation, callbacks=[Log()])
    return fitted.model, fitted.summary


def fit_two_tower_embeddings(cfg: TwoTowerSettings, train: sp.csr_matrix, *,
                             log: Callable[[str], None] = print,
                             cache_dir: str | Path | None = None, held_for_fusion: float = 0.0) -> TwoTowerEmbeddings:
    """Train the two-tower as ``recsys benchmark retrieval`` does and return both sets of embeddings.

    ``meta`` holds ``train_seconds`` / ``train_cpu_seconds`` (the training, as measured when it ran),
    ``peak_memory_mb``, ``best_epoch``, ``popularity_prior`` and the validation figures. With ``cache_dir``
    an entry for the same settings, seed and training data is read instead of training again
    (``meta["from_cache"]`` says so). ``held_for_fusion``: the share of the validation users whose held-out items
    the two-tower neither stops nor picks its prior on (:func:`recsys.fit.validation.split_validation_users`, the
    same draw the fused pipeline chooses its weights on).
    """
    from recsys.fit.validation import apply_chosen_prior, carve_validation, split_validation_users

    entry = Path(cache_dir) / cache_key(cfg, train, held_for_fusion) if cache_dir is not None else None
    if entry is not None and (entry / "meta.json").exists():
        log(f"two-tower seed {cfg.seed}: read from the cache {entry}")
        out = TwoTowerEmbeddings.load(entry)
        out.meta["from_cache"] = True
        return out
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
    valid, _ = split_validation_users(valid, held_for_fusion, cfg.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    model, summary = train_on_ids(cfg, fit, cfg.epochs, valid, log)
    model.set_item_audience(fit)
    selection, prior = apply_chosen_prior(model, summary, fit)
    valid_users, valid_items = _encode(selection, fit)
    if cfg.retrain_full:
        log(f"retrain on all training data for the chosen {summary['best_epoch']} epochs")
        model, _ = train_on_ids(cfg, train, summary["best_epoch"], None, log)
    model.set_item_audience(train)
    served, prior = apply_chosen_prior(model, summary, train)
    test_users, test_items = _encode(served, train)
    meta = {"train_seconds": round(time.perf_counter() - t0, 1),
            "train_cpu_seconds": round(time.process_time() - c0, 1),
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"], "popularity_prior": prior,
            "validation": summary["best_metrics"], "seed": cfg.seed, "config": asdict(cfg), "from_cache": False,
            "held_for_fusion": float(held_for_fusion)}
    out = TwoTowerEmbeddings(valid_users, valid_items, test_users, test_items, meta)
    if entry is not None:
        out.save(entry)
        log(f"two-tower seed {cfg.seed}: cached in {entry}")
    return out
