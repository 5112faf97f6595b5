"""Ranker benchmark: both rankers against baselines on the synthetic world, real Taobao carts and Ali-CCP.

``run_ranker_benchmark(data, data_dir=None, json_path=None, n_events=1_000_000)`` returns a dict and
writes ``experiments/ranker/results_<data>[_<n>].json`` plus ``experiments/ranker/README.md`` (tables of
every results file present). One file on purpose: the three datasets share the model zoo, the
timing/memory meter and the report.

- ``synthetic``: impressions of the affiliate world, time split (last 20% of events tested). GBDT,
  ESMM (and ESMM + ESCM2-IPS), LightGBM on the same features, and a popularity-and-price baseline
  (item's smoothed CTR/CVR; price and commission enter through the objective). CTR AUC on
  impressions, CVR AUC on clicks, CTCVR AUC, GAUC by user and partner, LogLoss, ECE (also for an "oracle"
  row: the probabilities that generated the test impressions, the ceiling), an ablation
  without the CVR statistics, a leakage check, and expected commission per 1,000 impressions when
  each model re-ranks sampled test requests by each objective (valued with the world's true
  probabilities).
- ``taobao-multibehavior``: which carted items get bought (real users); see :mod:`._taobao_rows`.
- ``ali-ccp``: the loader's splits (the shared 100/50/50-row sample, or a full release folder).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, LeakageError
from recsys.models.rankers.base import CalibratedRanker, numeric_matrix, resolve_columns

OUT_DIR = Path("experiments/ranker")
DATASETS = ("synthetic", "taobao-multibehavior", "ali-ccp")
PUBLISHED = {"ali-ccp": {"esmm_cvr_auc_paper": 0.6856, "esmm_cvr_auc_reruns": [0.63, 0.67],
                         "source": "Ma et al., SIGIR 2018 (ESMM), full Ali-CCP release; later re-runs 0.63-0.67"}}


# ---------------------------------------------------------------------------------------------- helpers
class Meter:
    """Wall time and peak resident memory (sampled every 20 ms) of a block of work."""

    def __enter__(self) -> Meter:
        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 2), "peak_rss_mib": round(self.peak / 2**20, 1),
                "rss_growth_mib": round((self.peak - self.base) / 2**20, 1)}


class PopularityPriceRanker(CalibratedRanker):
    """Baseline: the item's smoothed all-time CTR and CTCVR (no personalisation), calibrated; price and
    commission rate enter through the objective."""

    kind = "popularity-price"

    def __init__(self, *, ctr: str = "item_all_ctr", cvr: str = "item_all_cvr", calibration: str = "platt",
                 calibration_fraction: float = 0.2) -> None:
        self.ctr, self.cvr = ctr, cvr
        self.calibration, self.calibration_fraction, self.check_leakage = calibration, calibration_fraction, False

    def _fit_raw(self, frame, click, purchase) -> None:
        pass

    def _predict_raw(self, frame):
        pctr = frame[self.ctr].to_numpy(np.float64)
        return pctr, pctr * frame[self.cvr].to_numpy(np.float64)


class LightGBMRanker(CalibratedRanker):
    """LightGBM per target on the same numeric features as the GBDT ranker (benchmark reference only)."""

    kind = "lightgbm"

    def __init__(self, *, n_estimators: int = 200, exclude=(), calibration_fraction: float = 0.2, seed: int = 0):
        self.n_estimators, self.exclude, self.seed = n_estimators, exclude, seed
        self.calibration, self.calibration_fraction, self.check_leakage = "platt", calibration_fraction, True

    def _fit_one(self, X, y):
        import lightgbm as lgb

        if y.min() == y.max():
            return float(y.mean())
        rng = np.random.default_rng(self.seed)
        val = rng.random(len(y)) < 0.1
        model = lgb.LGBMClassifier(n_estimators=self.n_estimators, learning_rate=0.1, num_leaves=31,
                                   min_child_samples=50, reg_lambda=1.0, n_jobs=1, random_state=self.seed, verbose=-1)
        import inspect

        held = ({"eval_X": (X[val],), "eval_y": (y[val],)} if "eval_X" in inspect.signature(model.fit).parameters
                else {"eval_set": [(X[val], y[val])]})  # lightgbm >= 4.7 renamed eval_set
        model.fit(X[~val], y[~val], callbacks=[lgb.early_stopping(10, verbose=False)], **held)
        return model

    def _fit_raw(self, frame, click, purchase) -> None:
        _, numeric = resolve_columns(frame, None)
        self.columns_ = [c for c in numeric if c not in set(self.exclude)]
        X = numeric_matrix(frame, self.columns_)
        self.ctr_, self.cvr_ = self._fit_one(X, click), self._fit_one(X[click > 0], purchase[click > 0])

    def _predict_raw(self, frame):
        X = numeric_matrix(frame, self.columns_)
        p = [np.full(len(X), m) if isinstance(m, float) else m.predict_proba(X)[:, 1] for m in (self.ctr_, self.cvr_)]
        return p[0], p[0] * p[1]


def _zoo(quick: bool, cvr_columns: list[str], ablation: bool) -> dict[str, Callable[[], CalibratedRanker]]:
    """Model name -> factory. ``quick`` shrinks everything (tests, smoke runs)."""
    from recsys.models.rankers.esmm import ESMMRanker
    from recsys.models.rankers.gbdt import GBDTRanker

    g = {"max_iter": 30, "max_leaf_nodes": 15} if quick else {}
    e = ({"epochs": 1, "hidden": (32,), "embedding_dim": 8} if quick else
         {"epochs": 1, "hidden": (128, 64), "embedding_dim": 16, "learning_rate": 2e-3})
    zoo: dict[str, Callable[[], CalibratedRanker]] = {
        "popularity-price": PopularityPriceRanker,
        "gbdt": lambda: GBDTRanker(num_threads=1, **g),
        "esmm": lambda: ESMMRanker(num_threads=1, batch_size=2048, **e),
        "esmm+ips": lambda: ESMMRanker(num_threads=1, batch_size=2048, ips_weight=0.5, **e),
    }
    try:
        import lightgbm  # noqa: F401

        zoo["lightgbm"] = lambda: LightGBMRanker(n_estimators=30 if quick else 200)
    except ImportError:
        warnings.warn("lightgbm is not installed (pip install lightgbm); its row is skipped.", stacklevel=2)
    if ablation:
        zoo["gbdt-no-cvr"] = lambda: GBDTRanker(num_threads=1, exclude=cvr_columns, **g)
        zoo["esmm-no-cvr"] = lambda: ESMMRanker(num_threads=1, batch_size=2048, exclude=cvr_columns, **e)
    return zoo


def _score(p: pd.DataFrame, y_te, groups: dict, truth: dict | None) -> dict:
    """AUCs, LogLoss, ECE and mean prediction over observed (and over truth) of pctr / pcvr / pctcvr."""
    from recsys.evaluation import conversion_metrics

    frame = pd.DataFrame({"click": y_te["click"].to_numpy(), "purchase": y_te["purchase"].to_numpy(),
                          "pctr": p["pctr"].to_numpy(), "pcvr": p["pcvr"].to_numpy(), **groups})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = conversion_metrics(frame, group_cols=tuple(groups))
    clicks, buys = max(frame["click"].mean(), 1e-12), max(frame["purchase"].mean(), 1e-12)
    m.update({"ctr_pred_over_observed": float(p["pctr"].mean() / clicks),
              "ctcvr_pred_over_observed": float(p["pctcvr"].mean() / buys),
              "ctcvr_pred_over_observed_95": ratio_interval(float(p["pctcvr"].sum()), int(frame["purchase"].sum()))})
    if truth is not None:  # synthetic: the generating probabilities, free of label noise
        m.update({"ctr_pred_over_truth": float(p["pctr"].mean() / truth["click"].mean()),
                  "ctcvr_pred_over_truth": float(p["pctcvr"].mean() / truth["purchase"].mean())})
    return m


def ratio_interval(predicted: float, observed: int, level: float = 0.95) -> list[float]:
    """Interval for predicted / expected count given ``observed`` events (exact Poisson, Garwood).

    Observed purchases are a Poisson draw around what the test period's true probabilities expect, so
    predicted / observed carries that noise: with 344 purchases the 95% interval spans about +-11%. A
    model is consistent with calibration when its interval covers 1.
    """
    from scipy.stats import chi2

    if observed < 0 or predicted < 0:
        raise ConfigError(f"ratio_interval needs non-negative counts, got predicted={predicted}, observed={observed}.")
    tail = (1.0 - level) / 2
    lo = chi2.ppf(tail, 2 * observed) / 2 if observed > 0 else 0.0
    hi = chi2.ppf(1 - tail, 2 * observed + 2) / 2
    return [round(float(predicted / hi), 4), round(float(predicted / lo), 4) if lo > 0 else float("inf")]


def _oracle_row(truth: dict, y_te, groups: dict) -> dict:
    """The generating probabilities scored like a model: the AUC ceiling, and the label noise of pred/obs."""
    p = pd.DataFrame({"pctr": truth["click"], "pcvr": truth["cvr"], "pctcvr": truth["purchase"]})
    m = _score(p, y_te, groups, truth)
    print(f"  {'oracle':18s} CTR AUC {m['ctr_auc']:.4f}  CVR AUC {m['cvr_auc']:.4f}  CTCVR AUC {m['ctcvr_auc']:.4f}  "
          f"pCTCVR/obs {m['ctcvr_pred_over_observed']:.3f}", flush=True)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in m.items()}


def _fit_and_score(name, factory, X_tr, y_tr, X_te, y_te, groups, truth=None) -> tuple[dict, CalibratedRanker]:
    with Meter() as fit:
        model = factory().fit(X_tr, y_tr)
    with Meter() as pred:
        p = model.predict_proba(X_te)
    m = _score(p, y_te, groups, truth)
    m.update({"train": fit.as_dict(), "predict": pred.as_dict(),
              "params": model._params() if hasattr(model, "_params") else {}})
    print(f"  {name:18s} CTR AUC {m['ctr_auc']:.4f}  CVR AUC {m['cvr_auc']:.4f}  CTCVR AUC {m['ctcvr_auc']:.4f}  "
          f"pCTCVR/obs {m['ctcvr_pred_over_observed']:.3f}  fit {fit.seconds:.1f}s", flush=True)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in m.items()}, model


def _machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


# ---------------------------------------------------------------------------------------------- synthetic
def _synthetic(n_events: int, quick: bool, seed: int = 0, plot_dir: Path | None = OUT_DIR) -> dict:
    from recsys.datasets.splits import check_time_leakage, time_split
    from recsys.datasets.synthetic import generate_world
    from recsys.features.ranking_features import (
        RankingFeatureBuilder,
        check_feature_leakage,
        impression_labels,
    )

    result: dict = {"data": "synthetic", "n_events": n_events}
    with Meter() as gen:
        world = generate_world(n_events, seed=seed, progress=False)
    result["world"] = {k: v for k, v in world.summary().items() if not isinstance(v, dict)}
    train_ev, test_ev = time_split(world.events, test_fraction=0.2)
    cut = test_ev["timestamp"].min()
    rows_tr, rows_te = impression_labels(train_ev), impression_labels(test_ev)
    max_train = 3_000_000
    if len(rows_tr) > max_train:  # bound memory at 10M events: a uniform sample, kept in time order
        keep = np.sort(np.random.default_rng(seed).choice(len(rows_tr), max_train, replace=False))
        rows_tr = rows_tr.iloc[keep].reset_index(drop=True)
    check_time_leakage(rows_tr, cut)
    with Meter() as feat:
        builder = RankingFeatureBuilder(windows=("1D", "7D", None)).fit(train_ev, world.items, world.social)
        X_tr = _chunked(builder, rows_tr)
        builder.update(test_ev)
        X_te = _chunked(builder, rows_te)
    print(f"synthetic {n_events:,}: features {X_tr.shape} train, {X_te.shape} test in {feat.seconds:.0f}s", flush=True)
    result.update({"generate": gen.as_dict(), "features": {**feat.as_dict(), "columns": X_tr.shape[1],
                   "train_rows": len(X_tr), "test_rows": len(X_te)}, "split_time": str(cut)})
    y_tr, y_te = rows_tr[["click", "purchase"]], rows_te[["click", "purchase"]]
    result["leakage_check"] = _leakage_demo(X_tr, y_tr, check_feature_leakage)
    cvr_cols = builder.stats_.feature_names()
    groups = {"user_id": rows_te["user_id"].to_numpy(), "media_id": rows_te["media_id"].to_numpy()}
    truth = _truth_rates(world, rows_te)
    cal = rows_tr.iloc[len(rows_tr) - int(round(0.2 * len(rows_tr))):]  # the rankers' calibration slice
    result["test_truth"] = {"ctr": float(truth["click"].mean()), "ctcvr": float(truth["purchase"].mean()),
                            "observed_ctr": float(y_te["click"].mean()), "observed_ctcvr": float(y_te["purchase"].mean()),
                            "purchases": int(y_te["purchase"].sum()), "expected_purchases": float(truth["purchase"].sum()),
                            "calibration_slice_ctcvr": float(_truth_rates(world, cal)["purchase"].mean()),
                            "calibration_slice_observed_ctcvr": float(cal["purchase"].mean()),
                            "calibration_slice_purchases": int(cal["purchase"].sum())}
    result["models"] = {"oracle": _oracle_row(truth, y_te, groups)}  # the ceiling: the generating probabilities
    models = {}
    for name, factory in _zoo(quick, cvr_cols, ablation=n_events <= 2_000_000).items():
        result["models"][name], models[name] = _fit_and_score(name, factory, X_tr, y_tr, X_te, y_te, groups, truth)
    del X_tr
    result["logged_value"] = _logged_value(world, models, X_te, rows_te, seed=seed)
    result["value"] = _value_per_mille(world, builder, models, rows_te, n_requests=300 if quick else 2000, seed=seed)
    if plot_dir is not None:
        _plots(models, X_te, y_te, n_events, Path(plot_dir))
    return result


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


# ---------------------------------------------------------------------------------------------- taobao carts
def _taobao_rows(data, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows are carted (user, item) pairs; the data has no timestamps, so carted pairs are split at random
    into a history half H and a target half T. Counts and smoothed cart->purchase rates per user and per
    item come from H (and from purchases never carted), so no row's own label enters its features.
    Train: T's pairs, label = bought in train (buy.txt). Test: carted pairs not bought in train, label =
    the user's held-out test purchase; a test pair that lies in H drops its own cart from the counts."""
    from recsys.features.cvr_stats import beta_strength

    cart = data.cart[["user_id", "item_id"]].drop_duplicates().reset_index(drop=True)
    key = pd.MultiIndex.from_frame(cart)
    bought = key.isin(pd.MultiIndex.from_frame(data.train[["user_id", "item_id"]]))
    cart["in_train"] = bought.astype(np.int8)
    cart["in_test"] = key.isin(pd.MultiIndex.from_frame(data.test[["user_id", "item_id"]])).astype(np.int8)
    cart["history"] = np.random.default_rng(seed).random(len(cart)) < 0.5
    buys = data.train[["user_id", "item_id"]].drop_duplicates()
    uncarted = buys.loc[~pd.MultiIndex.from_frame(buys).isin(key)]
    hist = cart.loc[cart["history"]]
    stats = {}
    for side in ("user_id", "item_id"):
        g = hist.groupby(side)
        stats[side] = pd.DataFrame({"carts": g.size(), "cart_buys": g["in_train"].sum(),
                                    "uncarted_buys": uncarted.groupby(side).size()}).fillna(0.0)

    def frame(rows: pd.DataFrame) -> pd.DataFrame:
        own = rows["history"].to_numpy().astype(float)  # a test pair in H: drop its own (unbought) cart
        cols = {}
        for side, short in (("user_id", "user"), ("item_id", "item")):
            s = stats[side].reindex(rows[side].to_numpy()).fillna(0.0)
            carts, cart_buys = s["carts"].to_numpy() - own, s["cart_buys"].to_numpy()
            st = stats[side]
            p = st["cart_buys"].sum() / max(st["carts"].sum(), 1.0)
            m = beta_strength(st["cart_buys"].to_numpy(), st["carts"].to_numpy(), bounds=(2.0, 1000.0))
            cols.update({f"{short}_log_carts": np.log1p(carts), f"{short}_log_cart_buys": np.log1p(cart_buys),
                         f"{short}_log_uncarted_buys": np.log1p(s["uncarted_buys"].to_numpy()),
                         f"{short}_cart_cvr": (cart_buys + m * p) / (carts + m)})
        out = pd.DataFrame(cols, index=rows.index).astype(np.float32)
        out["user_id"] = pd.Categorical(rows["user_id"].to_numpy())
        out["item_id"] = pd.Categorical(rows["item_id"].to_numpy())
        return out

    train = cart.loc[~cart["history"]].sample(frac=1.0, random_state=seed)  # random calibration slice
    test = cart.loc[cart["in_train"] == 0]
    X_tr, X_te = frame(train), frame(test)
    X_tr["_label"], X_te["_label"] = train["in_train"].to_numpy(), test["in_test"].to_numpy()
    return X_tr, X_te


