"""Tracking on: the run holds params, per-epoch and final metrics, plots, datasets, the bundle, the code version and
a registered model with its alias. Tracking off: nothing is recorded and no store is created.

One small tracked demo run (:func:`tracked_demo`, 20k events) is made once per test process in a temporary
store and shared with tests/test_pyfunc.py and tests/test_demo.py.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import shutil
import tempfile
from pathlib import Path

import pytest

from recsys.errors import ArtifactError
from recsys.fit.settings import TrackingConfig, config_from_dict

SMALL = ["retrieval.epochs=2", "retrieval.dim=16", "features.title_buckets=256", "ranker.max_iter=10",
         "ranker.num_threads=1", "ranker.check_leakage=false", "index.tune_queries=64", "recommender.n_candidates=100"]


@functools.cache
def tracked_demo() -> tuple[dict, str, Path]:
    """``run_demo`` on a small world, tracked into a temporary SQLite store: (result, printed text, folder)."""
    import torch

    root = Path(tempfile.mkdtemp(prefix="recsys-tracking-test-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = io.StringIO()
    try:
        from recsys.demo import run_demo

        with contextlib.redirect_stdout(out):
            result = run_demo(n_events=20_000, seed=1, tracking_uri=f"sqlite:///{root}/mlflow.db",
                              output_dir=root / "runs",
                              overrides=[*SMALL, f"tracking.artifact_location={root / 'mlartifacts'}"])
    finally:
        torch.set_num_threads(threads)
    return result, out.getvalue(), root


def small_config(**sections):
    data = {"name": "tiny", "data": {"n_events": 8_000}, "tracking": {"enabled": True}, **sections}
    return config_from_dict(data, overrides=SMALL)


def test_tracking_on_records_the_run():
    import mlflow

    result, _, root = tracked_demo()
    client = mlflow.MlflowClient(tracking_uri=result["tracking_uri"])
    run = client.get_run(result["run_id"])
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["retrieval.dim"] == "16" and params["ranker.kind"] == "gbdt" and params["stage"] == "all"
    assert params["tracking.model_name"] == "guess-you-like"
    for key in ("retrieval.recall_at_20", "retrieval.ndcg_at_20", "baseline.popular.recall_at_20",
                "ranker.ctr_auc", "ranker.ctr_ece", "index.recall_at_100", "data.rows.events", "seconds_total"):
        assert key in metrics, key
    assert metrics["data.rows.events"] == result["metrics"]["data.rows.events"] > 10_000
    losses = client.get_metric_history(run.info.run_id, "retrieval.train_loss")
    assert [m.step for m in losses] == [1, 2] and losses[-1].value < losses[0].value
    assert len(client.get_metric_history(run.info.run_id, "retrieval.recall_at_20")) == 1  # test, not per epoch
    assert tags["recsys.version"] and tags.get("data.hash", "").startswith("sha256:")
    assert len(tags.get("mlflow.source.git.commit", "")) == 40 or "mlflow.source.git.commit" not in tags
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "bundle", "config.yaml", "evaluation.json"} <= arts
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"loss_curve.png", "recall_at_k.png", "calibration_ctr.png", "ann_recall_latency.png"}
    assert "manifest.json" in {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "bundle")}
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    train = inputs["synthetic-demo-train-events"]
    dtags = {t.key: t.value for t in train.tags}
    assert dtags["data_hash"] == tags["data.hash"] and int(dtags["rows"]) == metrics["data.rows.train_events"]
    assert dtags["mlflow.data.context"] == "training" and "synthetic-demo-test-events" in inputs
    digests = {d.dataset.digest for d in inputs.values()}  # each table its own digest, none the run's hash
    assert len(digests) == len(inputs) == 3 and tags["data.hash"].split(":")[1][:32] not in digests
    assert (root / "mlartifacts").is_dir()


def test_registered_model_has_the_alias():
    import mlflow

    result, _, _ = tracked_demo()
    client = mlflow.MlflowClient(tracking_uri=result["tracking_uri"], registry_uri=result["tracking_uri"])
    version = client.get_model_version_by_alias("guess-you-like", "champion")
    assert str(version.version) == result["model"]["version"] and version.run_id == result["run_id"]
    assert result["model"]["alias_uri"] == "models:/guess-you-like@champion"
    assert client.get_model_version_by_alias("guess-you-like", "candidate").version == version.version
    assert client.get_run(result["run_id"]).data.tags["promotion.reason"] == "first"  # nothing to compare with


def test_tracking_off_records_nothing(tmp_path, monkeypatch):
    from recsys.pipeline.train import run_training

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = small_config(output={"dir": str(tmp_path / "out")})
    result = run_training(cfg, stage="ranker", tracking=False, log=None)
    assert result.run_id is None and result.model is None and result.tracking_uri is None
    assert result.metrics["ranker.ctr_auc"] > 0.5  # the work was done ...
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()  # ... and nothing tracked
    assert (tmp_path / "out" / "tiny" / "ranker" / "ranker" / "ranker.json").is_file()
    off = config_from_dict({"tracking": {"enabled": False}})
    from recsys.tracking.tracker import Tracker, make_tracker

    assert type(make_tracker(off.tracking)) is Tracker and make_tracker(off.tracking, enabled=True).enabled


def test_default_store_is_sqlite_in_the_working_directory(tmp_path, monkeypatch):
    from recsys.tracking.tracker import MlflowTracker, resolve_tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrackingConfig(experiment="t", artifact_location=str(tmp_path / "art"))
    assert resolve_tracking_uri(cfg) == f"sqlite:///{tmp_path / 'mlflow.db'}"  # absolute: one file per directory
    tracker = MlflowTracker(cfg)
    with tracker.start_run("probe"):
        tracker.log_metrics({"recall@20": 0.5, "skip": "text", "nan": float("nan")}, step=1)
    assert (tmp_path / "mlflow.db").is_file()
    import mlflow

    run = mlflow.MlflowClient("sqlite:///mlflow.db").get_run(tracker.run_id)
    assert run.data.metrics == {"recall_at_20": 0.5}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/team.db")
    assert resolve_tracking_uri(cfg) == f"sqlite:///{tmp_path}/team.db"
    assert resolve_tracking_uri(TrackingConfig(tracking_uri="http://mlflow.example:5000")) == "http://mlflow.example:5000"


def test_trainer_callback_logs_each_epoch():
    from recsys.tracking.tracker import Tracker, TrackingCallback

    class Recorder(Tracker):
        def __init__(self):
            self.calls = []

        def log_metrics(self, metrics, step=None, prefix=""):
            self.calls.append(({prefix + k: v for k, v in metrics.items()}, step))

    rec = Recorder()
    cb = TrackingCallback(rec)
    cb.on_epoch_end(1, {"epoch": 1, "loss": 2.0, "recall@20": 0.1})
    cb.on_train_end({"best_epoch": 1, "epochs_run": 1, "train_seconds": 3.0, "best_metrics": {"recall@20": 0.1}})
    assert rec.calls[0] == ({"retrieval.train_loss": 2.0, "retrieval.validation.recall@20": 0.1}, 1)
    end = rec.calls[1][0]
    assert end["retrieval.best_validation.recall@20"] == 0.1 and end["retrieval.best_epoch"] == 1


def test_index_stage_needs_the_retrieval_stage(tmp_path):
    from recsys.pipeline.train import run_training

    cfg = small_config(output={"dir": str(tmp_path)})
    with pytest.raises(ArtifactError, match="recsys train retrieval"):
        run_training(cfg, stage="index", tracking=False, log=None)


def test_stages_run_alone_from_the_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from recsys.cli.train import train_app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("name: tiny\ndata:\n  n_events: 8000\noutput:\n  dir: out\n")
    runner = CliRunner()
    args = ["-c", str(cfg), "--no-tracking", *[x for s in SMALL for x in ("--set", s)], "--set", "retrieval.epochs=1"]
    for stage in ("retrieval", "index", "ranker"):
        res = runner.invoke(train_app, [stage, *args])
        assert res.exit_code == 0, res.output
        assert f"done ({stage})" in res.output and "tracking off: nothing recorded" in res.output
    out = tmp_path / "out" / "tiny"
    assert (out / "retrieval" / "model").is_dir() and (out / "index" / "manifest.json").is_file()
    assert (out / "ranker" / "ranker" / "ranker.json").is_file() and (out / "plots" / "ann_recall_latency.png").is_file()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_loading_a_model_creates_no_store_in_the_working_directory(tmp_path):
    """``recsys.load("models:/...")`` from another folder: with no store configured it says so and writes nothing
    (MLflow's default would create ./mlflow.db to report the model missing); with one it loads and writes nothing."""
    import os
    import subprocess
    import sys

    result, _, _ = tracked_demo()
    script = ("import recsys\nfrom recsys.errors import ArtifactError\ntry:\n"
              "    print(recsys.load('models:/guess-you-like@champion').info['items'])\n"
              "except ArtifactError as e:\n    print('ArtifactError', e)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    for store in (None, result["tracking_uri"]):
        here = tmp_path / ("none" if store is None else "set")
        here.mkdir()
        proc = subprocess.run([sys.executable, "-c", script], cwd=here, capture_output=True, text=True, timeout=300,
                              env=env | ({"MLFLOW_TRACKING_URI": store} if store else {}))
        assert proc.returncode == 0, proc.stderr[-2000:]
        if store is None:
            assert "ArtifactError" in proc.stdout and "no MLflow store at" in proc.stdout, proc.stdout
        else:
            assert int(proc.stdout.split()[-1]) > 0, proc.stdout
        assert list(here.iterdir()) == [], list(here.iterdir())
