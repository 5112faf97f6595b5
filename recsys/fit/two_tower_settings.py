"""The one settings type of the two-tower retrieval model: its model, task and trainer in one frozen dataclass.

:class:`TwoTowerSettings` drives ``recsys train`` (through :class:`~recsys.fit.settings.RetrievalConfig`),
``Recommender.fit`` (the :data:`QUICK_FIT` preset) and the retrieval benchmark (:func:`load_two_tower_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

__all__ = ["TwoTowerSettings", "QUICK_FIT", "load_two_tower_settings"]


@dataclass(frozen=True)
class TwoTowerSettings:
    """The two-tower's model, task and trainer: the one settings type of ``recsys train``, ``Recommender.fit``
    (:data:`QUICK_FIT`) and the retrieval benchmark (``benchmark retrieval --config``: its YAML keys, unknown
    keys are errors). The defaults are the benchmark's travelling configuration."""

    dim: int = 64
    task: str = "full_softmax"  # full_softmax | sampled_softmax | ccl | bpr
    temperature: float = 0.1
    exclude_other_positives: bool = True
    user_weight_power: float = 0.0  # full_softmax: each positive weighs n_u ** -p (1 = every user counts once)
    item_side_weight: float = 0.0  # full_softmax: weight of the reverse (item picks its user in the batch) term
    history: str = "mean"  # none | mean | attention | mean+attention
    use_user_id: bool = False  # False: the user tower is the pooled history alone (ids-only data)
    share_history_embeddings: bool = True
    gate_init: float = 0.5
    learn_gate: bool = True
    history_dropout: float = 0.0
    user_dropout: float = 0.0  # dropout on the user / item tower output before normalisation (training only)
    item_dropout: float = 0.0
    item_id_dropout: float = 0.0  # share of item ids replaced by the OOV id in training (content must stand alone)
    history_holdout: float = 0.0  # full_softmax: share of history hidden and predicted each step
    normalize: bool = True
    item_bias: bool = False  # per-item score offset (one extra coordinate in the index)
    # item-side behaviour pooling: none | mean | degree (the item's audience of users, gated in; see
    # recsys.models.audience); the audience is the training data the model sees (fit split, then all)
    item_audience: str = "none"
    share_audience_embeddings: bool = True  # pool the user-id table (needs use_user_id) or a table of its own
    history_audience: bool = False  # the user's history pools audience-blended item vectors (a second hop)
    # candidate weights beta of a fixed popularity prior beta * log1p(training count) added to every
    # score; chosen on validation together with the epoch ((0.0,) = off)
    popularity_prior: tuple[float, ...] = (0.0,)
    # full_softmax: weight b of the same prior b * log1p(count of the data being fitted) in the training
    # logits too, so the vectors need not encode popularity (0 = off); the served weight is still chosen
    # from popularity_prior on validation
    train_prior: float = 0.0
    init_std: float = 0.1
    epochs: int = 30
    patience: int = 3
    batch_size: int = 512
    lr: float = 0.03
    weight_decay: float = 0.0
    optimizer: str = "adam"
    negatives: str = "in_batch"  # sampled tasks: in_batch | uniform | mixed | impressions
    num_negatives: int = 1024
    margin: float = 0.9  # ccl
    negative_weight: float = 150.0  # ccl
    validation_fraction: float = 0.2  # share of a validation user's training items held out
    validation_users: float = 0.2  # share of users who give validation items
    retrain_full: bool = False  # retrain on all training data for the chosen number of epochs
    seed: int = 0
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0: at epoch ends)
    device: str = "auto"  # auto (CUDA when there is one) | cpu | cuda
    threads: int = 0  # benchmark: torch threads; 0 = all cores
    baselines: bool = True  # benchmark: implicit-ALS in the same process

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TwoTowerSettings:
        """Settings from a mapping of field names (a ``--config`` YAML); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown retrieval benchmark config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def __post_init__(self) -> None:
        prior = self.popularity_prior
        if isinstance(prior, (int, float)):
            prior = (prior,)
        if not prior or not all(isinstance(b, (int, float)) for b in prior):
            raise ConfigError(f"popularity_prior must be a non-empty list of weights (e.g. [0.0, 0.02, 0.04]), "
                              f"got {self.popularity_prior!r}")
        object.__setattr__(self, "popularity_prior", tuple(float(b) for b in prior))


# The quick two-tower: Recommender.fit's (TrainSettings overrides dim, epochs, batch_size, lr, temperature,
# item_id_dropout and seed; num_negatives is capped at the catalogue's size) and the defaults of recsys train's
# retrieval section
QUICK_FIT = TwoTowerSettings(dim=32, task="sampled_softmax", temperature=0.1, use_user_id=True, item_id_dropout=0.1,
                             epochs=5, batch_size=512, lr=5e-3, negatives="mixed", num_negatives=256, device="cpu",
                             baselines=False)


def load_two_tower_settings(path: str | Path | None) -> TwoTowerSettings:
    """The defaults, overridden by the keys of a YAML file when ``path`` is given."""
    if path is None:
        return TwoTowerSettings()
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; see experiments/retrieval/*.yaml for examples")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return TwoTowerSettings.from_dict(data)
