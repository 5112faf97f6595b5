"""Two-tower retrieval benchmark on any LightGCN-format directory (train.txt, test.txt).

``recsys benchmark retrieval --data-dir DIR [--config FILE] --json PATH``: carves a validation split
out of the *training* data (a share of each user's items), trains the two-tower model and picks
the epoch on validation, optionally retrains on the whole training set for that many epochs,
then reports full-ranking Recall@20 / NDCG@20 on test (training items masked, the user's
history = all training items), training time and peak memory, beside implicit-ALS fitted in
the same process. The runner knows no dataset names: everything tunable is in
:class:`RetrievalBenchConfig` (YAML keys of ``--config``; unknown keys are errors).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from recsys.errors import ConfigError

__all__ = ["RetrievalBenchConfig", "load_config", "run_retrieval_benchmark", "retrieval_command", "build_task"]


@dataclass
class RetrievalBenchConfig:
    """Everything the benchmark can vary; the defaults are the travelling configuration."""

    dim: int = 64
    task: str = "full_softmax"  # full_softmax | sampled_softmax | ccl | bpr
    temperature: float = 0.1
    exclude_other_positives: bool = True
    user_weight_power: float = 0.0  # full_softmax: each positive weighs n_u ** -p (1 = every user counts once)
    item_side_weight: float = 0.0  # full_softmax: weight of the reverse (item picks its user in the batch) term
    history: str = "mean"  # none | mean | attention | mean+attention
    use_user_id: bool = False  # the user tower is the pooled history alone (ids-only data)
    share_history_embeddings: bool = True
    gate_init: float = 0.5
    learn_gate: bool = True
    history_dropout: float = 0.0
    user_dropout: float = 0.0  # dropout on the user / item tower output before normalisation (training only)
    item_dropout: float = 0.0
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
    negatives: str = "in_batch"  # sampled tasks: in_batch | uniform | mixed
    num_negatives: int = 1024
    margin: float = 0.9  # ccl
    negative_weight: float = 150.0  # ccl
    validation_fraction: float = 0.2  # share of a validation user's training items held out
    validation_users: float = 0.2  # share of users who give validation items
    retrain_full: bool = False  # retrain on all training data for the chosen number of epochs
    seed: int = 0
    threads: int = 0  # torch threads; 0 = all cores
    baselines: bool = True  # implicit-ALS in the same process

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RetrievalBenchConfig:
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
        self.popularity_prior = tuple(float(b) for b in prior)


def load_config(path: str | Path | None) -> RetrievalBenchConfig:
    """The defaults, overridden by the keys of a YAML file when ``path`` is given."""
    if path is None:
        return RetrievalBenchConfig()
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; see experiments/retrieval/*.yaml for examples")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return RetrievalBenchConfig.from_dict(data)


def carve_validation(train: sp.csr_matrix, fraction: float, user_share: float = 1.0,
                     seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hold out ``fraction`` of the items of a random ``user_share`` of users (from training data only)."""
    from recsys.bench.baselines import holdout_split

    if not 0 < fraction < 1 or not 0 < user_share <= 1:
        raise ConfigError(f"validation_fraction must lie in (0, 1) and validation_users in (0, 1], got "
                          f"{fraction} and {user_share}")
    fit, valid = holdout_split(train, fraction, seed)
    if user_share < 1:
        import numpy as np

        keep = np.random.default_rng([seed, 1]).random(train.shape[0]) < user_share
        mask = sp.diags(keep.astype(np.float32))
        valid = (mask @ valid).tocsr()
        valid.eliminate_zeros()
        fit = (train - valid).tocsr()
        fit.eliminate_zeros()
    return fit, valid


def popularity_log_counts(matrix: sp.csr_matrix):
    """``log1p`` of each item's number of interactions in ``matrix`` (float32 [n_items])."""
    import numpy as np

    return np.log1p(np.bincount(matrix.indices, minlength=matrix.shape[1])).astype(np.float32)


def _with_prior(users, items, prior):
    """Embeddings whose inner product adds ``prior[item]`` to every score (one extra coordinate)."""
    import numpy as np

    return (np.hstack([users, np.ones((len(users), 1), users.dtype)]),
            np.hstack([items, prior[:, None].astype(items.dtype)]))


def make_validator(data: Any, validation: sp.csr_matrix, priors: tuple[float, ...] = (0.0,)):
    """``validate(model)``: recall@20 / ndcg@20 on ``validation`` (items held out of ``data.positives``).

    With several popularity-prior weights every weight is scored and the best one's figures are returned
    (the served scores), with ``popularity_prior`` (the weight) and ``recall@20_no_prior`` beside them.
    """
    from recsys.evaluation import EmbeddingScorer, evaluate_topk
    from recsys.fit.trainer import encode_all

    train = data.positives
    log_counts = popularity_log_counts(train)

    def validate(m) -> dict[str, float]:
        users, items = encode_all(m, data)
        best: dict[str, float] = {}
        for beta in priors:
            u, i = _with_prior(users, items, beta * log_counts) if beta else (users, items)
            r = evaluate_topk(EmbeddingScorer(u, i), train, validation, (20,), metrics=("recall", "ndcg"),
                              check_leakage=False)
            if tuple(priors) != (0.0,):  # any prior in play: record the weight (a one-weight grid too)
                r["popularity_prior"] = beta
                if beta == 0.0:
                    best["recall@20_no_prior"] = r["recall@20"]
            if r["recall@20"] > best.get("recall@20", -1.0):
                best.update(r)
        return best

    return validate


