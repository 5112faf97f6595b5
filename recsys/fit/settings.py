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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError
from recsys.fit.parsing import apply_overrides, bounded, choice, flatten, parse, read_yaml, to_dict
from recsys.fit.two_tower_settings import QUICK_FIT, TwoTowerSettings, load_two_tower_settings
from recsys.index.registry import INDEX_CHOICES
from recsys.models.rankers.registry import RANKER_KINDS

__all__ = ["TrainConfig", "DataConfig", "SplitConfig", "FeaturesConfig", "RetrievalConfig", "IndexConfig",
           "TwoTowerSettings", "QUICK_FIT", "load_two_tower_settings",  # two_tower_settings.py, re-exported
           "RankerConfig", "RecommenderConfig", "EvaluationConfig", "TrackingConfig", "OutputConfig",
           "load_config", "config_from_dict", "flat_params", "config_to_dict", "champion_metrics", "lower_is_better",
           "DATA_SOURCES", "STAGES"]

DATA_SOURCES = ("synthetic", "files", "lightgcn", "taobao-multibehavior")
STAGES = ("all", "retrieval", "index", "ranker")


@dataclass(frozen=True)
class DataConfig:
    """Where the events come from. ``synthetic``: the seeded affiliate world (``n_events``, ``n_days``);
    ``files``: a directory ``path`` with events/items[/users/social/media/media_pools/benefits] as .parquet or .csv;
    ``lightgcn``: a LightGCN-format directory (train.txt, test.txt; e.g. retrieval/gowalla);
    ``taobao-multibehavior``: the MBCGCN Taobao split. A relative ``path`` that does not exist is looked
    up in the shared data directory (``$RECSYS_SHARED_DATA`` or ../shared/data). ``event_journal``: an
    :class:`~recsys.storage.journal.EventJournal` file (live events the service acknowledged) whose events
    join the training events (once each: by sequence number, then the contract's duplicate rule)."""

    source: str = choice("synthetic", DATA_SOURCES)
    n_events: int = bounded(300_000, low=1_000)
    n_days: int = bounded(14, low=1)
    path: str | None = None
    validate: bool = True
    event_journal: str | None = None


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
    catalogue; "catalogue" for a network that serves its own pages). ``item_to_item``: candidates the
    item-to-item channel adds to each request beside the two-tower's (0: the two-tower alone); ``friends``: those
    the friends channel adds (what the user's friends engaged with on the partner; 0: off)."""

    n_candidates: int = bounded(300, low=1)
    max_per_category: int | None = bounded(3, low=1)
    default_objective: str = choice("commission", ("clicks", "purchases", "gmv", "commission"))
    cold_start: str = choice("auto", ("auto", "features", "popular"))
    require_in_stock: bool = True
    no_partner: str = choice("auto", ("auto", "catalogue", "shared", "refuse"))
    item_to_item: int = bounded(0, low=0)
    friends: int = bounded(0, low=0)


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
