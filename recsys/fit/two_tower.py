"""The two-tower + :class:`~recsys.fit.trainer.Trainer` wiring, written once.

``recsys train`` (:mod:`recsys.fit.stages`), ``Recommender.fit`` (:mod:`recsys.fit.components`) and the
benchmarks (the retrieval and cold-start runners of the bench package) all train through
:func:`train_two_tower` with a :class:`~recsys.fit.settings.TwoTowerSettings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import scipy.sparse as sp
import torch

from recsys.errors import ConfigError
from recsys.features.retrieval_data import RetrievalData
from recsys.fit.callbacks import Callback
from recsys.fit.trainer import Trainer
from recsys.fit.trainer_settings import TrainerSettings
from recsys.fit.two_tower_settings import TwoTowerSettings
from recsys.fit.validation import make_validator, popularity_log_counts
from recsys.models.tasks import (
    BPRTask,
    CosineContrastiveTask,
    FullSoftmaxTask,
    RetrievalTask,
    SampledSoftmaxTask,
)
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel

__all__ = ["FittedTwoTower", "build_task", "two_tower_model", "trainer_settings", "train_two_tower"]

# the TwoTowerSettings fields that are TwoTowerConfig fields (the architecture)
_MODEL_FIELDS = ("dim", "history", "use_user_id", "gate_init", "learn_gate", "normalize", "init_std",
                 "share_history_embeddings", "item_bias", "item_audience", "share_audience_embeddings",
                 "history_audience", "user_dropout", "item_dropout", "item_id_dropout")


class FittedTwoTower(NamedTuple):
    """A trained model, the trainer's summary and where the run resumed (epoch, step), if it did."""

    model: TwoTowerModel
    summary: dict
    resumed_from: dict[str, int] | None


def build_task(cfg: TwoTowerSettings, train: sp.csr_matrix | None = None) -> RetrievalTask:
    """The task object a config names (unknown names are errors); ``train``: the data being fitted, which
    ``train_prior`` needs (its item counts)."""
    if cfg.train_prior and (cfg.task != "full_softmax" or train is None):
        raise ConfigError("train_prior needs task: full_softmax and the training matrix (build_task(cfg, train))")
    if cfg.task == "full_softmax":
        prior = torch.from_numpy(cfg.train_prior * popularity_log_counts(train)) if cfg.train_prior else None
        return FullSoftmaxTask(temperature=cfg.temperature, exclude_other_positives=cfg.exclude_other_positives,
                               bounded=cfg.normalize and not cfg.item_bias and cfg.temperature >= 0.02,
                               user_weight_power=cfg.user_weight_power, item_side_weight=cfg.item_side_weight,
                               item_prior=prior)
    if cfg.task == "sampled_softmax":
        return SampledSoftmaxTask(temperature=cfg.temperature)
    if cfg.task == "ccl":
        return CosineContrastiveTask(margin=cfg.margin, negative_weight=cfg.negative_weight)
    if cfg.task == "bpr":
        return BPRTask()
    raise ConfigError(f"unknown task {cfg.task!r}; choose full_softmax, sampled_softmax, ccl or bpr")


def two_tower_model(cfg: TwoTowerSettings, sizes: dict[str, Any]) -> TwoTowerModel:
    """A fresh model (seeded with ``cfg.seed``): table ``sizes`` (``num_users``, ``num_items``, or a feature
    pipeline's :meth:`tower_sizes`) and the architecture of ``cfg``."""
    torch.manual_seed(cfg.seed)
    return TwoTowerModel(TwoTowerConfig(**{**sizes, **{k: getattr(cfg, k) for k in _MODEL_FIELDS}}))


def trainer_settings(cfg: TwoTowerSettings, epochs: int | None = None) -> TrainerSettings:
    """The trainer's part of ``cfg`` (``epochs``: instead of ``cfg.epochs``, e.g. a retrain's chosen count)."""
    return TrainerSettings(epochs=cfg.epochs if epochs is None else epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           weight_decay=cfg.weight_decay, optimizer=cfg.optimizer, negatives=cfg.negatives,
                           num_negatives=cfg.num_negatives, history_dropout=cfg.history_dropout,
                           history_holdout=cfg.history_holdout, seed=cfg.seed, patience=cfg.patience,
                           checkpoint_every=cfg.checkpoint_every, device=cfg.device)


def train_two_tower(cfg: TwoTowerSettings, data: RetrievalData, *, sizes: dict[str, Any] | None = None,
                    epochs: int | None = None, validation: sp.csr_matrix | None = None,
                    callbacks: Sequence[Callback] = (), progress: bool | None = None,
                    checkpoint_dir: str | Path | None = None, resume: bool = True) -> FittedTwoTower:
    """Build the model and task ``cfg`` names and fit them on ``data``.

    ``sizes``: the model's table sizes (default: ids only, from ``data.positives``). ``validation``: items
    held out of ``data.positives`` that pick the epoch (and prior weight) and stop early; ``None``: train
    every epoch. ``checkpoint_dir``: checkpoint there and, with ``resume``, continue from what it holds.
    """
    n_users, n_items = data.positives.shape
    model = two_tower_model(cfg, sizes or {"num_users": n_users, "num_items": n_items})
    validate = None if validation is None else make_validator(data, validation, cfg.popularity_prior)
    trainer = Trainer(model, build_task(cfg, data.positives), trainer_settings(cfg, epochs), validate=validate,
                      callbacks=callbacks, progress=progress, checkpoint_dir=checkpoint_dir)
    summary = trainer.fit(data, resume=resume)
    return FittedTwoTower(model, summary, trainer.resumed_from)
