"""Benefits through the feed: the price after a partner coupon is a ranker feature (frames and arrays alike),
GMV and commission objectives count it, an expired coupon never counts, and a bundle keeps the table."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from recsys.features.benefits import validate_benefits
from tests.test_recommender import fitted, world

MEDIA = "app-0"


@functools.cache
def with_benefits():
    """The shared fitted Recommender recomposed with coupons on the first items of app-0's first user's feed:
    half off now, a second one expired just before ``as_of``, and one for another partner."""
    from recsys.recommender import Recommender

    rec = fitted()
    s = rec._state
    user = w_user()
    feed = rec.recommend(user, k=6, media_id=MEDIA).to_frame()
    items = feed["item_id"].tolist()
    as_of = s.as_of
    price = s.catalogue.price[s.catalogue.index.get_indexer(items)]
    benefits = validate_benefits(pd.DataFrame({
        "media_id": [MEDIA, MEDIA, "kol-0"],
        "item_id": [items[0], items[1], items[2]],
        "amount": [price[0] / 2, price[1] / 2, price[2] / 2],
        "valid_from": [as_of - pd.Timedelta(days=3)] * 3,
        "valid_to": [as_of + pd.Timedelta(days=3), as_of - pd.Timedelta(hours=1), as_of + pd.Timedelta(days=3)]}))
    new = Recommender.from_components(
        pipeline=s.pipeline, model=s.model, items=world().items, events=s.tables["events"], index=None,
        ranker=s.ranker, feature_builder=s.builder, users=s.tables.get("users"), social=s.tables.get("social"),
        media=s.tables.get("media"), media_pools=s.tables.get("media_pools"), benefits=benefits,
        item_embeddings=s.item_emb, max_per_category=2, no_partner="catalogue")
    return new, items, price


def w_user():
    ev = world().events
    return ev.loc[ev["media_id"] == MEDIA, "user_id"].iloc[0]


def test_paid_price_counts_only_valid_benefits_of_the_partner() -> None:
    rec, items, price = with_benefits()
    s = rec._state
    pos = s.catalogue.index.get_indexer(items[:3])
    coupon = world().items.set_index("item_id").loc[items[:3], "coupon"].to_numpy()
    on_media = s.paid_price(pos, np.array([MEDIA] * 3, dtype=object), s.as_of_ns)
    # item 0: half off on app-0 now; item 1: its coupon expired an hour ago; item 2: kol-0's coupon, not app-0's
    np.testing.assert_allclose(on_media, np.maximum(price[:3] - np.maximum(coupon, [price[0] / 2, 0, 0]), 0))
    on_kol = s.paid_price(pos, np.array(["kol-0"] * 3, dtype=object), s.as_of_ns)
    np.testing.assert_allclose(on_kol, np.maximum(price[:3] - np.maximum(coupon, [0, 0, price[2] / 2]), 0))


def test_coupon_feature_in_frames_and_arrays() -> None:
    rec, items, price = with_benefits()
    s = rec._state
    rows = pd.DataFrame({"user_id": [w_user()] * 3, "item_id": items[:3], "timestamp": [s.as_of] * 3,
                         "media_id": [MEDIA] * 3, "two_tower_score": [0.0] * 3, "two_tower_rank": [1.0] * 3})
    frame = s.builder.transform(rows)
    coupon = world().items.set_index("item_id").loc[items[:3], "coupon"].to_numpy()
    # float32 features: compare within float32 rounding
    np.testing.assert_allclose(frame["coupon"].to_numpy(), np.maximum(coupon, [price[0] / 2, 0, 0]), rtol=1e-6)
    cf = s.candidate_features()
    cols = list(s.ranking_columns())
    X = cf.matrix(np.array([w_user()], dtype=object), np.array([MEDIA], dtype=object), np.zeros(3, dtype=np.int64),
                  s.catalogue.index.get_indexer(items[:3]), np.zeros(3), np.ones(3), cols)
    j = cols.index("coupon")
    np.testing.assert_allclose(X[:, j], frame["coupon"].to_numpy(), rtol=1e-6)
    paid = np.log1p(np.maximum(price[:3] - np.maximum(coupon, [price[0] / 2, 0, 0]), 0))
    np.testing.assert_allclose(frame["log_price_paid"].to_numpy(), paid, rtol=1e-6)
    if "log_price_paid" in cols:  # a ranker trained with it (the shared one is; older bundles' are not)
        np.testing.assert_allclose(X[:, cols.index("log_price_paid")], paid, rtol=1e-6)


def test_objective_counts_the_price_after_benefit() -> None:
    rec, items, price = with_benefits()
    feed = rec.recommend(w_user(), k=20, media_id=MEDIA, exclude=items[1:]).to_frame()
    row = feed.loc[feed["item_id"] == items[0]]
    assert len(row) == 1, "the half-price item stays in the feed"
    objective = rec._state.objectives.get(MEDIA, rec._state.config.default_objective)
    rate = rec._state.catalogue.commission_rate[rec._state.catalogue.index.get_loc(items[0])]
    coupon = float(world().items.set_index("item_id").loc[items[0], "coupon"])
    paid = price[0] - max(coupon, price[0] / 2)
    r = row.iloc[0]
    expected = {"commission": r.pctr * r.pcvr * paid * rate, "gmv": r.pctr * r.pcvr * paid,
                "purchases": r.pctr * r.pcvr, "clicks": r.pctr}[objective]
    assert np.isclose(r.score, expected, rtol=1e-6), (objective, r.score, expected)


def test_bundle_keeps_the_benefits(tmp_path) -> None:
    from recsys.recommender import Recommender

    rec, items, _ = with_benefits()
    loaded = Recommender.load(rec.save(tmp_path / "b"))
    assert (tmp_path / "b" / "tables" / "benefits.parquet").is_file()
    pd.testing.assert_frame_equal(loaded._state.tables["benefits"], rec._state.tables["benefits"])
    a = rec.recommend(w_user(), k=10, media_id=MEDIA).to_frame()
    b = loaded.recommend(w_user(), k=10, media_id=MEDIA).to_frame()
    assert a["item_id"].tolist() == b["item_id"].tolist()
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-6)


def test_set_benefits_live_and_refused_tables_change_nothing(tmp_path) -> None:
    import pytest

    from recsys.errors import DataValidationError
    from recsys.recommender import Recommender

    rec, items, price = with_benefits()
    live = Recommender.load(rec.save(tmp_path / "b"))  # its own copy: the shared one stays as it is
    s = live._state
    pos = s.catalogue.index.get_indexer(items[:1])
    media = np.array([MEDIA], dtype=object)
    before = s.paid_price(pos, media, s.as_of_ns)
    with pytest.raises(DataValidationError, match="not in the live catalogue"):
        live.set_benefits(pd.DataFrame({"media_id": [MEDIA], "item_id": ["no-such-item"], "amount": [1.0]}))
    assert live._state is s  # nothing swapped in
    assert live.set_benefits(None) == 0
    coupon = float(world().items.set_index("item_id").loc[items[0], "coupon"])
    after = live._state.paid_price(pos, media, live._state.as_of_ns)
    assert after[0] == pytest.approx(max(price[0] - coupon, 0.0)) and after[0] > before[0]
    feed = live.recommend(w_user(), k=5, media_id=MEDIA).to_frame()
    assert len(feed) == 5


def test_files_source_reads_and_checks_benefits(tmp_path) -> None:
    import pytest

    from recsys.errors import DataValidationError
    from recsys.fit.settings import DataConfig
    from recsys.fit.tables import load_tables

    w = world()
    w.events.head(2_000).to_parquet(tmp_path / "events.parquet")
    w.items.to_parquet(tmp_path / "items.parquet")
    w.benefits.to_csv(tmp_path / "benefits.csv", index=False)
    t = load_tables(DataConfig(source="files", path=str(tmp_path)))
    assert len(t.benefits) == len(w.benefits) and str(t.benefits["valid_to"].dtype) == "datetime64[ns]"
    bad = w.benefits.assign(item_id=-1)
    bad.to_csv(tmp_path / "benefits.csv", index=False)
    with pytest.raises(DataValidationError, match="benefits"):
        load_tables(DataConfig(source="files", path=str(tmp_path)))
