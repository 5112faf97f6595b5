"""One metric name everywhere: what ``recsys train`` prints, ``TrainResult.metrics`` and the MLflow run's metric
keys are the same strings (MLflow's alphabet: ``retrieval.recall_at_20``, never ``retrieval.recall@20``)."""

from __future__ import annotations

import re

from tests.test_tracking import SMALL


def test_console_result_and_mlflow_share_metric_names(tmp_path, monkeypatch):
    import mlflow
    from typer.testing import CliRunner

    from recsys.cli import train as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    seen = {}
    real_summary = cli._summary
    monkeypatch.setattr(cli, "_summary", lambda result: (seen.setdefault("result", result), real_summary(result)))
    cfg = tmp_path / "tiny.yaml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.write_text(f"name: tiny\ndata:\n  n_events: 8000\noutput:\n  dir: out\ntracking:\n  tracking_uri: {uri}\n"
                   f"  register: false\n")
    args = ["retrieval", "-c", str(cfg), *[x for s in SMALL for x in ("--set", s)],
            "--set", "retrieval.epochs=1", "--set", "retrieval.validation_fraction=0.1"]
    res = CliRunner().invoke(cli.train_app, args)
    assert res.exit_code == 0, res.output
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    logged = run.data.metrics

    # the final summary: "<metric key>: <value>" lines, each the run's own key and value
    printed = dict(re.findall(r"^([\w.@-]+): (-?\d+\.\d{4})$", res.output, flags=re.M))
    assert {"retrieval.recall_at_20", "retrieval.ndcg_at_20"} <= set(printed), res.output
    for key, text in printed.items():
        assert key in logged, f"the console says {key!r}, MLflow has {sorted(logged)}"
        assert text == f"{logged[key]:.4f}"
    # the result's metrics are the run's metrics under the same keys (exact: the same floats, stored as doubles)
    metrics = seen["result"].metrics
    assert metrics and not [k for k in metrics if "@" in k]
    assert set(metrics) <= set(logged), sorted(set(metrics) - set(logged))
    assert {k: logged[k] for k in metrics} == metrics
    # the per-epoch line names its validation metrics as the run's per-epoch keys do (retrieval.validation.<name>)
    (epoch_line,) = [line for line in res.output.splitlines() if line.startswith("   epoch ")]
    names = re.findall(r"(\S+) -?\d", epoch_line.removeprefix("   epoch ").split("  (epoch")[0])
    validation = [n for n in names if n not in ("loss", "seconds")]
    assert validation and all(f"retrieval.validation.{n}" in logged for n in validation), (epoch_line, sorted(logged))
