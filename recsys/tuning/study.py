"""``recsys tune``: an Optuna study over a ``recsys train`` config, every trial a nested MLflow run.

TPE proposes each trial's values (seeded), a median pruner stops a trial whose per-epoch validation metric
falls below the median of earlier trials at that epoch, and ``timeout_s`` ends the study (no trial starts
after it; a running one stops at its best epoch so far). Trials see training events only: validation is
carved from them as ``recsys train`` carves it. After the study the best trial's model is evaluated on
test, once, and the best configuration is written as a YAML that ``recsys train -c`` takes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import MissingDependencyError, RecsysError
from recsys.tuning.spec import TuneSpec, set_key
from recsys.tuning.trial import FeatureCache, PruneOnValidation, without_test

__all__ = ["TuneResult", "run_tuning", "best_config_dict"]


@dataclass
class TuneResult:
    """What a study found: the best trial, its validation and test figures, the YAML and the runs."""

    best_params: dict
    best_value: float
    best_trial: int
    best_config_path: Path
    test_metrics: dict = field(default_factory=dict)
    trials: list[dict] = field(default_factory=list)
    parent_run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    seconds: float = 0.0

    @property
    def n_pruned(self) -> int:
        return sum(t["state"] == "PRUNED" for t in self.trials)


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise MissingDependencyError("recsys tune needs optuna: pip install 'recsys[tune]' "
                                     "(or pip install optuna)") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def best_config_dict(spec: TuneSpec, params: dict) -> dict:
    """The base config with ``params`` set and a validation share (the trials' epoch choice) kept on."""
    data = _with_validation(spec.base)
    for key, value in params.items():
        data = set_key(data, key, value)
    return data


def _with_validation(base: dict) -> dict:
    r = base.get("retrieval") or {}
    if r.get("bench_config") or float(r.get("validation_fraction") or 0) > 0:
        return base
    return set_key(base, "retrieval.validation_fraction", 0.1)  # no validation, no per-epoch pruning


class _Runs:
    """Parent and nested MLflow runs (no-ops when tracking is off)."""

    def __init__(self, tracking_cfg: Any, enabled: bool) -> None:
        from recsys.tracking.tracker import make_tracker

        self.cfg, self.enabled = tracking_cfg, enabled
        self.tracker = make_tracker(tracking_cfg, enabled=enabled)
        self.run_id = self.experiment_id = self.tracking_uri = None

    @contextlib.contextmanager
    def parent(self, name: str, tags: dict) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with self.tracker.start_run(name, tags=tags):
            self.run_id, self.experiment_id = self.tracker.run_id, self.tracker.experiment_id
            self.tracking_uri = self.tracker.tracking_uri
            yield

    @contextlib.contextmanager
    def child(self, name: str, tags: dict) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        import mlflow

        with mlflow.start_run(run_name=name, experiment_id=self.experiment_id, nested=True, tags=tags):
            yield


class _Objective:
    """Trains one sampled config (validation only) inside its nested run; keeps the best trial's model."""

    def __init__(self, spec: TuneSpec, tables: Any, split: Any, runs: _Runs, deadline: float | None,
                 log: Callable[[str], None]) -> None:
        self.spec, self.tables, self.split, self.runs, self.deadline, self.log = spec, tables, split, runs, deadline, log
        self.features = FeatureCache(tables, split)
        self.best: tuple | None = None  # (value, number, cfg, pipeline, result)
        self.records: list[dict] = []

    def __call__(self, trial: Any) -> float:
        from recsys.fit.settings import config_from_dict, flat_params
        from recsys.fit.stages import train_retrieval
        from recsys.tracking.tracker import TrackingCallback

        optuna = _optuna()
        params = {p.key: p.suggest(trial) for p in self.spec.space}
        cfg = config_from_dict(best_config_dict(self.spec, params), source=f"trial {trial.number}")
        prune = PruneOnValidation(trial, self.spec.metric, self.deadline)
        record = {"number": trial.number, "params": params, "state": "COMPLETE", "value": None}
        self.records.append(record)
        pruned = None
        with self.runs.child(f"trial-{trial.number}", {"optuna.trial": str(trial.number), "recsys.stage": "tune"}):
            self.runs.tracker.log_params({**flat_params(cfg), **{f"trial.{k}": v for k, v in params.items()}})
            t0 = time.perf_counter()
            try:
                res = train_retrieval(cfg, self.features.get(cfg), self.tables, self.split, progress=False,
                                      callbacks=[TrackingCallback(self.runs.tracker), prune])
            except optuna.TrialPruned as e:
                pruned = e
                record["state"] = "PRUNED"
            record["epochs"] = [e for e, _ in prune.reported]
            record["seconds"] = round(time.perf_counter() - t0, 2)
            if pruned is None:
                record["value"] = float(res.summary["best_metrics"].get(self.spec.metric, float("nan")))
                record["best_epoch"] = res.summary["best_epoch"]
            self.runs.tracker.set_tags({"optuna.state": record["state"]})
            self.runs.tracker.log_metrics({"trial.seconds": record["seconds"], "trial.epochs": len(prune.reported),
                                           **({"objective": record["value"]} if pruned is None else {})})
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        if pruned is not None:
            self.log(f"   trial {trial.number}: pruned at epoch {record['epochs'][-1]} ({shown})")
            raise pruned
        self.log(f"   trial {trial.number}: validation {self.spec.metric} {record['value']:.4f} "
                 f"(epoch {record['best_epoch']}; {shown})")
        if self.best is None or record["value"] > self.best[0]:
            self.best = (record["value"], trial.number, cfg, self.features.get(cfg), res)
        return record["value"]


def _study(spec: TuneSpec, seed: int):
    optuna = _optuna()
    s, p = spec.sampler, spec.pruner
    sampler = optuna.samplers.TPESampler(seed=int(s.get("seed", seed)), n_startup_trials=int(s.get("n_startup_trials", 5)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=int(p.get("n_startup_trials", 2)),
                                         n_warmup_steps=int(p.get("n_warmup_steps", 2)))
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    for point in spec.enqueue:
        study.enqueue_trial(point)
    return study


def run_tuning(spec: TuneSpec, *, trials: int = 20, timeout_s: float | None = None, tracking: bool | None = None,
               out_dir: str | Path | None = None, log: Callable[[str], None] = print) -> TuneResult:
    """Run the study (module docstring); ``tracking`` overrides the base config's ``tracking.enabled``;
    ``out_dir`` (default ``<output.dir>/<name>/tune``) receives ``best.yaml``, ``trials.json`` and the plots."""
    from recsys.fit.settings import config_from_dict
    from recsys.fit.tables import load_tables, split_tables

    if trials < 1:
        raise RecsysError(f"--trials must be at least 1, got {trials}")
    t_start = time.perf_counter()
    base = config_from_dict(_with_validation(spec.base), source=spec.source)
    out = Path(out_dir) if out_dir is not None else base.output_dir / "tune"
    tables = load_tables(base.data, seed=base.seed, progress=False)
    split = split_tables(tables, base.split)
    log(f"== data: {base.data.source}, {len(split.train):,} training events (test kept aside until the end)")
    runs = _Runs(base.tracking, base.tracking.enabled if tracking is None else tracking)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    objective = _Objective(spec, tables, without_test(split), runs, deadline, log)
    study = _study(spec, base.seed)
    with runs.parent(f"{base.name}-tune", {"recsys.stage": "tune", "recsys.config": base.name}):
        runs.tracker.log_params({"tune.trials": trials, "tune.timeout_s": timeout_s, "tune.metric": spec.metric,
                                 **{f"space.{p.key}": _describe(p) for p in spec.space}})
        log(f"== study: up to {trials} trials" + (f" within {timeout_s:.0f} s" if timeout_s else ""))
        study.optimize(objective, n_trials=trials, timeout=timeout_s)
        if objective.best is None:
            raise RecsysError(f"no trial of {len(study.trials)} completed (all pruned or stopped): raise --trials or "
                              "--timeout, or loosen the pruner (pruner.n_startup_trials)")
        value, number, cfg, pipeline, res = objective.best
        result = TuneResult(best_params=dict(study.best_trial.params), best_value=value, best_trial=number,
                            best_config_path=out / "best.yaml", trials=objective.records)
        _write_best(spec, result, out)
        result.test_metrics = _test_once(cfg, pipeline, res, split)
        log(f"== best: trial {number}, validation {spec.metric} {value:.4f}; test "
            + "  ".join(f"{k} {v:.4f}" for k, v in result.test_metrics.items() if k.endswith("@20")))
        _log_study(runs, study, result, out)
        result.parent_run_id, result.experiment_id, result.tracking_uri = runs.run_id, runs.experiment_id, runs.tracking_uri
    result.seconds = time.perf_counter() - t_start
    return result


def _describe(p: Any) -> str:
    return f"choices {list(p.choices)}" if p.kind == "categorical" else \
        f"{p.kind} [{p.low}, {p.high}]" + (" log" if p.log else "")


def _write_best(spec: TuneSpec, result: TuneResult, out: Path) -> None:
    import yaml

    from recsys.fit.settings import load_config
    from recsys.storage.atomic import write_text_atomically

    out.mkdir(parents=True, exist_ok=True)
    head = (f"# Best of a recsys tune study ({spec.source or 'tune spec'}): trial {result.best_trial}, validation "
            f"{spec.metric} {result.best_value:.4f}.\n# Train it with: recsys train -c {result.best_config_path}\n")
    write_text_atomically(result.best_config_path, head + yaml.safe_dump(best_config_dict(spec, result.best_params),
                                                                         sort_keys=False))
    load_config(result.best_config_path)  # what we hand over must load in recsys train
    write_text_atomically(out / "trials.json", json.dumps(result.trials, indent=2, default=str) + "\n")


def _test_once(cfg: Any, pipeline: Any, res: Any, split: Any) -> dict[str, float]:
    """The best trial's model on test, with the LightGCN protocol of ``recsys train``: the only read of test."""
    from recsys.fit.stages import evaluate_retrieval, test_matrix

    test, _ = test_matrix(pipeline, split, res.data.positives)
    if not test.nnz:
        return {}
    return evaluate_retrieval(cfg, res, test)["two-tower"]


def _log_study(runs: _Runs, study: Any, result: TuneResult, out: Path) -> None:
    from recsys.tuning.plots import study_plots

    t = runs.tracker
    t.log_metrics({"best.validation": result.best_value, "trials.complete": len(result.trials) - result.n_pruned,
                   "trials.pruned": result.n_pruned, "best.trial": result.best_trial})
    t.log_metrics(result.test_metrics, prefix="test.")
    t.log_params({f"best.{k}": v for k, v in result.best_params.items()})
    paths, skipped = study_plots(study, out / "plots")
    for path in paths:
        t.log_artifact(path, "plots")
    if skipped:
        t.set_tags({f"plots.skipped.{k}": v[:250] for k, v in skipped.items()})
    t.log_artifact(result.best_config_path, "tune")
    t.log_artifact(out / "trials.json", "tune")