def _taobao(data_dir: Path, quick: bool) -> dict:
    from recsys.datasets.taobao import load_taobao_multibehavior
    from recsys.evaluation import auc, gauc

    data = load_taobao_multibehavior(data_dir)
    X_tr, X_te = _taobao_rows(data)
    y_tr = pd.DataFrame({"click": 1, "purchase": X_tr.pop("_label")})
    y_te = pd.DataFrame({"click": 1, "purchase": X_te.pop("_label")})
    result = {"data": "taobao-multibehavior", "data_dir": str(data_dir), "stats": data.stats(),
              "train_rows": len(X_tr), "train_positive_rate": round(float(y_tr["purchase"].mean()), 4),
              "test_rows": len(X_te), "test_positives": int(y_te["purchase"].sum()), "models": {}}
    users = X_te["user_id"].to_numpy()
    zoo = {k: v for k, v in _zoo(quick, [], ablation=False).items() if k in ("gbdt", "esmm", "lightgbm")}
    scores = {"random": np.random.default_rng(0).random(len(X_te)),
              "item-popularity": X_te["item_log_cart_buys"].to_numpy() + X_te["item_log_uncarted_buys"].to_numpy(),
              "item-cart-cvr": X_te["item_cart_cvr"].to_numpy()}
    for name, factory in zoo.items():
        with Meter() as fit:
            model = factory().fit(X_tr, y_tr)
        scores[name] = model.predict_proba(X_te)["pcvr"].to_numpy()
        result["models"][name] = {"train": fit.as_dict()}
        print(f"  {name:18s} fit {fit.seconds:.1f}s", flush=True)
    y = y_te["purchase"].to_numpy()
    for name, s in scores.items():
        row = result["models"].setdefault(name, {})
        row.update({"auc": round(auc(y, s), 4), "gauc_user": round(gauc(y, s, users), 4)})
        row.update({f"hit_rate@{k}": round(_hit_rate(users, s, y, k), 4) for k in (1, 3, 5)})
    return result


