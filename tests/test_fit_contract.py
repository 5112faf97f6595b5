"""Recommender.fit checks the data contract exactly as ``recsys train`` does, and the ranker is never skipped
in silence (``Recommender.fit`` and ``recsys train``): no ``impression_id`` is an error naming the column,
too few clicks a :class:`RankerSkippedWarning` recorded in the train summary, ``ranker="none"`` explicit.

One small synthetic world (4k events, 100 items) serves every test; contract failures raise before training.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataValidationError, RankerSkippedWarning, RecsysWarning

FAST = dict(dim=8, epochs=1, title_buckets=64, ranker_max_iter=5,
            ranker_options={"check_leakage": False, "num_threads": 1})


@functools.cache
def _world():
    from recsys.datasets.synthetic import generate_world

    return generate_world(4_000, seed=0, progress=False)


def tables(**over) -> dict[str, pd.DataFrame]:
    """The world's six tables (copies), with some replaced."""
    w = _world()
    out = {n: getattr(w, n).copy() for n in ("events", "items", "users", "social", "media", "media_pools")}
    return out | over


def fit(t: dict, **settings):
    import torch

    from recsys.fit.components import TrainSettings
    from recsys.recommender import Recommender

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Recommender(train=TrainSettings(**(FAST | settings))).fit(
            t["events"], t["items"], users=t.get("users"), social=t.get("social"), media=t.get("media"),
            media_pools=t.get("media_pools"), progress=False)
    finally:
        torch.set_num_threads(threads)


def few_clicks(n: int) -> pd.DataFrame:
    """The world's events with only the first ``n`` clicks (and no purchases) left."""
    ev = _world().events
    kind = ev["event_type"].astype(str)
    drop = (kind == "purchase") | ((kind == "click") & (kind == "click").cumsum().gt(n))
    return ev.loc[~drop.to_numpy()].reset_index(drop=True)


def _bad_items_commission():
    items = _world().items.copy()
    items.loc[3, "commission_rate"] = 50.0  # 50 % written as a percentage
    return {"items": items}


def _bad_events_view():
    ev = _world().events.copy()
    ev["event_type"] = ev["event_type"].astype(str)
    ev.loc[5, "event_type"] = "view"
    return {"events": ev}


def _bad_price_inf():
    items = _world().items.copy()
    items.loc[2, "price"] = np.inf
    return {"items": items}


def _bad_value_inf():
    ev = _world().events.copy()
    ev.loc[7, "value"] = np.inf
    return {"events": ev}


def _bad_users_duplicate():
    users = _world().users
    return {"users": pd.concat([users, users.iloc[:1]], ignore_index=True)}


def _bad_social_float():
    social = _world().social.copy()
    social["friend_id"] = social["friend_id"].astype(float) + 0.5
    return {"social": social}


def _bad_media_objective():
    media = _world().media.copy()
    media.loc[0, "objective"] = "likes"
    return {"media": media}


def _bad_pools_unknown_item():
    pools = _world().media_pools.copy()
    pools["item_id"] = pools["item_id"].astype(str)  # "12" is not the item 12
    return {"media_pools": pools}


@pytest.mark.parametrize("change,needles", [
    (_bad_items_commission, ["items", "'commission_rate'", "above 1", "divide percentages by 100"]),
    (_bad_events_view, ["events", "'event_type'", "'view'", "Fix:"]),
    (_bad_price_inf, ["items", "'price'", "infinite", "Fix:"]),
    (_bad_value_inf, ["events", "'value'", "infinite", "Fix:"]),
    (_bad_users_duplicate, ["users", "'user_id'", "duplicate"]),
    (_bad_social_float, ["social", "'friend_id'", "float64"]),
    (_bad_media_objective, ["media", "'objective'", "'likes'", "commission"]),
    (_bad_pools_unknown_item, ["media_pools", "'item_id'", "not in the items table"]),
], ids=["commission-percent", "event-view", "price-inf", "value-inf", "users-dup", "social-float", "media-objective",
        "pools-unknown-item"])
