"""The ranker benchmark on the synthetic affiliate world (see :mod:`recsys.bench.ranker`).

Impressions time split (last 20% of events tested); every model of the zoo plus an "oracle" row (the
probabilities that generated the test impressions, the ceiling), a leakage check, and the expected
value per 1,000 impressions when each model re-ranks sampled test requests, valued with the world's
true probabilities; a replay on the logged test sessions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.bench.ranker_common import OUT_DIR, Meter, _fit_and_score, _oracle_row, _zoo
from recsys.errors import LeakageError


def _synthetic(n_events: int, quick: bool, seed: int = 0, plot_dir: Path | None = OUT_DIR) -> dict:
    from recsys.datasets.synthetic import generate_world
    from recsys.features.ranking_features import check_feature_leakage

    result: dict = {"data": "synthetic", "n_events": n_events}
    with Meter() as gen:
        world = generate_world(n_events, seed=seed, progress=False)
    result["world"] = {k: v for k, v in world.summary().items() if not isinstance(v, dict)}
    train_ev, test_ev, cut, rows_tr, rows_te = _impressions(world, seed)
    with Meter() as feat:
        builder, X_tr, X_te = _features(world, train_ev, test_ev, rows_tr, rows_te)
    print(f"synthetic {n_events:,}: features {X_tr.shape} train, {X_te.shape} test in {feat.seconds:.0f}s", flush=True)
    result.update({"generate": gen.as_dict(), "features": {**feat.as_dict(), "columns": X_tr.shape[1],
                   "train_rows": len(X_tr), "test_rows": len(X_te)}, "split_time": str(cut)})
    y_tr, y_te = rows_tr[["click", "purchase"]], rows_te[["click", "purchase"]]
    result["leakage_check"] = _leakage_demo(X_tr, y_tr, check_feature_leakage)
    groups = {"user_id": rows_te["user_id"].to_numpy(), "media_id": rows_te["media_id"].to_numpy()}
    truth = _truth_rates(world, rows_te)
    result["test_truth"] = _test_truth(world, truth, y_te, rows_tr)
    result["models"] = {"oracle": _oracle_row(truth, y_te, groups)}  # the ceiling: the generating probabilities
    models = {}
    for name, factory in _zoo(quick, builder.stats_.feature_names(), ablation=n_events <= 2_000_000).items():
        result["models"][name], models[name] = _fit_and_score(name, factory, X_tr, y_tr, X_te, y_te, groups, truth)
    del X_tr
    result["logged_value"] = _logged_value(world, models, X_te, rows_te, seed=seed)
    result["value"] = _value_per_mille(world, builder, models, rows_te, n_requests=300 if quick else 2000, seed=seed)
    if plot_dir is not None:
        _plots(models, X_te, y_te, n_events, Path(plot_dir))
    return result


def _impressions(world, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp, pd.DataFrame, pd.DataFrame]:
    """Train and test events (time split, last 20% tested), the split time, and their labelled impressions."""
    from recsys.datasets.splits import check_time_leakage, time_split
    from recsys.features.ranking_features import impression_labels

    train_ev, test_ev = time_split(world.events, test_fraction=0.2)
    cut = test_ev["timestamp"].min()
    rows_tr, rows_te = impression_labels(train_ev), impression_labels(test_ev)
    max_train = 3_000_000
    if len(rows_tr) > max_train:  # bound memory at 10M events: a uniform sample, kept in time order
        keep = np.sort(np.random.default_rng(seed).choice(len(rows_tr), max_train, replace=False))
        rows_tr = rows_tr.iloc[keep].reset_index(drop=True)
    check_time_leakage(rows_tr, cut)
    return train_ev, test_ev, cut, rows_tr, rows_te


def _features(world, train_ev, test_ev, rows_tr: pd.DataFrame, rows_te: pd.DataFrame):
    """The feature builder fitted on the train events, and the point-in-time features of both impressions."""
    from recsys.features.ranking_features import RankingFeatureBuilder

    builder = RankingFeatureBuilder(windows=("1D", "7D", None)).fit(train_ev, world.items, world.social)
    X_tr = _chunked(builder, rows_tr)
    builder.update(test_ev)
    return builder, X_tr, _chunked(builder, rows_te)


def _test_truth(world, truth: dict, y_te: pd.DataFrame, rows_tr: pd.DataFrame) -> dict:
    """Observed and true rates of the test period and of the rankers' calibration slice."""
    cal = rows_tr.iloc[len(rows_tr) - int(round(0.2 * len(rows_tr))):]  # the rankers' calibration slice
    return {"ctr": float(truth["click"].mean()), "ctcvr": float(truth["purchase"].mean()),
            "observed_ctr": float(y_te["click"].mean()), "observed_ctcvr": float(y_te["purchase"].mean()),
            "purchases": int(y_te["purchase"].sum()), "expected_purchases": float(truth["purchase"].sum()),
            "calibration_slice_ctcvr": float(_truth_rates(world, cal)["purchase"].mean()),
            "calibration_slice_observed_ctcvr": float(cal["purchase"].mean()),
            "calibration_slice_purchases": int(cal["purchase"].sum())}


