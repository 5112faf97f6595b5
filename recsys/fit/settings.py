"""The typed configuration of ``recsys train``: one frozen dataclass per stage, parsed from YAML at the edge.

>>> cfg = load_config("experiments/synthetic-demo.yaml", overrides=["retrieval.epochs=2"])  # doctest: +SKIP
>>> cfg.retrieval.epochs                                                                     # doctest: +SKIP
2

Every key has a default, so a config file names only what it changes. An unknown key, a value of
the wrong type or a value outside its allowed set raises :class:`~recsys.errors.ConfigError` naming
the key's path (``retrieval.negatives``), the file, the allowed keys or values and the closest match.
:func:`flat_params` gives the flattened form that MLflow records as run parameters.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError
from recsys.fit.parsing import apply_overrides, bounded, choice, flatten, parse, read_yaml, to_dict
from recsys.index.registry import INDEX_CHOICES
from recsys.models.rankers.registry import RANKER_KINDS

__all__ = ["TrainConfig", "DataConfig", "SplitConfig", "FeaturesConfig", "RetrievalConfig", "IndexConfig",
           "TwoTowerSettings", "QUICK_FIT", "load_two_tower_settings",
           "RankerConfig", "RecommenderConfig", "EvaluationConfig", "TrackingConfig", "OutputConfig",
           "load_config", "config_from_dict", "flat_params", "config_to_dict", "champion_metrics", "lower_is_better",
           "DATA_SOURCES", "STAGES"]

DATA_SOURCES = ("synthetic", "files", "lightgcn", "taobao-multibehavior")
STAGES = ("all", "retrieval", "index", "ranker")


@dataclass(frozen=True)
class DataConfig:
    """Where the events come from. ``synthetic``: the seeded affiliate world (``n_events``, ``n_days``);
    ``files``: a directory ``path`` with events/items[/users/social/media/media_pools] as .parquet or .csv;
    ``lightgcn``: a LightGCN-format directory (train.txt, test.txt; e.g. retrieval/gowalla);
    ``taobao-multibehavior``: the MBCGCN Taobao split. A relative ``path`` that does not exist is looked
    up in the shared data directory (``$RECSYS_SHARED_DATA`` or ../shared/data)."""

    source: str = choice("synthetic", DATA_SOURCES)
    n_events: int = bounded(300_000, low=1_000)
    n_days: int = bounded(14, low=1)
    path: str | None = None
    validate: bool = True


@dataclass(frozen=True)
class SplitConfig:
    """``time``: the last ``test_fraction`` of events (or those from ``test_start``) are test;
    ``published``: the dataset's own train/test files (lightgcn, taobao-multibehavior)."""

    method: str = choice("time", ("time", "published"))
    test_fraction: float = bounded(0.2, low=0.01, high=0.99)
    test_start: str | None = None


@dataclass(frozen=True)
class FeaturesConfig:
    """Feature pipeline of the two towers (vocabularies, price buckets, hashed titles, behaviour sequences)."""

    title_buckets: int = bounded(4096, low=1)
    price_buckets: int = bounded(10, low=1)
    history_len: int = bounded(50, low=1)


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


