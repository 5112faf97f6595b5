"""Batch scoring on Spark (real local[2] session, real Parquet): the rows equal the local job's, row for row.

One SparkSession for the module; the first job pays for Python workers importing torch and loading the bundle.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install -e '.[spark]'")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (17) on PATH; none found", allow_module_level=True)

from recsys.batch.rows import FEED_FIELDS  # noqa: E402

BUNDLE = Path(__file__).parent / "fixtures" / "bundles" / "v1"
SCORED_AT = pd.Timestamp("2026-12-01 03:00:00")
PANDAS_WARNING = "PySpark does not yet fully support pandas"
KEYS = ["media_id", "user_id", "rank"]


def _compat_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if PANDAS_WARNING in str(w.message)]


@pytest.fixture(scope="module")
def spark_session():
    """The module's local[2] session, and the PySpark/pandas compatibility warnings its start emitted."""
    from recsys.batch.spark import local_session

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spark = local_session("local[2]", progress=False)
    yield spark, _compat_warnings(caught)
    spark.stop()


@pytest.fixture
def spark(spark_session):
    return spark_session[0]


def _local_rows(tmp_path: Path, bundle: Path = BUNDLE, **kwargs) -> pd.DataFrame:
    from recsys.batch.job import score

    score(bundle, tmp_path / "local", scored_at=SCORED_AT, progress=False, **kwargs)
    return pd.read_parquet(tmp_path / "local")


def _flat(rows: pd.DataFrame, nested: bool) -> pd.DataFrame:
    """Rows in one order (nested: the feeds exploded into one row per rank first)."""
    if nested:
        rows = rows.explode("feed", ignore_index=True)
        feed = pd.DataFrame(rows.pop("feed").tolist(), columns=list(FEED_FIELDS))
        rows = pd.concat([rows, feed], axis=1)
    return rows.sort_values(KEYS, ignore_index=True)


def test_spark_rows_equal_the_local_jobs_row_for_row(spark, spark_session, tmp_path):
    from recsys.batch.spark import score_spark_job

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = score_spark_job(BUNDLE, tmp_path / "spark", k=5, chunk_size=8, spark=spark, scored_at=SCORED_AT)
    got = pd.read_parquet(tmp_path / "spark")
    want = _local_rows(tmp_path, k=5, chunk_size=8)
    assert len(want) > 300 and want["media_id"].nunique() == 8   # every partner's audience, 5 items each
    # exact: the same code and bundle score the same users; chunks differ in make-up (8 users here, Arrow
    # batches there), which must not change a feed
    pd.testing.assert_frame_equal(_flat(got, False), _flat(want, False), check_exact=True)
    assert spark.sparkContext.master == "local[2]" and manifest["rows"] == len(want)
    assert manifest["users"] == want.groupby("media_id")["user_id"].nunique().sum()
    assert json.loads((tmp_path / "spark" / "_manifest.json").read_text())["rows"] == len(want)
    assert (tmp_path / "spark" / "_SUCCESS").exists()            # Spark's own Parquet writer committed it
    # the pandas/PySpark pair the spark extra installs prints no compatibility warning on this path
    assert _compat_warnings(caught) == [] and spark_session[1] == []


def test_nested_layout_equals_the_local_jobs(spark, tmp_path):
    from recsys.batch.spark import score_spark_job

    users = [39, 7, 12, 10_000_001]  # the last is unknown to the model: it gets the fallback feed
    manifest = score_spark_job(BUNDLE, f"file://{tmp_path / 'spark'}", media_id="guide-0", users=users, k=4,
                               nested=True, spark=spark, scored_at=SCORED_AT)
    got = pd.read_parquet(tmp_path / "spark")
    want = _local_rows(tmp_path, media_id="guide-0", users=users, k=4, nested=True)
    assert len(got) == len(users) == manifest["rows"] and set(got.columns) == set(want.columns)
    columns = [c for c in want.columns if c != "feed"] + list(FEED_FIELDS)
    pd.testing.assert_frame_equal(_flat(got, True)[columns], _flat(want, True)[columns], check_exact=True)
    assert (tmp_path / "spark" / "_manifest.json").exists()      # written through Hadoop's file system


