"""Live events (issue 19): ``Recommender.observe`` changes the next feeds without retraining.

On the fixture bundle (tests/fixtures/bundles/v1: 100 users, 100 items, a GBDT ranker, partners with pools):
a purchased item leaves the buyer's feed (no category allows repeat purchases there), the ranker's counts
move by exactly the events observed, an unknown user becomes a known one with that history, a batch with one
bad row changes nothing and names the row and field, the same event applies once, a failed journal append
changes nothing, and observe and recommend run together from threads without an error or a lost event.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recsys
from recsys.errors import DataValidationError

BUNDLE = Path(__file__).resolve().parent / "fixtures" / "bundles" / "v1"
USER, PARTNER = 52, "guide-0"
LATER = pd.Timestamp("2026-01-15 10:00:00")  # after the fixture's serving log ends (2026-01-14 23:45)


@pytest.fixture(scope="module")
def loaded():
    return recsys.load(BUNDLE)


@pytest.fixture
def rec(loaded):
    """A Recommender of its own over the loaded state: observe never mutates a state, it swaps in a new one."""
    out = copy.copy(loaded)
    out.__dict__.pop("_update_lock_", None)
    return out


def _event(user, item, kind="click", ts=LATER, media=PARTNER) -> dict:
    return {"user_id": user, "item_id": item, "timestamp": ts, "event_type": kind, "media_id": media}


def _features(rec, user, item, columns) -> dict[str, float]:
    """The ranker's serving features of (user, item) on PARTNER at the state's ``as_of``."""
    s = rec._state
    pos = s.catalogue.positions([item])
    m = s.candidate_features().matrix(np.array([user], dtype=object), np.array([PARTNER], dtype=object),
                                      np.zeros(1, np.int64), pos, np.zeros(1), np.ones(1), columns)
    return dict(zip(columns, m[0].tolist(), strict=True))


def test_a_purchased_item_leaves_the_buyers_feed(rec):
    before = rec.recommend(USER, k=10, media_id=PARTNER).item_ids
    bought = before[0]
    assert rec.observe([_event(USER, bought, "purchase")]) == 1
    after = rec.recommend(USER, k=10, media_id=PARTNER).item_ids
    assert bought not in after and len(after) == 10
    assert rec._state.catalogue.positions([bought])[0] in rec._state.users.bought(rec._state.users.rows([USER])[0])
    assert rec._state.as_of == LATER + pd.Timedelta(1, "ns")  # the serving time follows the log


def test_counts_behind_the_ranker_features_move_by_the_events(rec):
    item = int(rec._state.catalogue.ids[3])
    cols = ["user_item_log_clicks", "item_all_log_clk", "user_all_log_clk", "item_all_log_buy"]
    before = _features(rec, USER, item, cols)
    events = [_event(USER, item, "click", LATER), _event(USER, item, "click", LATER + pd.Timedelta(1, "s")),
              _event(USER, item, "purchase", LATER + pd.Timedelta(2, "s"))]
    assert rec.observe(pd.DataFrame(events)) == 3
    after = _features(rec, USER, item, cols)

    def count(x: float) -> int:  # features are log1p(count) stored as float32: round back to the count
        return int(round(np.expm1(x)))

    assert count(after["user_item_log_clicks"]) == count(before["user_item_log_clicks"]) + 2
    assert count(after["item_all_log_clk"]) == count(before["item_all_log_clk"]) + 2
    assert count(after["user_all_log_clk"]) == count(before["user_all_log_clk"]) + 2
    assert count(after["item_all_log_buy"]) == count(before["item_all_log_buy"]) + 1


def test_an_unknown_user_becomes_a_known_user_with_that_history(rec):
    new_user = 10_000
    assert new_user not in set(rec._state.users.ids)
    first = rec.recommend(new_user, k=5, media_id=PARTNER)
    assert any("unknown user_id" in n for n in first.notes)
    items = rec._state.catalogue.ids[:3].tolist()
    assert rec.observe([_event(new_user, i, "click", LATER + pd.Timedelta(n, "s")) for n, i in enumerate(items)]) == 3
    feed = rec.recommend(new_user, k=5, media_id=PARTNER)
    assert not any("unknown user_id" in n for n in feed.notes)
    row = rec._state.users.rows([new_user])[0]
    assert row >= 0 and rec._state.users.has_history[row]
    history = rec._state.users.history_items(row)  # what the user tower reads: the clicks, oldest first
    assert history.tolist() == rec._state.pipeline.items_.transform(np.asarray(items)).tolist()
    assert new_user in rec.audience(PARTNER).tolist()


@pytest.mark.parametrize("bad, match", [
    ({"event_type": "buy"}, r"events row 1: event_type 'buy' is not one of"),
    ({"item_id": 99_999}, r"events row 1: item_id 99999 is not in the catalogue"),
    ({"media_id": "guide-9"}, r"events row 1: media_id 'guide-9' is not a known partner"),
    ({"user_id": "someone"}, r"events row 1: user_id 'someone' is not an integer id"),
    ({"timestamp": "not a time"}, r"column 'timestamp'"),
])
def test_a_batch_with_one_bad_row_changes_nothing_and_names_the_field(rec, bad, match):
    state = rec._state
    feed = rec.recommend(USER, k=10, media_id=PARTNER).item_ids
    batch = [_event(USER, feed[0], "purchase"), {**_event(USER, feed[1]), **bad}]
    with pytest.raises(DataValidationError, match=match):
        rec.observe(batch)
    assert rec._state is state  # nothing swapped in, nothing half-applied
    assert rec.recommend(USER, k=10, media_id=PARTNER).item_ids == feed


def test_the_same_event_applies_once(rec):
    item = int(rec._state.catalogue.ids[5])
    n_log = len(rec._state.tables["events"])
    assert rec.observe([_event(USER, item)]) == 1
    state = rec._state
    assert rec.observe([_event(USER, item)]) == 0  # already in the serving log: skipped
    assert rec._state is state and len(state.tables["events"]) == n_log + 1


def test_a_failed_journal_append_changes_nothing(rec):
    class BrokenJournal:
        def append(self, events):
            raise OSError("disk full")

    state = rec._state
    with pytest.raises(OSError, match="disk full"):
        rec.observe([_event(USER, int(state.catalogue.ids[0]), "purchase")], journal=BrokenJournal())
    assert rec._state is state


def test_concurrent_observe_and_recommend_never_error_and_lose_no_event(rec):
    items = rec._state.catalogue.ids[:40].tolist()
    n_log = len(rec._state.tables["events"])
    errors: list[BaseException] = []
    done = threading.Event()
    reads = [0]

    def observer(user: int) -> None:
        try:
            for b in range(4):
                batch = [_event(user, items[(b * 5 + j) % 40], "click", LATER + pd.Timedelta(b * 10 + j, "s"))
                         for j in range(5)]
                assert rec.observe(batch) == 5
        except BaseException as e:  # collected: the test thread reports it
            errors.append(e)

    def reader(user: int) -> None:
        try:
            while not done.is_set():
                assert len(rec.recommend(user, k=10, media_id=PARTNER).item_ids) == 10
                reads[0] += 1
        except BaseException as e:
            errors.append(e)

    writers = [threading.Thread(target=observer, args=(u,)) for u in (USER, 20_000)]
    readers = [threading.Thread(target=reader, args=(u,)) for u in (USER, 7, 20_000)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    done.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors[:3]
    assert reads[0] > 0
    assert len(rec._state.tables["events"]) == n_log + 2 * 4 * 5  # linearizable: no batch lost


def _batches(rec, seed: int = 0) -> list[pd.DataFrame]:
    """Five batches in time order after the log's end: known and new users, every event type, both partners."""
    rng = np.random.default_rng(seed)
    s = rec._state
    items = s.catalogue.to_frame(False)["item_id"].to_numpy()
    users = np.r_[s.users.ids.to_numpy()[:40], [900001, 900002, 900003]]
    out = []
    for b in range(5):
        n = 25
        out.append(pd.DataFrame({
            "user_id": users[rng.integers(len(users), size=n)], "item_id": items[rng.integers(len(items), size=n)],
            "timestamp": [LATER + pd.Timedelta(b, "h") + pd.Timedelta(int(x), "min") for x in np.sort(
                rng.integers(0, 50, n))],
            "event_type": rng.choice(["impression", "click", "cart", "fav", "purchase"], n, p=[.5, .2, .1, .1, .1]),
            "media_id": rng.choice([PARTNER, "app-0"], n)}))
    return out


