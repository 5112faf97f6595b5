"""`recsys partner insight|funnel` on the fixture bundle, and the report logged to the MLflow training run that a
registered model came from (a real SQLite MLflow store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from tests.conftest import temporary_mlflow_store
from tests.test_service_support import V1

pytest.importorskip("matplotlib")
runner = CliRunner()


def test_insight_and_funnel_write_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = runner.invoke(app, ["partner", "insight", "--model", str(V1), "--out", str(out), "--media-id", "app-0",
                            "--min-group", "5"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "insight.json").read_text())
    assert report["media_id"] == "app-0" and report["min_group"] == 5 and report["size"]["audience_users"] >= 5
    assert {"insight_profile.png", "insight_top.png", "insight_rates.png"} <= {p.name for p in out.glob("*.png")}
    assert "not logged to MLflow" in r.output  # a bundle path names no training run
    r = runner.invoke(app, ["partner", "funnel", "--model", str(V1), "--out", str(out), "--media-id", "app-0",
                            "--window", "3D", "--windows", "3", "--brand", "bolu", "--brand", "haka"])
    assert r.exit_code == 0, r.output
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["brands"] == ["bolu", "haka"] and len(funnel["counts"]) == 6 and len(funnel["flows"]) == 4
    assert (out / "funnel_counts.png").stat().st_size > 0 and (out / "funnel_flows.png").stat().st_size > 0


def test_errors_exit_2_with_the_message(tmp_path: Path) -> None:
    r = runner.invoke(app, ["partner", "insight", "--model", str(V1), "--out", str(tmp_path), "--media-id", "App-0"])
    assert r.exit_code == 2 and "did you mean 'app-0'" in r.output
    r = runner.invoke(app, ["partner", "funnel", "--model", str(V1), "--out", str(tmp_path), "--media-id", "app-0",
                            "--window", "soon"])
    assert r.exit_code == 2 and "window must be a positive duration" in r.output
    assert not (tmp_path / "insight.json").exists()


def test_carry_and_recruit_share_the_partner_app() -> None:
    r = runner.invoke(app, ["partner", "--help"])
    assert r.exit_code == 0 and all(c in r.output for c in ("insight", "funnel", "carry", "recruit"))


def test_report_logged_to_the_models_training_run(tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    from recsys.partners.report import model_run_id

    with temporary_mlflow_store(tmp_path, "partner-report"):
        with mlflow.start_run() as run:  # the "training run": it logs the bundle, a version registers it
            mlflow.log_artifacts(str(V1), "bundle")
        client = mlflow.MlflowClient()
        client.create_registered_model("partner-test")
        mv = client.create_model_version("partner-test", f"runs:/{run.info.run_id}/bundle", run_id=run.info.run_id)
        client.set_registered_model_alias("partner-test", "champion", mv.version)
        assert model_run_id("models:/partner-test@champion") == run.info.run_id
        assert model_run_id(f"models:/partner-test/{mv.version}") == run.info.run_id
        assert model_run_id(f"runs:/{run.info.run_id}/bundle") == run.info.run_id
        assert model_run_id(str(V1)) is None

        out = tmp_path / "out"
        r = runner.invoke(app, ["partner", "insight", "--model", "models:/partner-test@champion", "--out", str(out),
                                "--media-id", "app-0", "--min-group", "5"])
        assert r.exit_code == 0, r.output
        assert f"logged to MLflow run {run.info.run_id} under partner/app-0/" in r.output
        logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "partner/app-0")}
        assert {"insight.json", "insight_profile.png", "insight_top.png"} <= logged
        got = json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="partner/app-0/insight.json", dst_path=str(tmp_path / "dl")))
            .read_text())
        assert got["size"] == json.loads((out / "insight.json").read_text())["size"]


def test_report_partner_is_the_insight(tmp_path: Path) -> None:
    """`recsys report partner` (the issue's name for the insight) writes the same report as `partner insight`."""
    args = ["--model", str(V1), "--media-id", "app-0", "--min-group", "5", "--no-mlflow"]
    assert runner.invoke(app, ["report", "partner", "--out", str(tmp_path / "a"), *args]).exit_code == 0
    assert runner.invoke(app, ["partner", "insight", "--out", str(tmp_path / "b"), *args]).exit_code == 0
    a, b = (json.loads((tmp_path / d / "insight.json").read_text()) for d in ("a", "b"))
    assert a == b and a["media_id"] == "app-0"
