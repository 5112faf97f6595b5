"""One contract suite every ranker passes: shapes, ranges, determinism, save/load, leakage and input errors."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from recsys.errors import ArtifactError, ConfigError, DataValidationError, LeakageError
from recsys.models.rankers import OUTPUTS, Ranker, load_ranker
from recsys.models.rankers.esmm import ESMMRanker
from recsys.models.rankers.gbdt import GBDTRanker

RANKERS = {
    "gbdt": lambda **kw: GBDTRanker(max_iter=25, max_leaf_nodes=15, early_stopping=False, num_threads=1, **kw),
    "esmm": lambda **kw: ESMMRanker(epochs=2, hidden=(32,), dim=8, batch_size=1024, num_threads=1, **kw),
}


@lru_cache(maxsize=4)
def ranking_data(n_events: int = 40_000, seed: int = 0):
    """(world, rows with labels, feature frame) for a small synthetic affiliate world; rows in time order."""
    from recsys.datasets.synthetic import generate_world
    from recsys.features.ranking_features import RankingFeatureBuilder, impression_labels

    world = generate_world(n_events, seed=seed, progress=False)
    rows = impression_labels(world.events)
    frame = RankingFeatureBuilder(windows=("7D", None)).fit(world.events, world.items, world.social).transform(rows)
    return world, rows, frame


@lru_cache(maxsize=4)
def fitted(kind: str):
    _, rows, frame = ranking_data()
    n = int(len(frame) * 0.8)
    model = RANKERS[kind]().fit(frame.iloc[:n], rows[["click", "purchase"]].iloc[:n])
    return model, frame.iloc[n:]


@pytest.fixture(params=sorted(RANKERS))
def kind(request) -> str:
    return request.param


def test_outputs_have_the_right_shape_range_and_identity(kind):
    model, test = fitted(kind)
    assert isinstance(model, Ranker)
    p = model.predict_proba(test)
    assert list(p.columns) == list(OUTPUTS) and len(p) == len(test) and p.index.equals(test.index)
    values = p.to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    np.testing.assert_allclose(p["pctcvr"], p["pctr"] * p["pcvr"], rtol=1e-12)
    assert p["pctr"].std() > 0  # not a constant
    raw = model.predict_proba(test, calibrated=False)
    np.testing.assert_allclose(raw["pctcvr"], raw["pctr"] * raw["pcvr"], rtol=1e-6)


def test_predictions_rank_clicks_better_than_chance(kind):
    from recsys.evaluation import auc

    _, rows, _ = ranking_data()
    model, test = fitted(kind)
    assert auc(rows.loc[test.index, "click"], model.predict_proba(test)["pctr"]) > 0.6


def test_batch_equals_single_rows(kind):
    model, test = fitted(kind)
    whole = model.predict_proba(test)
    part = pd.concat([model.predict_proba(test.iloc[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(part.to_numpy(), whole.iloc[:5].to_numpy(), rtol=1e-5, atol=1e-9)


def test_fit_is_deterministic_under_a_seed(kind):
    _, rows, frame = ranking_data()
    n = int(len(frame) * 0.8)
    model, test = fitted(kind)
    again = RANKERS[kind]().fit(frame.iloc[:n], rows[["click", "purchase"]].iloc[:n])
    pd.testing.assert_frame_equal(model.predict_proba(test), again.predict_proba(test))


def test_save_load_round_trip_gives_identical_predictions_without_pickle(kind, tmp_path):
    model, test = fitted(kind)
    path = model.save(tmp_path / kind)
    files = {f.name for f in path.iterdir()}
    assert "ranker.json" in files and "calibration.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".joblib"))]
    for loaded in (load_ranker(path), type(model).load(path)):
        pd.testing.assert_frame_equal(model.predict_proba(test), loaded.predict_proba(test))
    other = "esmm" if kind == "gbdt" else "gbdt"
    with pytest.raises(ArtifactError, match=f"'{kind}' ranker"):
        type(fitted(other)[0]).load(path)


def test_a_ranker_saved_with_the_old_parameter_names_still_loads(kind, tmp_path):
    # learning_rate / random_state / embedding_dim were renamed lr / seed / dim; saved files keep the old names
    import json

    model, test = fitted(kind)
    path = model.save(tmp_path / kind)
    meta = json.loads((path / "ranker.json").read_text())
    old = {"lr": "learning_rate", "seed": "random_state" if kind == "gbdt" else "seed", "dim": "embedding_dim"}
    meta["params"] = {old.get(k, k): v for k, v in meta["params"].items()}
    if kind == "esmm":
        meta["state"]["config"] = {old.get(k, k): v for k, v in meta["state"]["config"].items()}
    (path / "ranker.json").write_text(json.dumps(meta))
    loaded = load_ranker(path)
    assert loaded.get_params() == model.get_params()
    pd.testing.assert_frame_equal(model.predict_proba(test), loaded.predict_proba(test))


def test_declared_capabilities_match_the_methods(kind):
    model, _ = fitted(kind)
    assert model.kind == kind and model.predicts_arrays == callable(getattr(model, "predict_arrays", None))
    # get_params is the keyword-only constructor's arguments, in order
    import inspect

    signature = inspect.signature(type(model)).parameters
    assert list(model.get_params()) == list(signature)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.values())


def test_unknown_ranker_kinds_are_refused_with_the_known_ones(tmp_path):
    from recsys.errors import ConfigError
    from recsys.models.rankers import RANKER_KINDS, ranker_class

    assert set(RANKER_KINDS) == set(RANKERS) and ranker_class("gbdt") is GBDTRanker
    with pytest.raises(ConfigError, match="'gbdt'"):
        ranker_class("xgboost")


def test_a_label_or_post_event_column_among_the_features_is_refused(kind):
    _, rows, frame = ranking_data()
    labels = rows[["click", "purchase"]]
    with pytest.raises(LeakageError, match="click"):
        RANKERS[kind]().fit(frame.assign(click=labels["click"]), labels)
    dwell = labels["click"].to_numpy() * np.random.default_rng(0).uniform(1, 60, len(labels))  # seconds on page
    with pytest.raises(LeakageError, match="dwell_seconds"):
        RANKERS[kind]().fit(frame.assign(dwell_seconds=dwell), labels)
    order_value = labels["purchase"].to_numpy() * 99.0
    with pytest.raises(LeakageError, match="order_value.*purchase"):
        RANKERS[kind]().fit(frame.assign(order_value=order_value), labels)


def test_bad_inputs_get_clear_errors(kind):
    _, rows, frame = ranking_data()
    labels = rows[["click", "purchase"]].copy()
    with pytest.raises(DataValidationError, match="lack 'purchase'"):
        RANKERS[kind]().fit(frame, labels[["click"]])
    bad = labels.assign(purchase=1)
    with pytest.raises(DataValidationError, match="purchase=1 but click=0"):
        RANKERS[kind]().fit(frame, bad)
    with pytest.raises(DataValidationError, match="shape"):
        RANKERS[kind]().fit(frame, labels.iloc[:10])
    model, test = fitted(kind)
    with pytest.raises(DataValidationError, match="lacks feature column"):
        model.predict_proba(test.drop(columns=["price"]))


def test_build_ranker_passes_each_kind_the_settings_it_takes_and_every_option():
    """One constructor path for every kind: shared settings a kind does not take are left out (GBDT has no
    epochs, ESMM no max_iter), a user's option is always passed, so a misspelt one fails loudly."""
    from recsys.models.rankers.registry import build_ranker

    shared = {"max_iter": 7, "epochs": 2, "seed": 3}
    gbdt, esmm = build_ranker("gbdt", shared), build_ranker("esmm", shared, {"dim": 4})
    assert (gbdt.kind, gbdt.max_iter, gbdt.seed) == ("gbdt", 7, 3)
    assert (esmm.kind, esmm.epochs, esmm.dim, esmm.seed) == ("esmm", 2, 4, 3)
    with pytest.raises(TypeError, match="max_iterations"):
        build_ranker("gbdt", shared, {"max_iterations": 5})
    with pytest.raises(ConfigError, match="unknown ranker kind"):
        build_ranker("forest", shared)
