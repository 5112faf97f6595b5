"""The settings of :class:`recsys.fit.trainer.Trainer`: the loop's hyperparameters and their choices."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.errors import ConfigError

__all__ = ["NEGATIVES", "OPTIMIZERS", "TrainerSettings"]

NEGATIVES = ("in_batch", "uniform", "mixed", "impressions")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclass(frozen=True)
class TrainerSettings:
    """How :class:`Trainer` fits: the loop's hyperparameters (unknown ``optimizer``/``negatives`` are errors).

    ``negatives`` (row-aligned tasks): ``in_batch`` the other rows' positives, ``uniform`` ``num_negatives``
    shared uniform draws, ``mixed`` both, ``impressions`` up to ``num_negatives`` shown-but-not-clicked
    items per row. ``monitor``: the validation metric that picks the best epoch (higher is better) and
    stops after ``patience`` epochs without a new best. ``checkpoint_every``: also checkpoint every N
    steps inside an epoch (0: at epoch ends). ``device``: ``auto`` (CUDA when there is one), ``cpu``, ...
    """

    epochs: int = 20
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    negatives: str = "in_batch"
    num_negatives: int = 1024
    history_dropout: float = 0.0
    history_holdout: float = 0.0
    seed: int = 0
    patience: int = 3
    monitor: str = "recall@20"
    checkpoint_every: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"unknown negatives {self.negatives!r}; choose one of {NEGATIVES}")