def _hit_rate(users: np.ndarray, scores: np.ndarray, y: np.ndarray, k: int) -> float:
    """Share of users with a purchased carted item whose top-k carted items (by score) include one."""
    from recsys.models.rankers.objectives import top_k_per_group

    top = top_k_per_group(users, scores, k)
    hit = pd.Series(y * top).groupby(users).max()
    has = pd.Series(y).groupby(users).max()
    return float(hit[has > 0].mean())


# ---------------------------------------------------------------------------------------------- ali-ccp
def _ali_ccp(data_dir: Path, quick: bool, max_rows: int | None) -> dict:
    from recsys.datasets.ali_ccp import DENSE_COLUMNS, SPARSE_FIELDS, load_ali_ccp
    from recsys.evaluation import conversion_metrics

    splits = load_ali_ccp(data_dir, max_rows=max_rows)
    train = pd.concat([splits["train"], splits["val"]], ignore_index=True) if "val" in splits else splits["train"]
    test = splits["test"]
    counts = {f: train[f].value_counts() for f in SPARSE_FIELDS}
    def frame(df: pd.DataFrame) -> pd.DataFrame:
        out = df[list(DENSE_COLUMNS)].astype(np.float32)
        for f in SPARSE_FIELDS:  # ids for ESMM's embeddings, their train frequency for the trees
            out[f"log_count_{f}"] = np.log1p(counts[f].reindex(df[f].to_numpy()).fillna(0).to_numpy()).astype(np.float32)
            out[f"id_{f}"] = pd.Categorical(df[f].to_numpy())
        return out
    X_tr, X_te = frame(train), frame(test)
    y_tr, y_te = train[["click", "purchase"]], test[["click", "purchase"]]
    result = {"data": "ali-ccp", "data_dir": str(data_dir), "splits": {k: len(v) for k, v in splits.items()},
              "train_clicks": int(y_tr["click"].sum()), "train_purchases": int(y_tr["purchase"].sum()),
              "test_clicks": int(y_te["click"].sum()), "test_purchases": int(y_te["purchase"].sum()),
              "published": PUBLISHED["ali-ccp"], "models": {}}
    small = len(X_tr) < 10_000
    zoo = {k: v for k, v in _zoo(quick or small, [], ablation=False).items() if k in ("gbdt", "esmm", "lightgbm")}
    for name, factory in zoo.items():
        with Meter() as fit, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = factory().fit(X_tr, y_tr)
            p = model.predict_proba(X_te)
            m = conversion_metrics(pd.DataFrame({**y_te.reset_index(drop=True), "pctr": p["pctr"].to_numpy(),
                                                 "pcvr": p["pcvr"].to_numpy()}), group_cols=())
        result["models"][name] = {**{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()},
                                  "train": fit.as_dict()}
    if small:
        result["note"] = ("the shared sample has only a few clicks and purchases per split: its AUCs are noise and "
                          "the run only shows the pipeline end to end; point --data-dir at the full release to "
                          "compare with the published CVR AUC.")
    return result


