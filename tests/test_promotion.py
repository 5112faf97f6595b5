"""A worse model never becomes champion on its own: every run registers a candidate; ``@champion`` moves only
for the first version, a better one (on ``tracking.champion_metric``, read from the champion's own run), or
``--promote`` / ``run_training(promote=True)``; the comparison is recorded in the run. Real MLflow (SQLite)."""

from __future__ import annotations

import pytest

from recsys.errors import ConfigError
from recsys.fit.settings import config_from_dict
from recsys.tracking.promotion import decide, metric_value

NAME = "guess-you-like"


def _cfg(tmp_path, *overrides: str):
    """A tiny tracked world (20k events, exact index, no ranker: about a second of training per run). Untrained
    towers (``retrieval.lr=0``) score recall@20 about .17 against .36 for two epochs at the default rate."""
    data = {"name": "promo", "data": {"n_events": 20_000}, "retrieval": {"epochs": 2, "dim": 16},
            "features": {"title_buckets": 256}, "ranker": {"kind": "none"}, "index": {"kind": "exact"},
            "recommender": {"n_candidates": 100},
            "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "log_datasets": False,
                         "log_bundle": False, "artifact_location": str(tmp_path / "artifacts")},
            "output": {"dir": str(tmp_path / "out")}}
    return config_from_dict(data, overrides=overrides)