def test_batches_applied_one_by_one_equal_a_refit_on_the_same_log(rec):
    """observe grows the counts, priors, user rows and partner histories by each batch alone
    (recsys/features/live_counts.py, recsys/feed/live_users.py); the result equals rebuilding them all from
    the grown serving log: counts exactly, rates within float rounding (the priors' sums run in another order)."""
    import scipy.sparse as sp

    from recsys.feed import partners
    from recsys.feed.state import builder_events, builder_items
    from recsys.feed.users import UserState

    base = rec._state.builder
    for batch in _batches(rec):
        assert rec.observe(batch) == len(batch)
    s = rec._state
    # grown, not refitted: the fitted sorted arrays are shared and only a delta holds the new events
    assert s.builder._own["clicks"].sorted is base._own["clicks"].sorted and s.builder._own["clicks"]._delta
    assert s.builder.stats_._index[("item", "impression")].sorted is base.stats_._index[("item", "impression")].sorted
    log = s.tables["events"]
    users = UserState(s.pipeline, log, s.tables.get("users"), s.catalogue, segment_column=s.config.segment_column)
    assert users.ids.equals(s.users.ids) and (users.segments == s.users.segments).all()
    for name in ("history", "purchases"):
        a, b = getattr(s.users, name), getattr(users, name)
        assert a.shape == b.shape and (a.indptr == b.indptr).all() and (a.indices == b.indices).all() \
            and (a.data == b.data).all() and isinstance(a, sp.csr_matrix), name
    assert all((s.users.feats[k] == users.feats[k]).all() for k in users.feats)
    fresh = copy.copy(s)
    fresh.partner_log = None
    got, want = s.partner_log[2][1], partners._log(fresh)[1]
    assert (got["keys"] == want["keys"]).all() and (got["items"] == want["items"]).all()

    refit = type(s.builder)(**(s.builder_params or {})).fit(builder_events(log), builder_items(
        s.catalogue.to_frame(False)), s.tables.get("social"))
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"user_id": np.r_[users.ids.to_numpy()[rng.integers(len(users.ids), size=400)], 900001],
                         "item_id": s.catalogue.ids[rng.integers(len(s.catalogue.ids), size=401)],
                         "timestamp": [LATER + pd.Timedelta(int(x), "min") for x in rng.integers(-600, 600, 401)],
                         "media_id": rng.choice([PARTNER, "app-0"], 401)})
    a, b = s.builder.transform(rows), refit.transform(rows)
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        if not pd.api.types.is_numeric_dtype(a[c]):
            continue
        if c.endswith(("_ctr", "_cvr")):  # rates: the same counts through priors summed in another order
            np.testing.assert_allclose(a[c], b[c], rtol=1e-5, atol=1e-7, err_msg=c)
        else:  # counts (log1p of an integer), stages, prices: the same computation on the same integers
            assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
    assert s.builder.stats_.global_ctr_ == refit.stats_.global_ctr_  # from the same integer totals
    for key, rates in refit.stats_.strength_.items():
        for r, want in rates.items():
            assert s.builder.stats_.strength_[key][r]["pooled"] == pytest.approx(want["pooled"], rel=1e-9)
            assert sorted(s.builder.stats_.strength_[key][r]["groups"].values()) == pytest.approx(
                sorted(want["groups"].values()), rel=1e-9)