# ---------------------------------------------------------------------------------------------- entry points
def _default_dir(data: str) -> Path:
    from recsys.datasets.paths import require_shared

    return require_shared({"taobao-multibehavior": "multibehavior/taobao", "ali-ccp": "ranking/ali-ccp"}[data])


def run_ranker_benchmark(data: str = "synthetic", data_dir: str | Path | None = None,
                         json_path: str | Path | None = None, n_events: int = 1_000_000, *, quick: bool = False,
                         out_dir: str | Path | None = OUT_DIR) -> dict:
    """Run one dataset's ranker benchmark; write its JSON (and the README of all results) under ``out_dir``.

    ``n_events`` sizes the synthetic world, or caps the rows per split read from a full Ali-CCP release.
    ``quick`` shrinks models and samples for smoke tests.
    """
    if data not in DATASETS:
        raise ConfigError(f"--data {data!r} is unknown; choose from {list(DATASETS)}.")
    command = f"recsys benchmark ranker --data {data}" + (f" --data-dir {data_dir}" if data_dir else "")
    if data == "synthetic" and n_events != 1_000_000:
        command = f"python -m recsys.bench.ranker --data synthetic --n-events {n_events}"
    with Meter() as total:
        if data == "synthetic":
            result = _synthetic(int(n_events), quick, plot_dir=out_dir)
        elif data == "taobao-multibehavior":
            result = _taobao(Path(data_dir) if data_dir else _default_dir(data), quick)
        else:
            max_rows = None if n_events == 1_000_000 else int(n_events)  # the default size means "all rows"
            result = _ali_ccp(Path(data_dir) if data_dir else _default_dir(data), quick, max_rows)
    result = {"benchmark": "ranker", "command": command, "machine": _machine(), "quick": quick, **result,
              "total": total.as_dict()}
    text = json.dumps(result, indent=2, default=str) + "\n"
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        suffix = f"_{n_events}" if data == "synthetic" else ""
        (out / f"results_{data}{suffix}.json").write_text(text)
        (out / "README.md").write_text(render_readme(out))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text)
    return result


