"""The item-to-item channel's score as a ranker feature (recsys.feed.item_score): a Recommender with
``item_to_item`` trains its ranker on it, serving computes the same value the training function gives at serving
time, both ranking paths read it alike, and training rows are scored from the events before their time slice only
(a click never adds weight to its own row)."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from recsys.feed.item_score import FEATURE, candidate_scores, point_in_time_scores
from tests.test_item_to_item import dense_cosine, users_with_history
from tests.test_recommender import SETTINGS, world


@functools.cache
def scored():
    """The shared world fitted with the item-to-item channel: its ranker learns from the channel's score."""
    import torch

    from recsys.fit.components import TrainSettings
    from recsys.recommender import Recommender

    w = world()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Recommender(max_per_category=2, train=TrainSettings(**SETTINGS), no_partner="catalogue",
                           item_to_item=20).fit(w.events, w.items, users=w.users, social=w.social, media=w.media,
                                                media_pools=w.media_pools, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_the_ranker_learns_from_the_score_and_serving_gives_the_training_value_at_serving_time():
    from recsys.feed.engine import Request, _resolve

    rec = scored()
    s, w = rec._state, world()
    assert FEATURE in s.ranker.columns_
    nonzero = 0
    for user in users_with_history(15):
        for media in ("app-0", "guide-0", None):
            items = rec.recommend(user, k=10, media_id=media).items["item_id"].to_numpy()
            rows = pd.DataFrame({"user_id": [user] * len(items), "item_id": items,
                                 "timestamp": [s.as_of] * len(items), "media_id": [media] * len(items)})
            want = point_in_time_scores(s.pipeline, s.tables["events"], w.items, rows)
            req = Request(user, media, 10)
            _resolve(s, [req])
            got = candidate_scores(s, [req], np.zeros(len(items), np.int64), s.catalogue.positions(items))
            # two code paths (the served state's histories and tables, the training function's own): the items
            # reached must be the same, the weights equal to float rounding (another CPU may sum differently); a
            # weight is a sum of positive similarities, so "> 0" means "reached" on any CPU and stays exact
            np.testing.assert_array_equal(got > 0, want > 0)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
            nonzero += int((got > 0).sum())
    assert nonzero > 20  # the check compares real weights, not zeros


def test_feeds_on_arrays_equal_feeds_on_frames_with_the_score():
    from recsys.feed.engine import Request, run_batch

    state = scored()._state
    frames = replace(state, arrays=False)
    users = users_with_history(6)

    def requests():
        return [Request(u, m, 10) for u in users for m in ("app-0", None)]

    fast, slow = run_batch(state, requests()), run_batch(frames, requests())
    pd.testing.assert_frame_equal(fast, slow)


def test_a_ranker_trained_on_the_score_gets_its_table_without_the_channel(tmp_path):
    from recsys.loading import load_bundle
    from recsys.recommender import Recommender

    s, w = scored()._state, world()
    rec = Recommender.from_components(
        pipeline=s.pipeline, model=s.model, items=w.items, events=w.events, ranker=s.ranker,
        feature_builder=s.builder, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools,
        item_embeddings=s.item_emb, max_per_category=2, no_partner="catalogue", item_to_item=0)
    assert rec._state.item_table is not None  # the ranker reads the score
    assert "item_to_item" not in rec.info["channels"]
    users = users_with_history(8)
    before = [rec.recommend(u, k=10, media_id="app-0").items for u in users]
    assert all((f["source"] != "item_to_item").all() for f in before)
    again = load_bundle(rec.save(tmp_path / "bundle"))
    for u, f in zip(users, before, strict=True):
        pd.testing.assert_frame_equal(again.recommend(u, k=10, media_id="app-0").items, f)


def _tiny_log() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Six users clicking five items over four days on one partner, and the catalogue."""
    day = pd.Timestamp("2026-01-01")
    clicks = [("a", 0, 0), ("a", 1, 0), ("b", 0, 0), ("b", 1, 1), ("b", 2, 1), ("c", 1, 1), ("c", 2, 1),
              ("d", 3, 2), ("d", 4, 2), ("e", 2, 2), ("e", 3, 2), ("f", 0, 3), ("f", 4, 3)]
    events = pd.DataFrame({"user_id": [u for u, _, _ in clicks], "item_id": [f"i{i}" for _, i, _ in clicks],
                           "timestamp": [day + pd.Timedelta(days=d, hours=n) for n, (_, _, d) in enumerate(clicks)],
                           "event_type": "click", "media_id": "app-0"})
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(5)], "category": "c", "brand": "b", "shop": "s",
                          "price": 10.0, "commission_rate": 0.1, "title": "t"})
    return events, items


def _reference(events: pd.DataFrame, user: str, item: str, cut: pd.Timestamp) -> float:
    """The score from first principles: cosines among the histories of the events before ``cut``, summed over
    the user's items then."""
    before = events[events["timestamp"] < cut]
    ids = [f"i{i}" for i in range(5)]
    users = sorted(before["user_id"].unique())
    x = np.zeros((len(users), 5))
    for u, i in zip(before["user_id"], before["item_id"], strict=True):
        x[users.index(u), ids.index(i)] = 1
    cos = dense_cosine(x)
    seeds = before.loc[before["user_id"] == user, "item_id"].unique()
    return float(sum(cos[ids.index(s), ids.index(item)] for s in seeds))


def test_training_rows_are_scored_from_the_events_before_their_time_slice():
    from recsys.features.pipeline import FeaturePipeline

    events, items = _tiny_log()
    pipe = FeaturePipeline(item_categoricals=(), price_column=None, title_column=None, context_column=None,
                           history_len=50).fit(events, items)
    day = pd.Timestamp("2026-01-01")
    rows = pd.DataFrame({"user_id": ["a", "c", "b", "e", "a", "f", "c", "d"],
                         "item_id": ["i2", "i0", "i3", "i4", "i2", "i1", "i3", "i0"],
                         "timestamp": [day + pd.Timedelta(days=d, hours=20) for d in (0, 1, 1, 2, 2, 3, 3, 3)],
                         "media_id": "app-0"})
    got = point_in_time_scores(pipe, events, items, rows, snapshots=4)
    t = rows["timestamp"]
    cuts = sorted(set(np.quantile(t.astype("int64"), np.arange(4) / 4, method="lower").tolist()))
    want = [_reference(events, u, i, pd.Timestamp(max(c for c in cuts if c <= ts.value)))
            for u, i, ts in zip(rows["user_id"], rows["item_id"], t, strict=True)]
    # float32 table weights summed in float64 against float64 cosines: equal to float32 rounding
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (np.asarray(want) > 0).sum() >= 3 and (np.asarray(want) == 0).any()
    # a's row on day 2 sees day 0-1 (a: i0, i1; i2 co-occurs with i1 through b and c); on day 0 nothing yet
    assert got[0] == 0 and got[4] > 0
    # the click that answers a row never weighs on it: with its own click at its time added, each row's score
    # is what it was (a later row may see that click: it is in the later row's past)
    for j in range(len(rows)):
        answered = pd.concat([events, rows.iloc[[j]].assign(event_type="click")], ignore_index=True)
        # exact: the added click is filtered out before the slice's computation, which then runs on the same events
        assert point_in_time_scores(pipe, answered, items, rows, snapshots=4)[j] == got[j]


def test_seeds_are_held_to_the_rows_partner():
    from recsys.features.pipeline import FeaturePipeline

    events, items = _tiny_log()
    events.loc[events["user_id"] == "a", "media_id"] = "guide-0"  # a's clicks were on another partner
    pipe = FeaturePipeline(item_categoricals=(), price_column=None, title_column=None, context_column=None,
                           history_len=50).fit(events, items)
    late = pd.Timestamp("2026-02-01")
    rows = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["i2", "i2"], "timestamp": [late, late],
                         "media_id": ["app-0", "guide-0"]})
    got = point_in_time_scores(pipe, events, items, rows, snapshots=1)
    assert got[0] == 0 and got[1] == pytest.approx(_reference(events, "a", "i2", late), rel=1e-6)


