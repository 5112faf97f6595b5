"""Trainer hooks (the MLflow adapter plugs in here); the checkpoints that make training resumable live in
:mod:`recsys.fit.checkpoint` (re-exported here: ``save_checkpoint``, ``load_checkpoint``).
"""

from __future__ import annotations

from typing import Any

from recsys.fit.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

__all__ = ["Callback", "StopTraining", "save_checkpoint", "load_checkpoint", "latest_checkpoint"]


class Callback:
    """Hook points of :class:`recsys.fit.trainer.Trainer`; override the ones you need."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch with its training loss, validation metrics and timing."""

    def on_train_end(self, summary: dict[str, Any]) -> None:
        """Called once with the best epoch, its metrics and the total training time."""


class StopTraining(Exception):
    """Raise from a callback to stop training at once (the last checkpoint stays resumable)."""
