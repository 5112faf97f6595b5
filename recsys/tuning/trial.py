"""One trial of ``recsys tune``: the two-tower stage of a sampled config, on validation only, pruned per epoch.

A trial trains exactly as ``recsys train`` trains the retrieval stage (:func:`recsys.fit.stages.train_retrieval`:
validation carved from the training events picks the epoch and stops early), so the best trial's model is
the model ``recsys train`` builds from the best YAML. Trials see a split whose test part is empty.
"""

from __future__ import annotations

import time
from typing import Any

from recsys.fit.callbacks import Callback, StopTraining

__all__ = ["PruneOnValidation", "FeatureCache", "without_test"]


class PruneOnValidation(Callback):
    """Reports each epoch's validation ``metric`` to the Optuna trial and prunes it when the pruner says so;
    past ``deadline`` (a ``time.monotonic()`` value) it ends training at once, keeping the best epoch so far."""

    def __init__(self, trial: Any, metric: str, deadline: float | None = None) -> None:
        self.trial, self.metric, self.deadline = trial, metric, deadline
        self.reported: list[tuple[int, float]] = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Report, then prune (``optuna.TrialPruned``) or stop at the deadline (:class:`StopTraining`)."""
        import optuna

        if self.metric in metrics:
            value = float(metrics[self.metric])
            self.trial.report(value, epoch)
            self.reported.append((epoch, value))
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"validation {self.metric} {value:.4f} at epoch {epoch} is below the "
                                         "median of earlier trials at that epoch")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise StopTraining()


class FeatureCache:
    """The feature pipeline per ``features`` section: fitted once, shared by the trials that agree on it."""

    def __init__(self, tables: Any, split: Any) -> None:
        self.tables, self.split = tables, split
        self._fitted: dict = {}

    def get(self, cfg: Any) -> Any:
        """The pipeline :func:`recsys.fit.stages.fit_features` fits for ``cfg`` (cached by ``cfg.features``)."""
        from recsys.fit.stages import fit_features

        if cfg.features not in self._fitted:
            self._fitted[cfg.features] = fit_features(cfg, self.tables, self.split)
        return self._fitted[cfg.features]


def without_test(split: Any) -> Any:
    """The split with its test events removed (the trials' view: nothing of test can leak into a choice)."""
    from recsys.fit.tables import Split

    return Split(train=split.train, test=split.test.iloc[:0], cut=split.cut)