def test_a_registered_model_uri_is_resolved_on_the_driver_and_shipped(spark, tmp_path):
    import mlflow

    from recsys.batch.spark import score_spark_job
    from recsys.tracking.mlflow_model import log_recommender

    store, before = f"sqlite:///{tmp_path / 'mlflow.db'}", (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("batch", (tmp_path / "art").as_uri()))
        with mlflow.start_run():
            log_recommender(BUNDLE, pd.DataFrame({"user_id": [39], "media_id": ["guide-0"]}), name="gyl")
        score_spark_job("models:/gyl@champion", tmp_path / "spark", media_id="guide-0", k=3, spark=spark,
                        scored_at=SCORED_AT)
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    got = _flat(pd.read_parquet(tmp_path / "spark"), False)
    want = _flat(_local_rows(tmp_path, media_id="guide-0", k=3), False)
    assert set(got["model_name"]) == {"gyl"} and set(got["model_version"]) == {"1"}
    pd.testing.assert_frame_equal(got.drop(columns=["model_name", "model_version"]),
                                  want.drop(columns=["model_name", "model_version"]), check_exact=True)


def test_a_bundle_tampered_after_planning_fails_on_the_executor(spark, tmp_path):
    """The shared-path route (``ship=False``): the executor reads the bundle itself and verifies it. (With
    ``addFile``, Spark itself refuses a shipped folder whose copy no longer matches its source.)"""
    from recsys.batch.spark import _write, score_spark
    from recsys.errors import ArtifactError

    bundle = shutil.copytree(BUNDLE, tmp_path / "tampered")
    users = spark.createDataFrame([(39,), (7,)], "user_id long")
    rows = score_spark(spark, users, bundle, k=3, media_id="guide-0", ship=False)  # the driver loaded it intact
    emb = bundle / "item_embeddings.safetensors"
    data = bytearray(emb.read_bytes())
    data[-1] ^= 0xFF
    emb.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="on a Spark executor: .*item_embeddings.safetensors fails its sha256"):
        _write(rows, "errorifexists", str(tmp_path / "out"))  # score_spark_job's writer: the executor's error


def test_a_used_output_folder_is_refused_without_restart(spark, tmp_path):
    from recsys.batch.spark import score_spark_job
    from recsys.errors import ConfigError

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part-old.parquet").write_bytes(b"x")
    with pytest.raises(ConfigError, match="restart"):
        score_spark_job(BUNDLE, tmp_path / "out", media_id="guide-0", spark=spark)


def test_the_spark_extra_pins_a_pandas_that_pyspark_supports():
    import tomllib

    from packaging.requirements import Requirement

    extra = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["spark"]
    pins = [Requirement(r).specifier for r in extra if Requirement(r).name == "pandas"]
    assert pins and not any(s.contains("3.0.0") for s in pins) and all(s.contains("2.3.3") for s in pins)


