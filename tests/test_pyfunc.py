"""The MLflow model: ``mlflow.pyfunc.load_model("models:/guess-you-like@champion").predict(df)`` gives the bundle's
feeds; ``recsys.load`` takes the model URI; the logged model holds no pickle and loading runs none."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.errors import DataValidationError
from tests.test_tracking import tracked_demo

URI = "models:/guess-you-like@champion"


@pytest.fixture(scope="module")
def store():
    import mlflow

    result, _, root = tracked_demo()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(result["tracking_uri"])
    mlflow.set_registry_uri(result["tracking_uri"])
    yield result, root
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def bundle(store):
    import recsys

    return recsys.load(store[0]["bundle_dir"])


def requests_for(result) -> pd.DataFrame:
    users = result["requests"]["user_id"].unique().tolist()
    return pd.DataFrame({"user_id": users + [users[0], 10**9], "k": [5, 3, 7, 4, 5][: len(users) + 2],
                         "media_id": ["guide-0", "app-0", "app-1", "kol-0", "guide-0"][: len(users) + 2]})


def test_pyfunc_predict_equals_bundle_recommend(store, bundle):
    import mlflow

    from recsys.tracking.feeds import predict_feeds

    model = mlflow.pyfunc.load_model(URI)
    df = requests_for(store[0])
    out = model.predict(df)
    pd.testing.assert_frame_equal(out, predict_feeds(bundle, df))
    for pos, row in df.iterrows():  # and request by request, against Recommender.recommend
        media = None if pd.isna(row["media_id"]) else row["media_id"]
        feed = bundle.recommend(int(row["user_id"]), k=int(row["k"]), media_id=media)
        got = out[out["request"] == pos].reset_index(drop=True)
        assert got["item_id"].tolist() == feed.item_ids
        assert got["reason"].tolist() == feed.items["reason"].tolist()
        assert got["fallback"].tolist() == [feed.fallback] * len(got)  # None on the normal path, in both
        assert got["score_kind"].tolist() == [feed.score_kind] * len(got)
        assert len(got) == row["k"]
    unknown = out[out["request"] == len(df) - 1]
    assert unknown["fallback"].notna().all()  # an unknown user falls back, never raises


def test_recsys_load_takes_the_model_uri(store, bundle):
    import mlflow

    from recsys.tracking.mlflow_model import load_recommender

    df = requests_for(store[0])
    own = store[0]["tracking_uri"]
    elsewhere = "sqlite:///" + str(Path(own.removeprefix("sqlite:///")).parent / "elsewhere.db")
    mlflow.set_tracking_uri(elsewhere)  # the process points at another (empty) store
    mlflow.set_registry_uri(elsewhere)
    try:
        rec = load_recommender(URI, tracking_uri=own)
        assert mlflow.get_tracking_uri() == elsewhere == mlflow.get_registry_uri()  # left alone
    finally:
        mlflow.set_tracking_uri(own)
        mlflow.set_registry_uri(own)
    assert rec.recommend_batch(df[["user_id", "media_id"]], k=5).equals(bundle.recommend_batch(
        df[["user_id", "media_id"]], k=5))
    import recsys

    via_load = recsys.load(URI)  # the module's store is MLflow's current tracking URI
    assert via_load.info["items"] == bundle.info["items"]
    assert via_load.recommend_batch(df[["user_id", "media_id"]], k=5).equals(
        bundle.recommend_batch(df[["user_id", "media_id"]], k=5))


def test_a_request_without_a_partner_follows_the_models_no_partner(store, bundle):
    """The demo's model keeps the default no_partner="auto" and its partners have restricted pools: a request
    frame without media_id (or a null one) is refused with the fix, never served the whole catalogue (issue 16);
    a model built with no_partner="catalogue" serves it, as recommend does."""
    import copy
    from dataclasses import replace

    import mlflow

    from recsys.tracking.feeds import predict_feeds

    model = mlflow.pyfunc.load_model(URI)
    uid = int(store[0]["requests"]["user_id"].iloc[0])
    assert bundle.no_partner == "auto"
    for frame in ({"user_id": [uid], "k": [5]}, {"user_id": [uid], "k": [5], "media_id": [None]}):
        with pytest.raises(DataValidationError, match="media_id is required.*no_partner='catalogue'"):
            model.predict(pd.DataFrame(frame))
    catalogue = copy.copy(bundle)
    catalogue._state = bundle._state.evolve(config=replace(bundle._state.config, no_partner="catalogue"))
    out = predict_feeds(catalogue, pd.DataFrame({"user_id": [uid], "k": [5]}))
    assert out["item_id"].tolist() == catalogue.recommend(uid, k=5).item_ids and len(out) == 5


def test_model_is_built_from_code_and_holds_no_pickle(store):
    import mlflow
    import yaml

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=URI, dst_path=str(store[1] / "dl")))
    conf = yaml.safe_load((local / "MLmodel").read_text())
    pyfunc = conf["flavors"]["python_function"]
    assert "model_code_path" in pyfunc and "python_model" not in pyfunc  # no cloudpickled PythonModel
    files = [p for p in local.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib")]
    for p in files:  # no pickle stream anywhere (protocol 2+ starts with 0x80, then the protocol number)
        head = p.read_bytes()[:2]
        assert not (len(head) == 2 and head[0] == 0x80 and head[1] in (2, 3, 4, 5)), p
    assert (local / "artifacts" / "bundle" / "manifest.json").is_file()
    sig = conf["signature"]
    assert "user_id" in sig["inputs"] and '"required": false' in sig["inputs"]
    example = (local / "input_example.json").read_text()
    assert "user_id" in example and "media_id" in example


def test_bad_requests_are_refused(bundle):
    from recsys.tracking.feeds import predict_feeds

    with pytest.raises(DataValidationError, match="user_id"):
        predict_feeds(bundle, pd.DataFrame({"uid": [1]}))
    with pytest.raises(DataValidationError, match="'k'"):
        predict_feeds(bundle, pd.DataFrame({"user_id": [1], "k": [0]}))
    with pytest.raises(DataValidationError, match="unknown request column"):
        predict_feeds(bundle, pd.DataFrame({"user_id": [1], "kk": [3]}))
    empty = predict_feeds(bundle, pd.DataFrame({"user_id": pd.Series([], dtype="int64")}))
    assert len(empty) == 0 and "request" in empty.columns


def test_a_store_given_for_one_load_leaves_mlflows_uris_and_environment_as_they_were(tmp_path, monkeypatch):
    import os

    import mlflow

    from recsys.tracking.mlflow_model import _store

    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # monkeypatch puts them back afterwards
            monkeypatch.delenv(k, raising=False)
        mlflow.set_tracking_uri(a)
        mlflow.set_registry_uri(None)  # the registry follows the tracking URI
        env = dict(os.environ)
        with _store(mlflow, b):
            assert mlflow.get_tracking_uri() == b == mlflow.get_registry_uri()
        assert mlflow.get_tracking_uri() == a == mlflow.get_registry_uri() and dict(os.environ) == env
        mlflow.set_tracking_uri(a + "2")
        assert mlflow.get_registry_uri() == a + "2"  # still follows, not pinned by the restore
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1] if previous[1] != previous[0] else None)


def test_pyfunc_reads_every_spelling_of_an_id_as_recommend_does(store, bundle):
    """One rule for both paths (recsys.ids.coerce_id): MLflow's own schema check used to refuse "1279" and
    1279.0 for this integer-id model while Recommender.recommend served "1279" as an unknown user."""
    import mlflow
    import numpy as np

    model = mlflow.pyfunc.load_model(URI)
    uid = int(store[0]["requests"]["user_id"].iloc[0])
    want = bundle.recommend(uid, k=5, media_id="guide-0")
    for spelling in (uid, str(uid), float(uid), np.int64(uid)):
        out = model.predict(pd.DataFrame({"user_id": pd.Series([spelling], dtype=object if isinstance(
            spelling, str) else None), "k": [5], "media_id": ["guide-0"]}))
        feed = bundle.recommend(spelling, k=5, media_id="guide-0")
        assert out["item_id"].tolist() == feed.item_ids == want.item_ids, spelling
        assert out["user_id"].tolist() == [uid] * 5 and feed.fallback == want.fallback and not feed.notes
    out = model.predict(pd.DataFrame({"user_id": ["12a"], "k": [5], "media_id": ["app-0"]}))
    feed = bundle.recommend("12a", k=5, media_id="app-0")
    assert out["item_id"].tolist() == feed.item_ids and out["fallback"].tolist() == [feed.fallback] * 5
    assert feed.fallback is not None and feed.notes[0].startswith("user_id '12a' is not an integer id")


def _user(store) -> int:
    return int(store[0]["requests"]["user_id"].iloc[0])


def test_missing_or_null_options_take_the_params_and_params_reach_the_model(store, bundle):
    """Issue 18: a NaN k (what Spark sends for an absent or null optional column) means the k param, a null
    media_id the media_id param; params={"k": 2} is honoured, not ignored."""
    import mlflow
    import numpy as np

    model = mlflow.pyfunc.load_model(URI)
    uid = _user(store)
    out = model.predict(pd.DataFrame({"user_id": [uid, uid], "k": [np.nan, 4.0], "media_id": [None, "app-0"]}),
                        params={"k": 3, "media_id": "guide-0"})
    assert out[out["request"] == 0]["item_id"].tolist() == bundle.recommend(uid, k=3, media_id="guide-0").item_ids
    assert out[out["request"] == 1]["item_id"].tolist() == bundle.recommend(uid, k=4, media_id="app-0").item_ids
    two = model.predict(pd.DataFrame({"user_id": [uid]}), params={"k": 2, "media_id": "guide-0"})
    assert two["item_id"].tolist() == bundle.recommend(uid, k=2, media_id="guide-0").item_ids and len(two) == 2
    default = model.predict(pd.DataFrame({"user_id": [uid], "media_id": ["guide-0"]}))
    assert default["item_id"].tolist() == bundle.recommend(uid, k=20, media_id="guide-0").item_ids


def test_exclude_works_as_a_column_and_as_a_param(store, bundle):
    import mlflow

    model = mlflow.pyfunc.load_model(URI)
    uid = _user(store)
    top = bundle.recommend(uid, k=6, media_id="guide-0").item_ids
    frame = pd.DataFrame({"user_id": [uid, uid], "k": [4, 4], "media_id": ["guide-0", "guide-0"],
                          "exclude": [top[:2], None]})
    out = model.predict(frame, params={"exclude": [top[2]]})
    first, second = (out[out["request"] == r]["item_id"].tolist() for r in (0, 1))
    assert first == bundle.recommend(uid, k=4, media_id="guide-0", exclude=top[:3]).item_ids  # column + param
    assert second == bundle.recommend(uid, k=4, media_id="guide-0", exclude=[top[2]]).item_ids
    assert not set(top[:3]) & set(first) and top[2] not in second and top[0] in second


def test_nested_layout_is_one_row_per_request_with_the_feed_as_structs(store, bundle):
    import mlflow

    from recsys.batch.rows import FEED_FIELDS as BATCH_FIELDS
    from recsys.tracking.feeds import FEED_FIELDS, FEED_RESULT_TYPE

    assert FEED_FIELDS == BATCH_FIELDS and all(f"{f}:" in FEED_RESULT_TYPE for f in FEED_FIELDS)
    model = mlflow.pyfunc.load_model(URI)
    df = requests_for(store[0])
    rows = model.predict(df)
    nested = model.predict(df, params={"layout": "nested"})
    assert nested["request"].tolist() == list(range(len(df))) and nested["user_id"].tolist() == df["user_id"].tolist()
    for pos, feed in enumerate(nested["feed"]):
        want = rows[rows["request"] == pos][list(FEED_FIELDS)]
        want = want.astype(object).where(want.notna(), None).to_dict("records")
        assert feed == want and [f["rank"] for f in feed] == list(range(1, len(feed) + 1))
        assert all(type(f["item_id"]) is int and type(f["score"]) is float for f in feed)  # JSON-ready


def test_bad_options_are_refused_with_the_librarys_typed_error(store):
    import mlflow

    model = mlflow.pyfunc.load_model(URI)
    uid = _user(store)
    one = pd.DataFrame({"user_id": [uid], "media_id": ["guide-0"]})
    with pytest.raises(DataValidationError, match="param layout must be one of"):
        model.predict(one, params={"layout": "wide"})
    with pytest.raises(DataValidationError, match="column 'k' must hold positive integers.*row 0 holds 'five'"):
        model.predict(one.assign(k=["five"]))
    with pytest.raises(DataValidationError, match=r"column 'exclude' \(row 0\) must be a list of item ids"):
        model.predict(one.assign(exclude=[7]))
    with pytest.raises(mlflow.exceptions.MlflowException, match="'k'"):  # MLflow checks params by the schema
        model.predict(one, params={"k": 2.5})


def test_the_signature_declares_the_params(store):
    import mlflow

    sig = mlflow.models.get_model_info(URI).signature
    params = {p.name: p for p in sig.params.params}
    assert set(params) == {"k", "media_id", "exclude", "layout"}
    assert (params["k"].default, params["layout"].default, params["media_id"].default) == (20, "rows", None)
    assert params["exclude"].shape == (-1,)
    assert [c.name for c in sig.inputs.inputs] == ["user_id", "k", "media_id", "exclude"]
    assert [c.required for c in sig.inputs.inputs] == [True, False, False, False]


def test_mlflow_models_serve_answers_params_and_refuses_bad_ones_with_a_400(store, bundle):
    """The real `mlflow models serve --env-manager local` on 127.0.0.1 (a few seconds to start), stopped after."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": store[0]["tracking_uri"], "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    server = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", URI, "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port)], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def post(body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(f"{base}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(0.25)
        uid = _user(store)
        top = bundle.recommend(uid, k=4, media_id="guide-0").item_ids
        status, body = post({"dataframe_split": {"columns": ["user_id", "k", "exclude"],
                                                 "data": [[uid, None, [top[0]]], [uid, 2, None]]},
                             "params": {"k": 3, "media_id": "guide-0", "layout": "nested"}})
        assert status == 200
        feeds = [[f["item_id"] for f in row["feed"]] for row in body["predictions"]]
        assert feeds == [bundle.recommend(uid, k=3, media_id="guide-0", exclude=[top[0]]).item_ids, top[:2]]
        status, body = post({"dataframe_split": {"columns": ["user_id"], "data": [[uid]]},
                             "params": {"media_id": "guide-0", "layout": "wide"}})
        assert status == 400 and "param layout must be one of ['rows', 'nested']" in body["message"]
        assert "stack_trace" not in body
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn child: the group started here
        server.wait(timeout=30)