def test_an_event_on_an_item_added_after_training_serves_that_users_feed(rec):
    """The item is outside the two-tower's vocabulary: the user's history holds the vocabulary's unknown row,
    which names no catalogue item (reasons skip it) instead of failing the request."""
    row = rec._state.catalogue.to_frame(False).iloc[[0]].assign(item_id=990001)
    rec.add_items(row)
    assert rec.observe([_event(USER, 990001, "click")]) == 1
    feed = rec.recommend(USER, k=10, media_id=PARTNER)
    assert len(feed.item_ids) == 10


@pytest.mark.parametrize("scale", [1, 2**50])  # dense keys, and keys sparse enough to be stored compressed
def test_an_extended_event_index_counts_what_one_built_at_once_counts(scale):
    from recsys.features.event_index import EventIndex

    rng = np.random.default_rng(3)
    keys, times = rng.integers(0, 50, 20_000) * scale, rng.integers(0, 1_000, 20_000)
    whole = EventIndex(keys, times)
    grown = EventIndex(keys[:2_000], times[:2_000])
    first = grown
    for a in range(2_000, 20_000, 900):  # deltas, and merges once a delta outgrows 4096 pairs
        grown = grown.extended(keys[a:a + 900], times[a:a + 900])
    assert len(grown) == 20_000 and len(first) == 2_000  # the index extended is left as it was
    q, qt = rng.integers(0, 52, 500) * scale, rng.integers(0, 1_100, 500)
    for window in (None, 50, 0):
        assert (grown.count(q, qt, window) == whole.count(q, qt, window)).all()
    one = [grown.count_windows(np.array([3, 4]) * scale, np.array([700]), [None, 50], r) for r in (None, (3 * scale, 5 * scale))]
    want = whole.count_windows(np.array([3, 4]) * scale, np.array([700]), [None, 50])
    assert all((a == b).all() for got in one for a, b in zip(got, want, strict=True))