def _reports(folder: Path, event: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{event}-*.json"))]


def test_spark_scores_the_local_jobs_chunks_and_each_worker_loads_the_bundle_once(spark, tmp_path, monkeypatch):
    """Through the workers' report hook: every chunk Spark scored is one chunk of the local job's plan (same
    users, same order), each exactly once, and each Python worker loaded the bundle once for all its tasks."""
    import recsys
    from recsys.batch.job import plan_job
    from recsys.batch.spark import score_spark_job
    from recsys.batch.spark_worker import REPORT_ENV

    bundle = shutil.copytree(BUNDLE, tmp_path / "fresh-bundle")  # a path no worker holds yet: each must load it
    monkeypatch.setenv(REPORT_ENV, str(tmp_path / "reports"))
    manifest = score_spark_job(bundle, tmp_path / "spark", k=3, chunk_size=4, partitions=6, spark=spark,
                               scored_at=SCORED_AT)
    plan = plan_job(recsys.load(bundle), media_id=None, users=None, chunk_size=4)
    want = sorted((m, plan.users[m][start:stop]) for m, start, stop in plan.chunks)
    chunks, loads = _reports(tmp_path / "reports", "chunk"), _reports(tmp_path / "reports", "load")
    assert sorted((c["media_id"], c["users"]) for c in chunks) == want and len(want) >= 12
    assert manifest["spark"]["partitions"] == 6 and manifest["spark"]["chunks"] == len(want)
    workers = {c["pid"] for c in chunks}
    partitions = {c["partition"] for c in chunks}
    loaded = [r["pid"] for r in loads]
    # each worker loaded the bundle once (the job's warm-up loads it before scoring starts), and every worker
    # that scored had loaded it
    assert len(loaded) == len(set(loaded)) and workers <= set(loaded)
    assert len(workers) <= 2 < len(partitions) == 6                  # local[2]: at most two workers, six tasks
    assert all(Path(r["bundle"]).name == "fresh-bundle" for r in loads)
    # the rows match the local job's too (exact: same code, bundle, users and chunks)
    pd.testing.assert_frame_equal(_flat(pd.read_parquet(tmp_path / "spark"), False),
                                  _flat(_local_rows(tmp_path, bundle, k=3, chunk_size=4), False), check_exact=True)


def test_a_users_dataframe_is_planned_as_the_local_job_plans_a_list(spark, tmp_path):
    """score_spark on a DataFrame in another order, with a duplicate and an unknown user, over 3 partitions:
    the local job's rows over the same users (unique, sorted, chunked alike)."""
    from recsys.batch.spark import _write, score_spark

    users = [12, 39, 7, 39, 10_000_001, 5, 40, 3]
    frame = spark.createDataFrame([(u,) for u in users], "user_id int").repartition(3)
    rows = score_spark(spark, frame, BUNDLE, k=4, media_id="guide-0", chunk_size=3, scored_at=SCORED_AT,
                       partitions=2)
    _write(rows, "errorifexists", str(tmp_path / "spark"))
    got = _flat(pd.read_parquet(tmp_path / "spark"), False)
    want = _flat(_local_rows(tmp_path, media_id="guide-0", users=users, k=4, chunk_size=3), False)
    assert got["user_id"].nunique() == len(set(users))
    pd.testing.assert_frame_equal(got, want, check_exact=True)  # exact: the same chunks scored by the same code


def test_a_users_dataframe_of_the_wrong_id_type_is_refused(spark):
    from recsys.batch.spark import score_spark
    from recsys.errors import ConfigError

    frame = spark.createDataFrame([("39",)], "user_id string")
    with pytest.raises(ConfigError, match="user_id is string; .* cast it"):
        score_spark(spark, frame, BUNDLE, k=3, media_id="guide-0")


def test_warm_workers_load_the_bundle_before_the_scoring_job(spark, tmp_path, monkeypatch):
    """The warm-up job loads the bundle in the session's Python workers; the scoring job's tasks then find it
    loaded (PySpark reuses its SQL workers between jobs), so scoring adds no load."""
    from recsys.batch.spark_start import local_bundle, warm_workers
    from recsys.batch.spark_worker import REPORT_ENV, ship_bundle

    bundle = shutil.copytree(BUNDLE, tmp_path / "warm-bundle")  # a path no worker holds yet
    assert local_bundle(f"file://{bundle}") == bundle.resolve() and local_bundle("models:/m@a") is None
    monkeypatch.setenv(REPORT_ENV, str(tmp_path / "reports"))
    shipped = ship_bundle(spark, bundle, False)
    answered = warm_workers(spark, shipped, str(tmp_path / "reports"))
    loads = _reports(tmp_path / "reports", "load")
    assert 1 <= answered == len(loads) <= 2 and len({r["pid"] for r in loads}) == len(loads)

    users = spark.createDataFrame(pd.DataFrame({"user_id": pd.read_parquet(BUNDLE / "tables" / "events.parquet")
                                                ["user_id"].drop_duplicates().head(20)}))
    from recsys.batch.spark import score_spark

    rows = score_spark(spark, users, bundle, k=3, media_id="guide-0", ship=False).toPandas()
    assert len(rows) > 0
    assert len(_reports(tmp_path / "reports", "load")) == len(loads)  # no worker loaded it again