def _client(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(client) -> str:
    return str(client.get_model_version_by_alias(NAME, "champion").version)


def _train(cfg, **kw):
    from recsys.pipeline.train import run_training

    return run_training(cfg, log=None, progress=False, **kw)


def test_champion_moves_only_when_beaten_or_promoted(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from recsys.cli.train import train_app

    client = _client(tmp_path)
    first = _train(_cfg(tmp_path))
    assert first.model["promoted"] and first.model["alias_uri"] == f"models:/{NAME}@champion"
    assert _champion(client) == "1" and client.get_run(first.run_id).data.tags["promotion.reason"] == "first"

    worse = _train(_cfg(tmp_path, "retrieval.lr=0"))  # untrained towers: clearly worse
    assert not worse.model["promoted"] and worse.model["alias_uri"] == f"models:/{NAME}@candidate"
    assert _champion(client) == "1"
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "2"
    run = client.get_run(worse.run_id).data
    assert run.tags["promotion.decision"] == "kept" and run.tags["promotion.reason"] == "not_better"
    metric = "retrieval.recall_at_20"
    assert run.tags["promotion.champion_version"] == "1" and run.tags["promotion.metric"] == metric
    # the same numbers read back from the store: approx only for the float round trip through SQLite
    assert run.metrics["promotion.candidate_value"] == pytest.approx(metric_value(worse.metrics, metric))
    assert run.metrics["promotion.champion_value"] == pytest.approx(metric_value(first.metrics, metric))
    assert run.metrics["promotion.candidate_value"] < run.metrics["promotion.champion_value"] - 0.05

    monkeypatch.chdir(tmp_path)  # --promote from the command line moves it to the same worse model
    config = tmp_path / "promo.yaml"
    config.write_text("name: promo\n")
    sets = [f"--set=tracking.{k}={v}" for k, v in (("tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}"),
                                                    ("log_datasets", "false"), ("log_bundle", "false"))]
    sets += ["--set=data.n_events=20000", "--set=retrieval.epochs=2", "--set=retrieval.dim=16", "--set=retrieval.lr=0",
             "--set=features.title_buckets=256", "--set=ranker.kind=none", "--set=index.kind=exact",
             "--set=recommender.n_candidates=100", f"--set=output.dir={tmp_path / 'out'}"]
    res = CliRunner().invoke(train_app, ["-c", str(config), "--promote", "-q", *sets])
    assert res.exit_code == 0, res.output
    assert _champion(client) == "3" and "version 3 becomes champion (--promote)" in res.output

    better = _train(_cfg(tmp_path))  # the trained config beats the untrained champion on its own
    assert better.model["promoted"] and _champion(client) == "4"
    assert client.get_run(better.run_id).data.tags["promotion.reason"] == "better"

    forced = _train(_cfg(tmp_path, "retrieval.lr=0"), promote=True)  # the Python form of --promote
    assert forced.model["promoted"] and _champion(client) == "5"
    assert client.get_run(forced.run_id).data.tags["promotion.reason"] == "forced"


def _version(client, metrics: dict, tags: dict | None = None) -> str:
    """A registered version whose source run logged ``metrics`` (no model needed to compare figures)."""
    exp = client.get_experiment_by_name("t") or client.get_experiment(client.create_experiment("t"))
    run = client.create_run(exp.experiment_id, tags=tags or {})
    for k, v in metrics.items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    return str(client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id).version), \
        run.info.run_id


def test_a_champion_run_without_the_metric_is_never_beaten_silently(tmp_path):
    client = _client(tmp_path)
    v1, _ = _version(client, {"retrieval.ndcg_at_20": 0.3})  # the champion logged another metric only
    client.set_registered_model_alias(NAME, "champion", v1)
    v2, run = _version(client, {"retrieval.recall_at_20": 0.9})
    d = decide(client, NAME, "champion", "retrieval.recall_at_20", run, version=v2)
    assert not d.promote and d.reason == "champion_lacks_metric" and d.champion_value is None
    assert "has no retrieval.recall_at_20" in d.message and "--promote" in d.message
    forced = decide(client, NAME, "champion", "retrieval.recall_at_20", run, version=v2, force=True)
    assert forced.promote and forced.reason == "forced"


def test_lower_is_better_metrics_and_ties(tmp_path):
    client = _client(tmp_path)
    v1, _ = _version(client, {"ranker.ctr_logloss": 0.30, "retrieval.recall_at_20": 0.2}, {"data.hash": "a"})
    client.set_registered_model_alias(NAME, "champion", v1)
    v2, run = _version(client, {"ranker.ctr_logloss": 0.25, "retrieval.recall_at_20": 0.2}, {"data.hash": "b"})
    d = decide(client, NAME, "champion", "ranker.ctr_logloss", run, version=v2)
    assert d.promote and d.reason == "better" and d.same_data is False and "different data" in d.message
    tie = decide(client, NAME, "champion", "retrieval.recall_at_20", run, version=v2)
    assert not tie.promote and tie.reason == "not_better"  # a tie keeps the champion


def test_champion_metric_is_checked_with_the_config():
    assert config_from_dict({}).tracking.champion_metric == "retrieval.recall_at_20"
    assert config_from_dict({"tracking": {"champion_metric": "ranker.ctr_auc"}}).tracking.champion_metric
    assert config_from_dict({}, overrides=["tracking.champion_metric=retrieval.ndcg@10"])  # the '@' spelling too
    with pytest.raises(ConfigError, match="did you mean 'retrieval.recall_at_20'"):
        config_from_dict({"tracking": {"champion_metric": "retrieval.recal@20"}})
    with pytest.raises(ConfigError, match="evaluation.ks"):  # 25 is not a cut-off this config evaluates
        config_from_dict({"tracking": {"champion_metric": "retrieval.recall@25"}})
    with pytest.raises(ConfigError, match="tracking.alias"):
        config_from_dict({"tracking": {"alias": "candidate"}})


def test_a_run_that_registers_nothing_is_not_held_to_the_champion_metric():
    """Cut-offs without 20 (the default champion metric's) are fine when nothing is registered to compare."""
    small = {"evaluation": {"ks": [10]}}
    for off in ({"enabled": False}, {"register": False}):
        assert config_from_dict({**small, "tracking": off}).evaluation.ks == (10,)
    with pytest.raises(ConfigError, match="recall_at_10"):
        config_from_dict(small)