def apply_chosen_prior(model: Any, summary: dict, train: sp.csr_matrix, log=None) -> tuple[Any, float]:
    """The model with the popularity prior validation chose (``summary["best_metrics"]``), and its weight."""
    import torch

    prior = float(summary.get("best_metrics", {}).get("popularity_prior", 0.0))
    if prior:
        if log is not None:
            log(f"popularity prior chosen on validation: {prior} * log1p(training count)")
        model = model.with_item_prior(torch.from_numpy(prior * popularity_log_counts(train)))
    return model, prior


def build_task(cfg: RetrievalBenchConfig, train: sp.csr_matrix | None = None):
    """The task object a config names (unknown names are errors); ``train``: the data being fitted, which
    ``train_prior`` needs (its item counts)."""
    import torch

    from recsys.models.tasks import BPRTask, CosineContrastiveTask, FullSoftmaxTask, SampledSoftmaxTask

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


def _make_model(cfg: RetrievalBenchConfig, n_users: int, n_items: int):
    from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel

    return TwoTowerModel(TwoTowerConfig(num_users=n_users, num_items=n_items, dim=cfg.dim, history=cfg.history,
                                        use_user_id=cfg.use_user_id,
                                        share_history_embeddings=cfg.share_history_embeddings,
                                        item_bias=cfg.item_bias, item_audience=cfg.item_audience,
                                        share_audience_embeddings=cfg.share_audience_embeddings,
                                        history_audience=cfg.history_audience,
                                        gate_init=cfg.gate_init, learn_gate=cfg.learn_gate,
                                        user_dropout=cfg.user_dropout, item_dropout=cfg.item_dropout,
                                        normalize=cfg.normalize, init_std=cfg.init_std))


def _train(cfg: RetrievalBenchConfig, train: sp.csr_matrix, epochs: int, validation: sp.csr_matrix | None,
           log) -> tuple[Any, dict]:
    import torch

    from recsys.fit.callbacks import Callback
    from recsys.fit.trainer import RetrievalData, Trainer, TrainerSettings

    data = RetrievalData(train)
    torch.manual_seed(cfg.seed)
    model = _make_model(cfg, *train.shape)

    class Log(Callback):
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            log("  epoch " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in metrics.items()))

    settings = TrainerSettings(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               optimizer=cfg.optimizer, negatives=cfg.negatives, num_negatives=cfg.num_negatives,
                               history_dropout=cfg.history_dropout, history_holdout=cfg.history_holdout,
                               seed=cfg.seed, patience=cfg.patience)
    trainer = Trainer(model, build_task(cfg, train), settings,
                      validate=None if validation is None else make_validator(data, validation, cfg.popularity_prior),
                      callbacks=[Log()])
    return model, trainer.fit(data)


def run_retrieval_benchmark(data_dir: str | Path, config_path: str | Path | None = None,
                            json_path: str | Path | None = None) -> dict[str, Any]:
    """Train, select on validation, evaluate on test; returns (and optionally writes) the figures."""
    import torch

    from recsys.bench.baselines import evaluate_baselines
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.evaluation import EmbeddingScorer, evaluate_topk
    from recsys.fit.trainer import RetrievalData, encode_all

    cfg = load_config(config_path)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    def log(msg: str) -> None:
        print(msg, flush=True)

    ds = load_lightgcn(data_dir)
    train, test = ds.train_matrix(), ds.test_matrix()
    log(f"{data_dir}: {ds.n_users:,} users x {ds.n_items:,} items, {train.nnz:,} train / {test.nnz:,} test")
    fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    log(f"selection run: train on {fit.nnz:,}, validate on {valid.nnz:,} held out of the training data")
    model, summary = _train(cfg, fit, cfg.epochs, valid, log)
    best_epoch = summary["best_epoch"]
    if cfg.retrain_full:
        log(f"retrain on all training data for the chosen {best_epoch} epochs")
        model, _ = _train(cfg, train, best_epoch, None, log)
    model.set_item_audience(train)  # item_audience: test is scored with every training interaction
    model, prior = apply_chosen_prior(model, summary, train, log)
    train_seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    users, items = encode_all(model, RetrievalData(train))
    metrics = evaluate_topk(EmbeddingScorer(users, items), train, test, (20,), metrics=("recall", "ndcg"))
    log(f"two-tower: recall@20 {metrics['recall@20']:.4f}  ndcg@20 {metrics['ndcg@20']:.4f}  "
        f"train {train_seconds:.0f} s (cpu {cpu_seconds:.0f} s)  peak {peak_mb:.0f} MB")
    result: dict[str, Any] = {
        "data_dir": str(data_dir), "n_users": ds.n_users, "n_items": ds.n_items,
        "recall@20": round(metrics["recall@20"], 6), "ndcg@20": round(metrics["ndcg@20"], 6),
        "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
        "peak_memory_mb": round(peak_mb, 1), "best_epoch": best_epoch, "epochs_run": summary["epochs_run"],
        "popularity_prior": prior,
        "validation": summary["best_metrics"], "validation_history": summary["history"],
        "config": asdict(cfg), "config_file": str(config_path) if config_path else None,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
    }
    if cfg.baselines:
        als = evaluate_baselines(train, test, names=("implicit-als",))["implicit-als"]
        result["implicit-als"] = als
        if "recall@20" in als:
            result["ratio_vs_als"] = {k: round(result[k] / als[k], 3) for k in ("recall@20", "ndcg@20")}
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=float) + "\n")
        log(f"wrote {path}")
    return result


def retrieval_command(data_dir: Path, config: Path | None = None, json: Path | None = None) -> None:
    """Typer body for ``recsys benchmark retrieval --data-dir DIR [--config FILE] --json PATH``."""
    from recsys.errors import RecsysError

    try:
        run_retrieval_benchmark(data_dir, config, json)
    except RecsysError as e:
        import typer

        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
