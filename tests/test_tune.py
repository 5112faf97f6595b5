"""``recsys tune``: the tune file, and a 3-trial study on a tiny synthetic world (nested MLflow runs, pruning,
the best YAML in ``recsys train``, test read once and only after every trial)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recsys.errors import ConfigError
from recsys.tuning.spec import load_tune_spec, parse_duration, tune_spec_from_dict

BASE = {"name": "tiny", "seed": 0, "data": {"n_events": 4000}, "features": {"title_buckets": 64},
        "retrieval": {"epochs": 3, "dim": 8, "validation_fraction": 0.2}, "ranker": {"kind": "none"}}


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800.0), ("90s", 90.0), ("2h", 7200.0), ("1h30m", 5400.0),
                                               ("45", 45.0), (None, None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30x", "m30", "soon", ""])
def test_bad_duration_says_how_to_write_one(text):
    with pytest.raises(ConfigError, match="30m, 90s, 2h"):
        parse_duration(text)


@pytest.mark.parametrize(("space", "message"), [
    ({"retrieval.temprature": {"low": 0.1, "high": 0.5}}, "temprature"),   # a typo is named
    ({"data.n_events": {"low": 1000, "high": 2000}}, "cannot be searched"),  # the data stays put
    ({"retrieval.lr": {"low": 0.5, "high": 0.1}}, "low < high"),
    ({"retrieval.lr": {"low": 0.0, "high": 0.1, "log": True}}, "low > 0"),
    ({"retrieval.dim": {"choices": []}}, "non-empty list"),
])
def test_bad_space_is_a_config_error(space, message):
    with pytest.raises(ConfigError, match=message):
        tune_spec_from_dict({"base": BASE, "space": space})


def test_space_kinds_are_read_from_the_bounds():
    spec = tune_spec_from_dict({"base": BASE, "space": {"retrieval.epochs": {"low": 2, "high": 5},
                                                        "retrieval.lr": {"low": 1e-3, "high": 1e-1, "log": True},
                                                        "retrieval.dim": {"choices": [8, 16]}}})
    assert [p.kind for p in spec.space] == ["int", "float", "categorical"]


def _tune_file(root: Path, store: str) -> Path:
    data = {"base": {**BASE, "output": {"dir": str(root / "out")},
                     "tracking": {"experiment": "tune-test", "tracking_uri": store,
                                  "artifact_location": str(root / "art")}},
            "sampler": {"seed": 0},
            "pruner": {"n_startup_trials": 1, "n_warmup_steps": 0},
            # a learning trial first; then lr 0 (the model never moves), which the median pruner stops at epoch 1
            "enqueue": [{"retrieval.lr": 0.02}, {"retrieval.lr": 0.0}],
            "space": {"retrieval.lr": {"low": 0.0, "high": 0.05},
                      "retrieval.temperature": {"low": 0.05, "high": 0.5, "log": True}}}
    path = root / "tiny.tune.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_study_nests_trials_prunes_and_reads_test_once_at_the_end(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    mlflow = pytest.importorskip("mlflow")
    import recsys.fit.stages as stages
    from recsys.tuning.study import run_tuning
    from recsys.tuning.trial import PruneOnValidation

    events: list[str] = []
    real_test, real_train, real_epoch = stages.test_matrix, stages.train_retrieval, PruneOnValidation.on_epoch_end

    def spy_test(*a, **k):
        events.append("test")
        return real_test(*a, **k)

    def spy_train(cfg, pipeline, tables, split, **k):
        assert len(split.test) == 0  # a trial never holds test events
        return real_train(cfg, pipeline, tables, split, **k)

    def spy_epoch(self, epoch, metrics):
        events.append("epoch")
        return real_epoch(self, epoch, metrics)

    monkeypatch.setattr(stages, "test_matrix", spy_test)
    monkeypatch.setattr(stages, "train_retrieval", spy_train)
    monkeypatch.setattr(PruneOnValidation, "on_epoch_end", spy_epoch)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_tuning(load_tune_spec(_tune_file(tmp_path, store)), trials=3, log=lambda _m: None)

    assert events.count("test") == 1 and events[-1] == "test"  # once, after every trial's last epoch
    assert [t["state"] for t in result.trials][:2] == ["COMPLETE", "PRUNED"]
    client = mlflow.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("tune-test")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == result.parent_run_id][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3
    assert sorted(r.data.tags["optuna.state"] for r in children).count("PRUNED") == 1
    pruned = [r for r in children if r.data.tags["optuna.state"] == "PRUNED"][0]
    assert "objective" not in pruned.data.metrics and "retrieval.validation.recall_at_20" in pruned.data.metrics
    assert parent.data.metrics["trials.pruned"] == 1 and "test.recall_at_20" in parent.data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "plots")} >= {"plots/optimization_history.png"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "tune")} == {"tune/best.yaml",
                                                                                    "tune/trials.json"}


def test_best_yaml_trains_with_recsys_train(tmp_path):
    pytest.importorskip("optuna")
    from typer.testing import CliRunner

    from recsys.cli import app

    runner = CliRunner()
    tune = runner.invoke(app, ["tune", "-c", str(_tune_file(tmp_path, "sqlite:///unused.db")), "--trials", "2",
                               "--timeout", "5m", "--no-tracking", "--out", str(tmp_path / "study")])
    assert tune.exit_code == 0, tune.output
    best = tmp_path / "study" / "best.yaml"
    chosen = yaml.safe_load(best.read_text())["retrieval"]
    assert chosen["lr"] == 0.02  # the pruned lr-0 trial cannot be the best
    train = runner.invoke(app, ["train", "retrieval", "-c", str(best), "--no-tracking", "-q"])
    assert train.exit_code == 0, train.output
    assert "retrieval.recall_at_20" in train.output


@pytest.mark.parametrize(("args", "message"), [([], "pass a tune file"), (["--data-dir", ".", "--timeout", "soon"],
                                                                          "30m, 90s, 2h")])
def test_cli_errors_say_what_to_pass(args, message):
    from typer.testing import CliRunner

    from recsys.cli import app

    out = CliRunner().invoke(app, ["tune", *args])
    assert out.exit_code == 2 and message in out.output