@dataclass(frozen=True)
class RetrievalConfig:
    """Two-tower training. ``validation_fraction`` > 0 carves the last share of the *training* events by
    time for per-epoch Recall@20, best-epoch selection and early stopping after ``patience`` epochs.
    ``bench_config``: for interaction-only data (lightgcn, taobao-multibehavior), a retrieval benchmark
    YAML (``benchmark retrieval --config``, experiments/retrieval/*.yaml) whose settings are used as they are,
    or ``default`` for that benchmark's travelling configuration, so the run reproduces its figures.
    These keys are the ``recsys train`` spelling of a :class:`TwoTowerSettings` (:meth:`two_tower`); their
    defaults are the :data:`QUICK_FIT` preset's."""

    dim: int = bounded(QUICK_FIT.dim, low=1)
    history: str = choice(QUICK_FIT.history, ("none", "mean", "attention", "mean+attention"))
    use_user_id: bool = QUICK_FIT.use_user_id
    task: str = choice(QUICK_FIT.task, ("sampled_softmax", "full_softmax", "ccl", "bpr"))
    temperature: float = bounded(QUICK_FIT.temperature, low=1e-4)
    epochs: int = bounded(QUICK_FIT.epochs, low=1)
    batch_size: int = bounded(QUICK_FIT.batch_size, low=1)
    lr: float = bounded(QUICK_FIT.lr, low=0.0)
    weight_decay: float = bounded(QUICK_FIT.weight_decay, low=0.0)
    optimizer: str = choice(QUICK_FIT.optimizer, ("adam", "adamw"))
    negatives: str = choice(QUICK_FIT.negatives, ("in_batch", "uniform", "mixed", "impressions"))
    num_negatives: int = bounded(QUICK_FIT.num_negatives, low=1)
    item_id_dropout: float = bounded(QUICK_FIT.item_id_dropout, low=0.0, high=1.0)
    history_dropout: float = bounded(QUICK_FIT.history_dropout, low=0.0, high=1.0)
    validation_fraction: float = bounded(0.0, low=0.0, high=0.5)
    patience: int = bounded(3, low=1)
    bench_config: str | None = None
    checkpoint_every: int = bounded(0, low=0)  # also checkpoint every N steps inside an epoch (0: at epoch ends)

    def two_tower(self, seed: int) -> TwoTowerSettings:
        """These keys as the one two-tower settings type (every other field: the benchmark's default)."""
        return TwoTowerSettings(dim=self.dim, task=self.task, temperature=self.temperature, history=self.history,
                                use_user_id=self.use_user_id, history_dropout=self.history_dropout,
                                epochs=self.epochs, patience=self.patience, batch_size=self.batch_size, lr=self.lr,
                                weight_decay=self.weight_decay, optimizer=self.optimizer, negatives=self.negatives,
                                num_negatives=self.num_negatives, validation_fraction=self.validation_fraction or 0.1,
                                seed=seed, baselines=False)


@dataclass(frozen=True)
class IndexConfig:
    """Item index: ``exact`` (brute force), ``faiss`` (``factory`` string, knobs tuned to ``recall_target``
    at ``tune_k`` on user queries) or ``auto`` (the preferred type that fits ``memory_budget_mb``).
    ``curve_k``: the k of the logged recall-against-latency sweep over the index's search settings."""

    kind: str = choice("faiss", INDEX_CHOICES)
    factory: str = "HNSW32"
    recall_target: float = bounded(0.95, low=0.0, high=1.0)
    tune_k: int = bounded(100, low=1)
    tune_queries: int = bounded(256, low=1)
    curve_k: int = bounded(10, low=1)
    memory_budget_mb: float = bounded(1024.0, low=1.0)


@dataclass(frozen=True)
class RankerConfig:
    """Conversion-aware ranker on impressions: ``gbdt`` (``max_iter`` trees per target), ``esmm``
    (``epochs``) or ``none`` (rank by the two-tower score). ``options`` go to the ranker's constructor."""

    kind: str = choice("gbdt", (*RANKER_KINDS, "none"))
    max_iter: int = bounded(100, low=1)
    epochs: int = bounded(2, low=1)
    num_threads: int | None = bounded(None, low=1)
    windows: tuple[str | None, ...] = ("1D", "7D", None)
    check_leakage: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecommenderConfig:
    """Serving settings stored in the bundle (see :class:`recsys.recommender.Recommender`). ``no_partner``:
    what a request without a partner gets ("auto": refused when some partner's pool is restricted, else the
    catalogue; "catalogue" for a network that serves its own pages)."""

    n_candidates: int = bounded(300, low=1)
    max_per_category: int | None = bounded(3, low=1)
    default_objective: str = choice("commission", ("clicks", "purchases", "gmv", "commission"))
    cold_start: str = choice("auto", ("auto", "features", "popular"))
    require_in_stock: bool = True
    no_partner: str = choice("auto", ("auto", "catalogue", "shared", "refuse"))