def _truth_rates(world, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """True P(click), P(purchase | click) and P(click and purchase) of logged impressions (repeats damped)."""
    from recsys.datasets.synthetic_truth import logged_impression_probabilities

    click, cvr = logged_impression_probabilities(world.truth, rows, world.events)
    return {"click": click, "cvr": cvr, "purchase": click * cvr}


def _chunked(builder, rows: pd.DataFrame, size: int = 1_000_000) -> pd.DataFrame:
    parts = [builder.transform(rows.iloc[s:s + size]) for s in range(0, len(rows), size)]
    frame = pd.concat(parts) if len(parts) > 1 else parts[0]
    for col in ("user_id", "item_id", "category", "brand", "shop", "media_id"):  # concat drops categories
        if col in frame.columns and not isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = pd.Categorical(frame[col].to_numpy())
    return frame


def _leakage_demo(X: pd.DataFrame, y: pd.DataFrame, check) -> dict:
    """The check passes the honest frame and fails a label copy and a post-event column."""
    out = {}
    dwell = y["click"].to_numpy() * np.random.default_rng(0).uniform(1, 120, len(y))
    for case, frame in (("honest features", X), ("+ label column 'click'", X.assign(click=y["click"].to_numpy())),
                        ("+ post-event 'dwell_seconds'", X.assign(dwell_seconds=dwell))):
        try:
            check(frame, y)
            out[case] = "passed"
        except LeakageError as exc:
            out[case] = "LeakageError: " + str(exc).split("\n")[0][:300]
    return out


def _requests(world, rows_te: pd.DataFrame, n: int, n_cand: int, seed: int) -> pd.DataFrame:
    """Sampled test requests (a user opening a partner's feed) with ``n_cand`` eligible candidates each."""
    rng = np.random.default_rng(seed)
    starts = rows_te.loc[rows_te["position"] == 0, ["user_id", "media_id", "timestamp"]]
    starts = starts.iloc[np.sort(rng.choice(len(starts), min(n, len(starts)), replace=False))]
    items = world.items
    vip_user = set(world.users.loc[world.users["segment"] == "vip", "user_id"])
    pools = world.media_pools.groupby("media_id")["item_id"].apply(np.asarray).to_dict()
    avail = items.set_index("item_id")["available_from"]
    ok_item = items.set_index("item_id")["in_stock"].astype(bool) & (items.set_index("item_id")["eligibility"] != "vip")
    out = []
    for r, (u, m, t) in enumerate(starts.itertuples(index=False)):
        pool = pools[m]
        pool = pool[(avail.reindex(pool).to_numpy() <= t) & (ok_item.reindex(pool).to_numpy() | (u in vip_user))]
        cand = rng.choice(pool, min(n_cand, len(pool)), replace=False)
        out.append(pd.DataFrame({"request": r, "user_id": u, "item_id": cand, "timestamp": t, "media_id": m}))
    return pd.concat(out, ignore_index=True)


def _value_per_mille(world, builder, models: dict, rows_te, *, n_requests: int, seed: int, k: int = 10) -> dict:
    """Expected clicks / purchases / GMV / commission per 1,000 impressions when each model fills K slots."""
    from recsys.models.rankers.objectives import partner_objectives, score_rows, top_k_per_group

    req = _requests(world, rows_te, n_requests, 50, seed)
    feats = builder.transform(req)
    items = world.items.set_index("item_id")
    req["price"] = items["price"].reindex(req["item_id"]).to_numpy()
    req["commission_rate"] = items["commission_rate"].reindex(req["item_id"]).to_numpy()
    truth = world.truth
    u, i, m = req["user_id"].to_numpy(), req["item_id"].to_numpy(), req["media_id"].to_numpy()
    policies: dict[str, np.ndarray] = {"random": np.random.default_rng(seed).random(len(req)),
                                       "oracle-commission": truth.expected_value(u, i, "commission", media=m)}
    per_partner = partner_objectives(world.media)
    for name, model in models.items():
        if name.endswith("-no-cvr"):
            continue
        preds = model.predict_proba(feats)
        for obj in ("clicks", "commission"):
            policies[f"{name} / {obj}"] = score_rows(preds, req, obj)
        if name in ("gbdt", "esmm"):
            for obj in ("purchases", "gmv"):
                policies[f"{name} / {obj}"] = score_rows(preds, req, obj)
            policies[f"{name} / per-partner"] = score_rows(preds, req, per_partner)
    out = {"requests": int(req["request"].nunique()), "candidates_per_request": 50, "k": k, "policies": {}}
    for name, score in policies.items():
        shown = top_k_per_group(req["request"].to_numpy(), score, k)
        sub = req.loc[shown].assign(score=score[shown])
        sub["position"] = sub.groupby("request")["score"].rank(ascending=False, method="first").to_numpy() - 1
        su, si, sm, pos = (sub[c].to_numpy() for c in ("user_id", "item_id", "media_id", "position"))
        out["policies"][name] = {
            f"{v}_per_1000": round(1000 * float(truth.expected_value(su, si, v, position=pos, media=sm).mean()), 4)
            for v in ("clicks", "purchases", "gmv", "commission")}
    return out


def _logged_value(world, models: dict, X_te: pd.DataFrame, rows_te: pd.DataFrame, *, seed: int, k: int = 3) -> dict:
    """Replay on logged test sessions that hold a purchase: re-rank each session's shown items and measure
    the share of its purchased commission in the top ``k`` (``recsys.evaluation.expected_commission_at_k``)."""
    import scipy.sparse as sp

    from recsys.evaluation import expected_commission_at_k
    from recsys.models.rankers.objectives import score_rows, top_k_per_group

    order = np.lexsort((rows_te["timestamp"].to_numpy(), rows_te["media_id"].astype(str).to_numpy(),
                        rows_te["user_id"].to_numpy()))
    r = rows_te.iloc[order]
    new = (r["position"].to_numpy() == 0) | (r["user_id"].to_numpy() != np.roll(r["user_id"].to_numpy(), 1)) | (
        r["media_id"].to_numpy() != np.roll(r["media_id"].to_numpy(), 1))
    session = pd.Series(np.cumsum(new), index=r.index).reindex(rows_te.index).to_numpy()
    bought = np.unique(session[rows_te["purchase"].to_numpy() == 1])
    keep = np.isin(session, bought)
    rows, X, sess = rows_te.loc[keep], X_te.loc[keep], pd.factorize(session[keep])[0]
    items = world.items.set_index("item_id")
    price = items["price"].reindex(np.arange(len(items))).to_numpy()
    rate = items["commission_rate"].reindex(np.arange(len(items))).to_numpy()
    rows = rows.assign(price=price[rows["item_id"].to_numpy()], commission_rate=rate[rows["item_id"].to_numpy()])
    n_s = int(sess.max()) + 1 if len(sess) else 0
    buys = rows["purchase"].to_numpy() == 1
    test = sp.csr_matrix((np.ones(int(buys.sum())), (sess[buys], rows["item_id"].to_numpy()[buys])), shape=(n_s, len(items)))
    policies = {"random": np.random.default_rng(seed).random(len(rows))}
    for name, model in models.items():
        if not name.endswith("-no-cvr"):
            preds = model.predict_proba(X)
            for obj in ("clicks", "commission"):
                policies[f"{name} / {obj}"] = score_rows(preds, rows, obj)
    out = {"sessions": n_s, "k": k, "policies": {}}
    for name, score in policies.items():
        top = top_k_per_group(sess, score, k)
        recs = np.full((n_s, k), -1, dtype=np.int64)
        sub = pd.DataFrame({"s": sess[top], "i": rows["item_id"].to_numpy()[top], "v": score[top]})
        sub = sub.sort_values(["s", "v"], ascending=[True, False])
        slot = sub.groupby("s").cumcount().to_numpy()
        recs[sub["s"].to_numpy(), slot] = sub["i"].to_numpy()
        m = expected_commission_at_k(recs, test, k, commission_rate=rate, price=price)
        out["policies"][name] = {f"commission_share@{k}": round(m[f"commission_share@{k}"], 4)}
    return out


def _plots(models: dict, X_te, y_te, n_events: int, plot_dir: Path) -> None:
    from recsys.evaluation import calibration, reliability_plot

    for name in ("gbdt", "esmm"):
        if name in models:
            p = models[name].predict_proba(X_te)["pctr"].to_numpy()
            cal = calibration(y_te["click"].to_numpy(), p, n_bins=10, strategy="quantile")
            reliability_plot(cal, plot_dir / f"reliability_synthetic_{n_events}_{name}_ctr.png",
                             title=f"{name} pCTR, synthetic {n_events:,} events (test)")
