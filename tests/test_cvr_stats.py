"""Smoothed point-in-time CTR/CVR statistics: shrinkage, no look-ahead, windows and conversion delay."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import ConfigError, DataValidationError
from recsys.features.cvr_stats import ConversionRateStats, beta_strength, point_in_time_counts

T0 = pd.Timestamp("2024-01-01")


def _items(n_items: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"item_id": np.arange(n_items), "category": [f"c{i % 2}" for i in range(n_items)],
                         "brand": [f"b{i % 5}" for i in range(n_items)], "shop": [f"s{i % 4}" for i in range(n_items)]})


def _log(seed: int = 0, n: int = 4000, n_items: int = 40) -> pd.DataFrame:
    """Impressions with clicks (5% on category c0, 20% on c1 on average) and purchases after some clicks."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, n_items, n)
    user = rng.integers(0, 50, n)
    ts = T0 + pd.to_timedelta(np.sort(rng.integers(0, 14 * 86400, n)), unit="s")
    item_rate = np.where(item % 2 == 0, 0.05, 0.2) * rng.uniform(0.5, 1.5, n_items)[item]
    click = rng.random(n) < item_rate
    buy = click & (rng.random(n) < 0.3)
    rows = [pd.DataFrame({"user_id": user, "item_id": item, "timestamp": ts, "event_type": "impression",
                          "media_id": user % 3})]
    for kind, mask, lag in (("click", click, 5), ("purchase", buy, 600)):
        rows.append(pd.DataFrame({"user_id": user[mask], "item_id": item[mask],
                                  "timestamp": ts[mask] + pd.Timedelta(seconds=lag), "event_type": kind,
                                  "media_id": user[mask] % 3}))
    return pd.concat(rows, ignore_index=True).sort_values("timestamp", kind="stable").reset_index(drop=True)


def test_point_in_time_counts_exclude_same_time_and_later():
    keys = np.array([1, 1, 1, 2, 1])
    times = np.array([10, 20, 20, 5, 30])
    got = point_in_time_counts(keys, times, np.array([1, 1, 1, 2, 3]), np.array([20, 21, 100, 5, 50]))
    assert got.tolist() == [1, 3, 4, 0, 0]
    # window [t - 10, t)
    got = point_in_time_counts(keys, times, np.array([1, 1]), np.array([30, 31]), window=10)
    assert got.tolist() == [2, 1]


def test_one_of_one_item_shrinks_toward_its_category_rate():
    items = _items(41)
    ev = _log()
    t_new = ev["timestamp"].max() + pd.Timedelta(seconds=1)
    new = pd.DataFrame({"user_id": [7, 7], "item_id": [40, 40], "timestamp": [t_new, t_new + pd.Timedelta(seconds=2)],
                        "event_type": ["impression", "click"], "media_id": [1, 1]})  # item 40 is in category c0
    stats = ConversionRateStats(keys=("item", "category"), windows=(None,)).fit(pd.concat([ev, new]), items)
    row = pd.DataFrame({"user_id": [7], "item_id": [40], "timestamp": [t_new + pd.Timedelta(hours=1)], "media_id": [1]})
    f = stats.transform(row).iloc[0]
    assert f["item_all_log_imp"] == pytest.approx(np.log1p(1)) and f["item_all_log_clk"] == pytest.approx(np.log1p(1))
    cat = f["category_all_ctr"]
    assert 0.03 < cat < 0.08  # c0 items click about 5%
    # raw rate is 1/1 = 100%; the smoothed rate sits near the category, far from 1
    assert abs(f["item_all_ctr"] - cat) < 0.1 * (1 - cat)
    assert f["item_all_ctr"] > cat  # ... but does move up a little


def test_features_never_use_the_rows_own_or_later_events():
    items, ev = _items(), _log(seed=1)
    rows = ev.loc[ev["event_type"] == "impression"].sample(300, random_state=0)
    stats = ConversionRateStats(windows=("1D", None), conversion_delay="1h").fit(ev, items)
    before = stats.transform(rows)
    # every row's item-impression count equals a brute-force count of strictly earlier impressions
    imp = ev.loc[ev["event_type"] == "impression"]
    brute = [((imp["item_id"] == r.item_id) & (imp["timestamp"] < r.timestamp)).sum() for r in rows.itertuples()]
    np.testing.assert_allclose(np.expm1(before["item_all_log_imp"].to_numpy()), brute, rtol=1e-5)
    # flood the log with impressions, clicks and purchases of the row's own user, item and partner at the
    # row's own time and later: that row's features may not change (checked for a sample of rows)
    for _, r in rows.head(8).iterrows():
        flood = pd.DataFrame([{**r.to_dict(), "event_type": k, "timestamp": r["timestamp"] + pd.Timedelta(seconds=s)}
                              for k in ("impression", "click", "purchase") for s in (0, 0, 1, 7200)])
        again = ConversionRateStats(windows=("1D", None), conversion_delay="1h").fit(ev, items).update(flood)
        pd.testing.assert_frame_equal(before.loc[[r.name]], again.transform(rows.loc[[r.name]]))
    assert before.notna().all().all() and ((before.filter(like="_ctr") >= 0) & (before.filter(like="_ctr") <= 1)).all().all()