@dataclass(frozen=True)
class EvaluationConfig:
    """Full-ranking cut-offs (the Recall@K-vs-K plot), baselines beside the model, calibration bins."""

    ks: tuple[int, ...] = bounded((5, 10, 20, 50, 100), low=1)
    baselines: tuple[str, ...] = choice(("popular", "random"), ("popular", "random"))
    calibration_bins: int = bounded(10, low=2)


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow. ``tracking_uri`` None: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working
    directory. ``register``: register the pyfunc model as a new version of ``model_name`` with alias
    ``candidate``; ``alias`` (the champion) moves to it only when it is the first version or beats the
    champion's own run on ``champion_metric`` (higher is better, lower for ``*_logloss`` and ``*_ece``), or
    with ``recsys train --promote``. The comparison is recorded in the run (``promotion.*``)."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "guess-you-like"
    run_name: str | None = None
    artifact_location: str | None = None
    register: bool = True
    model_name: str = "guess-you-like"
    alias: str = "champion"
    champion_metric: str = "retrieval.recall_at_20"
    log_bundle: bool = True
    log_datasets: bool = True


@dataclass(frozen=True)
class OutputConfig:
    """Where stage outputs and the bundle go: ``<dir>/<name>/{retrieval,index,ranker,bundle}``."""

    dir: str = "runs"
    overwrite: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``recsys train`` needs, one section per stage."""

    name: str = "guess-you-like"
    seed: int = 0
    threads: int = bounded(0, low=0)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    recommender: RecommenderConfig = field(default_factory=RecommenderConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir) / self.name


def champion_metrics(cfg: TrainConfig) -> list[str]:
    """The metrics ``tracking.champion_metric`` may name: what ``recsys train`` computes for this config, spelled
    as the MLflow run logs them (``retrieval.recall_at_20``; ``retrieval.recall@20`` is accepted too)."""
    ks = sorted(set(cfg.evaluation.ks))
    return ([f"retrieval.{m}_at_{k}" for m in ("recall", "ndcg", "hit_rate") for k in ks]
            + [f"ranker.{t}_{m}" for t in ("ctr", "cvr", "ctcvr") for m in ("auc", "logloss", "ece")])


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is the better one (LogLoss, ECE)."""
    return metric.endswith(("_logloss", "_ece"))


def _check_tracking(cfg: TrainConfig, source: str | None) -> None:
    if not (cfg.tracking.enabled and cfg.tracking.register):  # nothing is registered: no champion to compare
        return
    where = f"{source}: " if source else ""
    name, known = cfg.tracking.champion_metric, champion_metrics(cfg)
    from recsys.evaluation.names import metric_name

    if metric_name(name) not in known:  # recall@20 is accepted for recall_at_20
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where}config key 'tracking.champion_metric': {name!r} is not a metric recsys train "
                          f"computes{hint}; choose one of {known} (retrieval cut-offs come from evaluation.ks)")
    if cfg.tracking.alias == "candidate":
        raise ConfigError(f"{where}config key 'tracking.alias': 'candidate' is the alias every new version gets; "
                          "name the champion's alias something else (default 'champion')")


def config_from_dict(data: dict, *, source: str | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from a nested mapping (``overrides``: ``key.path=value`` strings)."""
    cfg = parse(TrainConfig, apply_overrides(data or {}, overrides), source=source)
    _check_tracking(cfg, source)
    return cfg


def load_config(path: str | Path, *, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read and validate a YAML config file."""
    return config_from_dict(read_yaml(path), source=str(path), overrides=overrides)


def config_to_dict(cfg: TrainConfig) -> dict:
    """The full config (defaults filled in) as a plain nested dict; ``config_from_dict`` reads it back."""
    return to_dict(cfg)


def flat_params(cfg: TrainConfig) -> dict[str, str]:
    """``{"retrieval.dim": "32", ...}``: every leaf as a string, the form MLflow records as parameters."""
    return {k: ("null" if v is None else str(v)) for k, v in flatten(cfg).items()}
