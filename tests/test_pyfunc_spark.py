"""The registered MLflow model from Spark (issue 18 item 4): ``mlflow.pyfunc.spark_udf`` with the nested layout
returns one row per user whose feed equals ``Recommender.recommend``; optional columns that Spark fills with
NaN (absent) or null never break the cast. Real Spark on local[2], a real SQLite MLflow store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import temporary_mlflow_store

pytest.importorskip("pyspark")

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bundles" / "v1"
URI = "models:/gyl-spark@champion"
USERS = [0, 5, 7, 11, 10**9]  # 10**9: an unknown user, served the fallback


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import mlflow

    from recsys.tracking.mlflow_model import log_recommender

    root = tmp_path_factory.mktemp("spark-store")
    with temporary_mlflow_store(root, "spark") as uri:
        example = pd.DataFrame({"user_id": [0, 5], "k": [3, 3], "media_id": ["guide-0", "app-0"]})
        with mlflow.start_run():
            log_recommender(FIXTURE, example, name="gyl-spark", alias="champion")
        yield uri

@pytest.fixture(scope="module")
def spark():
    from recsys.batch.spark import local_session

    session = local_session("local[2]", app_name="test-pyfunc-spark", progress=False)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def bundle():
    import recsys

    return recsys.load(FIXTURE)


def _as_dicts(feed) -> list[dict]:
    return [row if isinstance(row, dict) else row.asDict() for row in feed]  # toPandas: dicts; collect: Rows


def _expected(bundle, uid, k: int, exclude=()) -> list[dict]:
    feed = bundle.recommend(uid, k=k, media_id="guide-0", exclude=exclude)
    items = feed.items
    return [{"rank": int(r["rank"]), "item_id": int(r["item_id"]), "reason": r["reason"], "fallback": feed.fallback}
            for r in items.to_dict("records")]


def test_spark_udf_nested_gives_one_row_per_user_equal_to_recommend(store, spark, bundle):
    """Optional columns as Spark gives them: k null for some users (NaN in pandas: the k param), exclude an
    array<bigint> or null; media_id as a param. The struct result type's ``feed`` is the user's feed."""
    import mlflow
    from pyspark.sql import functions as F

    from recsys.tracking.feeds import FEED_RESULT_TYPE

    top = bundle.recommend(5, k=4, media_id="guide-0").item_ids
    users = pd.DataFrame({"user_id": USERS, "k": [None, 3, None, 6, None], "exclude": [None, top[:2], None, None, None]})
    df = spark.createDataFrame(users, "user_id bigint, k bigint, exclude array<bigint>").repartition(2)
    udf = mlflow.pyfunc.spark_udf(spark, URI, result_type=FEED_RESULT_TYPE,
                                  params={"layout": "nested", "k": 4, "media_id": "guide-0"})
    out = (df.withColumn("p", udf(F.struct("user_id", "k", "exclude"))).select("user_id", "p.feed")
           .toPandas().sort_values("user_id").reset_index(drop=True))
    assert out["user_id"].tolist() == sorted(USERS)  # one row per user, none lost or repeated
    for uid, feed in zip(out["user_id"], out["feed"], strict=True):
        row = users[users["user_id"] == uid].iloc[0]
        k = 4 if pd.isna(row["k"]) else int(row["k"])
        got = _as_dicts(feed)
        want = _expected(bundle, int(uid), k, exclude=row["exclude"] if row["exclude"] is not None else ())
        assert [{f: g[f] for f in ("rank", "item_id", "reason", "fallback")} for g in got] == want, uid
        scores = bundle.recommend(int(uid), k=k, media_id="guide-0",
                                  exclude=row["exclude"] if row["exclude"] is not None else ()).items["score"]
        assert [g["score"] for g in got] == pytest.approx(scores.tolist(), rel=1e-9)
    assert not set(top[:2]) & {g["item_id"] for g in _as_dicts(out.loc[out["user_id"] == 5, "feed"].iloc[0])}
    assert _as_dicts(out.loc[out["user_id"] == 10**9, "feed"].iloc[0])[0]["fallback"] is not None


def test_spark_udf_with_the_user_column_alone(store, spark, bundle):
    """The call of the issue: only user_id given, MLflow fills the optional k, media_id and exclude with NaN."""
    import mlflow

    from recsys.tracking.feeds import FEED_RESULT_TYPE

    df = spark.createDataFrame(pd.DataFrame({"user_id": USERS[:3]}))
    udf = mlflow.pyfunc.spark_udf(spark, URI, result_type=FEED_RESULT_TYPE,
                                  params={"layout": "nested", "k": 2, "media_id": "guide-0"})
    out = df.select("user_id", udf("user_id").feed.alias("feed")).toPandas()
    assert sorted(out["user_id"]) == USERS[:3]
    for uid, feed in zip(out["user_id"], out["feed"], strict=True):
        assert [g["item_id"] for g in _as_dicts(feed)] == bundle.recommend(int(uid), k=2, media_id="guide-0").item_ids