def test_recsys_train_trains_the_ranker_on_the_score(tmp_path):
    from recsys.fit.settings import config_from_dict
    from recsys.pipeline.train import run_training
    from tests.test_fit_contract import tables

    for name, df in tables().items():
        df.to_parquet(tmp_path / f"{name}.parquet")
    cfg = config_from_dict({"name": "tiny", "data": {"source": "files", "path": str(tmp_path)},
                            "output": {"dir": str(tmp_path / "out")}, "recommender": {"item_to_item": 10},
                            "ranker": {"max_iter": 5, "num_threads": 1, "check_leakage": False}})
    result = run_training(cfg, stage="ranker", tracking=False, log=None)
    assert result.evaluation["ranker"]["ctr_auc"] > 0.5
    from recsys.models.rankers.registry import load_ranker

    ranker = load_ranker(tmp_path / "out" / "tiny" / "ranker" / "ranker")
    assert FEATURE in ranker.columns_


def test_pair_scores_read_the_score_as_feeds_do(monkeypatch):
    import recsys.feed.item_score as item_score
    from recsys.partners.pair_scores import pair_probabilities

    rec = scored()
    state = rec._ready()
    users, media = users_with_history(12), np.array(["app-0"], object)
    feeds = [rec.recommend(u, k=20, media_id="app-0").items for u in users]
    pairs = [(np.array([u], object), state.catalogue.positions(f["item_id"].to_numpy()))
             for u, f in zip(users, feeds, strict=True)]
    for (user, pos), feed in zip(pairs, feeds, strict=True):
        pctr, _ = pair_probabilities(state, user, media, pos)
        # the same features and trees as the feed, in another batch: equal up to float rounding
        np.testing.assert_allclose(pctr[0], feed["pctr"].to_numpy(), rtol=1e-9, atol=1e-12)
    # the check has teeth: without the score these pairs' pCTR moves (the trees split on it)
    monkeypatch.setattr(item_score, "attach_scores", lambda *args: None)
    moved = sum(int((pair_probabilities(state, user, media, pos)[0][0] != f["pctr"].to_numpy()).sum())
                for (user, pos), f in zip(pairs, feeds, strict=True))
    assert moved > 0


def test_bad_rows_and_settings_get_typed_errors():
    from recsys.errors import ConfigError, DataValidationError
    from recsys.features.pipeline import FeaturePipeline

    events, items = _tiny_log()
    pipe = FeaturePipeline(item_categoricals=(), price_column=None, title_column=None, context_column=None,
                           history_len=50).fit(events, items)
    rows = pd.DataFrame({"user_id": ["a"], "item_id": ["i2"], "timestamp": [pd.Timestamp("2026-02-01")]})
    with pytest.raises(DataValidationError, match="timestamp"):
        point_in_time_scores(pipe, events, items, rows.drop(columns="timestamp"))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="snapshots"):
            point_in_time_scores(pipe, events, items, rows, snapshots=bad)