def test_conversion_delay_hides_recent_purchases_and_clicks():
    items = _items()
    t = [T0, T0 + pd.Timedelta(seconds=1), T0 + pd.Timedelta(minutes=10)]
    ev = pd.DataFrame({"user_id": 1, "item_id": 3, "timestamp": t, "event_type": ["impression", "click", "purchase"]})
    row = pd.DataFrame({"user_id": [1], "item_id": [3], "timestamp": [T0 + pd.Timedelta(minutes=30)]})
    plain = ConversionRateStats(keys=("item",), windows=(None,)).fit(ev, items).transform(row).iloc[0]
    late = ConversionRateStats(keys=("item",), windows=(None,), conversion_delay="1h").fit(ev, items).transform(row).iloc[0]
    assert plain["item_all_log_buy"] == pytest.approx(np.log1p(1))
    assert late["item_all_log_buy"] == 0.0 and late["item_all_log_clk"] == pytest.approx(np.log1p(1))
    assert late["item_all_cvr"] < plain["item_all_cvr"]


def test_windows_count_only_recent_events():
    items = _items()
    ts = [T0, T0 + pd.Timedelta(days=5), T0 + pd.Timedelta(days=9)]
    ev = pd.DataFrame({"user_id": 1, "item_id": 3, "timestamp": ts, "event_type": "impression", "media_id": 0})
    row = pd.DataFrame({"user_id": [1], "item_id": [3], "timestamp": [T0 + pd.Timedelta(days=10)], "media_id": [0]})
    f = ConversionRateStats(windows=("2D", "7D", None)).fit(ev, items).transform(row).iloc[0]
    assert np.expm1([f["item_2d_log_imp"], f["item_7d_log_imp"], f["item_all_log_imp"]]).round().tolist() == [1, 2, 3]
    assert list(f.index) == ConversionRateStats(windows=("2D", "7D", None)).fit(ev, items).feature_names()


def test_beta_strength_recovers_a_known_prior():
    rng = np.random.default_rng(0)
    p = rng.beta(4, 36, 4000)  # strength 40, mean 0.1
    n = rng.integers(50, 400, 4000)
    s = rng.binomial(n, p)
    assert beta_strength(s, n, bounds=(1, 1e4)) == pytest.approx(40, rel=0.15)
    # identical children: no excess variance -> the upper bound
    assert beta_strength(np.full(100, 10), np.full(100, 100), bounds=(1, 500)) == 500


def test_bad_configuration_and_input_are_clear():
    with pytest.raises(ConfigError, match="window"):
        ConversionRateStats(windows=("soon",)).fit(_log(n=50), _items())
    with pytest.raises(ConfigError, match="unknown keys"):
        ConversionRateStats(keys=("colour",)).fit(_log(n=50), _items())
    stats = ConversionRateStats().fit(_log(n=50), _items())
    with pytest.raises(DataValidationError, match="media_id"):
        stats.transform(pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [T0]}))


def test_count_windows_in_a_key_range_equal_count_also_for_ranges_without_events():
    from recsys.features.cvr_stats import EventIndex

    keys = np.array([3, 3, 5, 12, 12, 12, 40])
    times = np.array([1, 4, 2, 3, 5, 9, 2])
    for big in (0, 2**61):  # dense keys, then keys sparse enough to be compressed into a vocabulary
        idx = EventIndex(keys + big, times)
        assert (idx.key_vocab is not None) == bool(big)
        for lo, hi, query in ((0, 10, [3, 5, 7]), (10, 20, [12, 15]), (20, 40, [21, 39]), (41, 50, [45])):
            q = np.asarray(query) + big
            got = idx.count_windows(q, np.array([6]), [None, 3], (lo + big, hi + big))
            assert [g.tolist() for g in got] == [idx.count(q, np.full(len(q), 6), w).tolist() for w in (None, 3)]
    assert EventIndex(keys, times).count_windows(np.array([3, 5]), np.array([6]), [None], (0, 10))[0].tolist() == [2, 1]
    assert EventIndex(keys, times).count_windows(np.array([25]), np.array([6]), [None], (20, 30))[0].tolist() == [0]