def test_fit_refuses_what_recsys_train_refuses(change, needles, tmp_path):
    bad = tables(**change())
    with pytest.raises(DataValidationError) as e:
        fit(bad)
    for needle in needles:
        assert needle in str(e.value), f"{needle!r} not in:\n{e.value}"
    # recsys train reads the same tables from files and refuses them with the same message
    from recsys.fit.settings import DataConfig
    from recsys.fit.tables import load_tables

    for name, df in bad.items():
        df.to_parquet(tmp_path / f"{name}.parquet")
    with pytest.raises(DataValidationError) as e_train:
        load_tables(DataConfig(source="files", path=str(tmp_path)))
    assert str(e_train.value) == str(e.value)


def test_valid_data_still_fits_with_a_ranker():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecsysWarning)
        rec = fit(tables())
    assert rec.info["ranker"] == "gbdt"
    record = rec.train_summary_["ranker"]
    assert record["trained"] is True and record["kind"] == "gbdt" and record["clicked_impressions"] >= 10
    feed = rec.recommend(int(_world().events["user_id"].iloc[0]), k=5, media_id="guide-0")
    assert len(feed) == 5 and feed.items["pctr"].between(0, 1).all()


def test_fit_without_impression_id_names_the_column_before_training():
    events = _world().events.drop(columns=["impression_id"])
    with pytest.raises(DataValidationError) as e:
        fit(tables(events=events))
    msg = str(e.value)
    assert "'impression_id'" in msg and "ranker='none'" in msg and "clicks" in msg and "Fix:" in msg


def test_ranker_none_is_explicit_quiet_and_recorded():
    events = _world().events.drop(columns=["impression_id"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecsysWarning)
        rec = fit(tables(events=events), ranker="none")
    assert rec.info["ranker"] is None
    assert rec.train_summary_["ranker"]["trained"] is False and "'none'" in rec.train_summary_["ranker"]["reason"]
    feed = rec.recommend(int(events["user_id"].iloc[0]), k=5, media_id="app-0")
    assert len(feed) == 5 and feed.items["pctr"].isna().all()  # no ranker: no pCTR, and nothing pretends


def test_too_few_clicks_warn_loudly_and_are_recorded():
    with pytest.warns(RankerSkippedWarning, match="3 were clicked.*at least 10"):
        rec = fit(tables(events=few_clicks(3)))
    assert rec.info["ranker"] is None
    record = rec.train_summary_["ranker"]
    assert record["trained"] is False and record["clicked_impressions"] == 3 and "at least 10" in record["reason"]


def _files(tmp_path, events: pd.DataFrame):
    for name, df in tables(events=events).items():
        df.to_parquet(tmp_path / f"{name}.parquet")
    from recsys.fit.settings import config_from_dict

    return config_from_dict({"name": "tiny", "data": {"source": "files", "path": str(tmp_path)},
                             "output": {"dir": str(tmp_path / "out")},
                             "ranker": {"max_iter": 5, "num_threads": 1, "check_leakage": False}})


def test_recsys_train_without_impression_id_stops_before_training(tmp_path):
    from recsys.pipeline.train import run_training

    cfg = _files(tmp_path, _world().events.drop(columns=["impression_id"]))
    with pytest.raises(DataValidationError, match="'impression_id' is missing"):
        run_training(cfg, stage="all", tracking=False, log=None)
    assert not (tmp_path / "out" / "tiny" / "retrieval").exists()  # it stopped before the two-tower


def test_recsys_train_with_too_few_clicks_warns_and_records(tmp_path):
    from recsys.pipeline.train import run_training

    cfg = _files(tmp_path, few_clicks(3))
    lines: list[str] = []
    with pytest.warns(RankerSkippedWarning, match="at least 10"):
        result = run_training(cfg, stage="ranker", tracking=False, log=lines.append)
    assert result.evaluation["ranker"]["trained"] is False
    assert "at least 10" in result.evaluation["ranker"]["reason"]
    assert any("no ranker" in line and "at least 10" in line for line in lines)
