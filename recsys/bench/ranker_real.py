"""The ranker benchmark on real samples: which carted Taobao items get bought, and Ali-CCP's splits.

See :mod:`recsys.bench.ranker` for the entry point.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.bench.ranker_common import Meter, _zoo

PUBLISHED = {"ali-ccp": {"esmm_cvr_auc_paper": 0.6856, "esmm_cvr_auc_reruns": [0.63, 0.67],
                         "source": "Ma et al., SIGIR 2018 (ESMM), full Ali-CCP release; later re-runs 0.63-0.67"}}


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