# ---------------------------------------------------------------------------------------------- report
def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def render_readme(out_dir: Path) -> str:
    """Markdown tables of every results_*.json in ``out_dir`` (after NOTES.md, when present)."""
    lines = ["# Ranker benchmark", "", "Made by `recsys/bench/ranker.py`; every table below names the command that "
             "produced it. Timings are on a shared 2-core machine (load average at start in each JSON), one "
             "thread per model. This file is regenerated by each run; the commentary lives in NOTES.md.", ""]
    notes = Path(out_dir) / "NOTES.md"
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    for path in sorted(Path(out_dir).glob("results_*.json")):
        r = json.loads(path.read_text())
        lines += [f"## {r['data']}" + (f", {r['n_events']:,} events" if r["data"] == "synthetic" else ""), "",
                  f"Command: `{r['command']}` → `{path.name}`" + (" (quick mode)" if r.get("quick") else ""),
                  f"Load average at start: {r['machine']['load_average_at_start']}; total {r['total']['seconds']} s.", ""]
        lines += {"synthetic": _md_synthetic, "taobao-multibehavior": _md_taobao, "ali-ccp": _md_ali}[r["data"]](r)
    return "\n".join(lines) + "\n"


def _md_synthetic(r: dict) -> list[str]:
    f = r["features"]
    out = [f"World: {r['world']['events']:,} events, {r['world']['users']:,} users, {r['world']['items']:,} items, "
           f"CTR {r['world']['ctr']:.4f}, purchases/click {r['world']['purchase_per_click']:.4f}. Time split at "
           f"{r['split_time']}; {f['train_rows']:,} train / {f['test_rows']:,} test impressions, {f['columns']} "
           f"feature columns built point-in-time in {f['seconds']} s (peak RSS {f['peak_rss_mib']} MiB).", "",
           "| model | CTR AUC | CVR AUC (clicks) | CTCVR AUC | CTR GAUC user | CTR GAUC partner | CTR LogLoss "
           "| CTR ECE | pCTR/obs | pCTR/truth | pCTCVR/obs (95%) | pCTCVR/truth | fit s | fit peak RSS MiB | fit RSS growth MiB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in r["models"].items():
        out.append(f"| {name} | {_fmt(m['ctr_auc'])} | {_fmt(m['cvr_auc'])} | {_fmt(m['ctcvr_auc'])} "
                   f"| {_fmt(m.get('ctr_gauc_user_id'))} | {_fmt(m.get('ctr_gauc_media_id'))} "
                   f"| {_fmt(m['ctr_logloss'])} | {_fmt(m['ctr_ece'])} | {_fmt(m['ctr_pred_over_observed'], 3)} "
                   f"| {_fmt(m.get('ctr_pred_over_truth'), 3)} | {_fmt(m['ctcvr_pred_over_observed'], 3)}{_ci(m)} "
                   f"| {_fmt(m.get('ctcvr_pred_over_truth'), 3)} | {m.get('train', {}).get('seconds', '–')} "
                   f"| {m.get('train', {}).get('peak_rss_mib', '–')} | {m.get('train', {}).get('rss_growth_mib', '–')} |")
    tt = r.get("test_truth", {})
    if tt:
        out += ["", f"Test impressions: observed CTR {tt['observed_ctr']:.4f} (true mean {tt['ctr']:.4f}), observed "
                f"CTCVR {tt['observed_ctcvr']:.5f} (true mean {tt['ctcvr']:.5f}"
                + (f"; {tt['purchases']} purchases where the truth expects {tt['expected_purchases']:.0f}" if "purchases"
                   in tt else "")
                + ("" if "calibration_slice_ctcvr" in tt else "; measured before repeat purchases were damped in "
                   "the truth, so it overstates CTCVR by a few percent") + "). \"/obs\" compares mean "
                "prediction with the observed rate, \"/truth\" with the generating probabilities (no label noise)"
                + ("; the oracle row scores those probabilities themselves, so its AUCs are the ceiling and its /obs "
                   "is the label noise of the test period." if "oracle" in r["models"] else ".")
                + (" The interval after pCTCVR/obs is its 95% interval from that Poisson noise (exact, on the test "
                   "period's purchase count): a calibrated model's interval covers 1 in 95% of worlds, so where the oracle's "
                   "does not, this test period is one of the other 5%." if "purchases" in tt else "")]
        if "calibration_slice_ctcvr" in tt:
            out[-1] += (f" The rankers' calibration slice (last 20% of training impressions) holds "
                        f"{tt['calibration_slice_purchases']} purchases: observed CTCVR "
                        f"{tt['calibration_slice_observed_ctcvr']:.5f}, true {tt['calibration_slice_ctcvr']:.5f}.")
    v = r["value"]
    out += ["", f"Re-ranking {v['requests']:,} sampled test requests ({v['candidates_per_request']} eligible "
            f"candidates each, top {v['k']} shown), valued with the world's true probabilities at the shown "
            "position (expected value per 1,000 impressions):", "",
            "| policy (model / objective) | clicks | purchases | GMV | commission |", "|---|---:|---:|---:|---:|"]
    for name, p in v["policies"].items():
        out.append(f"| {name} | {p['clicks_per_1000']:.2f} | {p['purchases_per_1000']:.3f} | {p['gmv_per_1000']:.2f} "
                   f"| {p['commission_per_1000']:.3f} |")
    lv = r.get("logged_value")
    if lv:
        out += ["", f"Replay on the {lv['sessions']:,} logged test sessions that hold a purchase: each session's shown "
                f"items re-ranked, share of its purchased commission in the top {lv['k']} "
                "(`recsys.evaluation.expected_commission_at_k`; few sessions, so noisy):", "",
                f"| policy | commission share@{lv['k']} |", "|---|---:|"]
        key = f"commission_share@{lv['k']}"
        out += [f"| {n} | {p[key]:.4f} |" for n, p in lv["policies"].items()]
    out += ["", "Leakage check (`check_feature_leakage`, run by every ranker's fit):", ""]
    out += [f"- {case}: {res}" for case, res in r["leakage_check"].items()]
    return out + [""]


def _ci(m: dict) -> str:
    ci = m.get("ctcvr_pred_over_observed_95")
    return f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci else ""


def _md_taobao(r: dict) -> list[str]:
    out = [f"Which carted items get bought: {r['train_rows']:,} carted pairs to train on (bought in train: "
           f"{r['train_positive_rate']:.2%}; features from the other, history half of the carted pairs), "
           f"{r['test_rows']:,} carted-not-yet-bought pairs to rank, {r['test_positives']:,} of them the user's "
           "held-out purchase.", "",
           "| model | AUC | GAUC user | hit@1 | hit@3 | hit@5 | fit s | fit peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in r["models"].items():
        t = m.get("train", {})
        out.append(f"| {name} | {m['auc']:.4f} | {m['gauc_user']:.4f} | {m['hit_rate@1']:.4f} | {m['hit_rate@3']:.4f} "
                   f"| {m['hit_rate@5']:.4f} | {t.get('seconds', '–')} | {t.get('peak_rss_mib', '–')} |")
    return out + ["", "hit@K: share of users whose held-out purchase is among their carted items and lands in "
                  "their top K carted items by the model's score.", ""]


def _md_ali(r: dict) -> list[str]:
    out = [f"Splits {r['splits']}; train clicks {r['train_clicks']}, purchases {r['train_purchases']}; test clicks "
           f"{r['test_clicks']}, purchases {r['test_purchases']}.", "",
           "| model | CTR AUC | CVR AUC | CTCVR AUC | fit s | fit peak RSS MiB |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in r["models"].items():
        out.append(f"| {name} | {_fmt(m.get('ctr_auc'))} | {_fmt(m.get('cvr_auc'))} | {_fmt(m.get('ctcvr_auc'))} "
                   f"| {m['train']['seconds']} | {m['train']['peak_rss_mib']} |")
    p = r["published"]
    out += ["", f"Published reference on the full release: ESMM CVR AUC {p['esmm_cvr_auc_paper']} ({p['source']})."]
    if r.get("note"):
        out += ["", f"Note: {r['note']}"]
    return out + [""]


def main(argv: list[str] | None = None) -> None:
    """``python -m recsys.bench.ranker --data synthetic --n-events 10000000``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", choices=DATASETS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--n-events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run_ranker_benchmark(args.data, data_dir=args.data_dir, json_path=args.json_path, n_events=args.n_events,
                         quick=args.quick)
    print((OUT_DIR / "README.md").read_text())


if __name__ == "__main__":
    main()
