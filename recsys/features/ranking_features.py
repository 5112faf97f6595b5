"""The ranker's feature frame, built point-in-time so training rows and live requests share one code path.

:class:`RankingFeatureBuilder` turns rows (user_id, item_id, timestamp, media_id) into features from
the event log strictly before each row's time:

- smoothed CTR/CVR statistics and counts (:class:`~recsys.features.cvr_stats.ConversionRateStats`);
- the item's price, commission rate, coupon (the largest of its own and the partner benefits valid at the row's
  time, :mod:`recsys.features.benefits`), the price paid after it and the commission an order would pay;
- the two-tower retrieval score and rank, when the rows carry ``two_tower_score`` / ``two_tower_rank``, and the
  item-to-item channel's score when they carry ``item_to_item_score`` (:mod:`recsys.feed.item_score`);
- the user's own earlier clicks and purchases of the same item (repeat purchases behave differently);
- friends' clicks and purchases of the item in a recent window (social edges, both directions; or
  the friends a request lists, see :meth:`RankingFeatureBuilder.listed_friends_counts`);
- the user's lifecycle stage for the item's brand (AIPL): 0 none, 1 awareness (saw it), 2 interest
  (clicked, carted or faved), 3 purchase (bought once), 4 loyalty (bought twice or more);
- the id columns (user, item, category, brand, shop, media) as pandas categoricals for rankers that
  embed ids.

:func:`impression_labels` turns an events log with ``impression_id`` into one row per impression
with its click/purchase labels, and :func:`check_feature_leakage` refuses feature frames that carry
a label or a post-event column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError, LeakageError
from recsys.features.benefits import BenefitTable, with_benefits
from recsys.features.cvr_stats import KEY_ORDER, ConversionRateStats, EventIndex, _ns
from recsys.features.parted import PartedFrame

ID_COLUMNS = ("user_id", "item_id", "category", "brand", "shop", "media_id")
STAGES = ("none", "awareness", "interest", "purchase", "loyalty")
_LABEL_NAME = re.compile(r"^(is_|has_|y_)?(click|clicked|purchase|purchased|buy|bought|label|target|y|"
                         r"converted|conversion|ctcvr)s?$")


class RankingFeatureBuilder:
    """Builds the ranker's feature frame; ``include_cvr=False`` drops the CVR statistics (ablation)."""

    def __init__(self, *, windows: Sequence[str | None] = ("1D", "7D", None), conversion_delay: str | None = None,
                 cvr_keys: Sequence[str] = KEY_ORDER, friend_window: str | None = "7D", include_cvr: bool = True,
                 include_ids: bool = True) -> None:
        self.windows = windows
        self.conversion_delay = conversion_delay
        self.cvr_keys = cvr_keys
        self.friend_window = friend_window
        self.include_cvr = include_cvr
        self.include_ids = include_ids

    def fit(self, events: pd.DataFrame, items: pd.DataFrame, social: pd.DataFrame | None = None,
            benefits: pd.DataFrame | None = None) -> RankingFeatureBuilder:
        """Index the event log (and social edges) and fit the CVR priors; ``benefits`` (a validated benefits table,
        :mod:`recsys.features.benefits`): each row's ``coupon`` is the largest of the item's own coupon and the
        partner benefits valid at the row's time."""
        need = {"item_id", "category", "brand", "shop", "price", "commission_rate"}
        if not need <= set(items.columns):
            raise DataValidationError(f"items lack column(s) {sorted(need - set(items.columns))}; validate them "
                                      "with recsys.features.schema.validate_items.")
        self.items_ = items.set_index("item_id")
        self.benefits_ = None if benefits is None or not len(benefits) else \
            BenefitTable.build(benefits, self.items_.index, strict=False)
        self.stats_ = ConversionRateStats(keys=self.cvr_keys, windows=self.windows,
                                          conversion_delay=self.conversion_delay).fit(events, items)
        self._delay = 0 if self.conversion_delay is None else int(pd.Timedelta(self.conversion_delay).value)
        self.social_ = None
        if social is not None and len(social):
            both = pd.concat([social[["user_id", "friend_id"]],
                              social.rename(columns={"user_id": "friend_id", "friend_id": "user_id"})[
                                  ["user_id", "friend_id"]]], ignore_index=True)
            self.social_ = both.drop_duplicates(ignore_index=True)
        self._events = events[["user_id", "item_id", "timestamp", "event_type"]]
        self._index()
        return self

    _events = PartedFrame("_event_parts")  # the indexed events; live batches are appended as parts

    def update(self, events: pd.DataFrame) -> RankingFeatureBuilder:
        """Append newly logged events (serving: keep features current without refitting priors)."""
        self.stats_.update(events)
        self._events = pd.concat([self._events, events[["user_id", "item_id", "timestamp", "event_type"]]],
                                 ignore_index=True)
        self._index()
        return self

    def _index(self) -> None:
        ev = self._events
        kind = ev["event_type"].astype(str).to_numpy()
        t = _ns(ev["timestamp"])
        t_buy = t + self._delay
        users = ev["user_id"] if self.social_ is None else pd.concat([ev["user_id"], self.social_["user_id"]],
                                                                     ignore_index=True)
        self._users = pd.Index(pd.unique(users))  # social-graph users without events get codes of their own
        self._brands = pd.Index(pd.unique(self.items_["brand"]))
        # every catalogue item has a code (not only those with events), so user x item keys
        # (user * (items + 1) + item) stay put as live events arrive (recsys/features/live_counts.py)
        self._items_ix = pd.Index(pd.unique(pd.concat([ev["item_id"], self.items_.index.to_series()],
                                                      ignore_index=True)))
        ub = self._user_brand(ev)
        self._stage = {
            "seen": EventIndex(ub[kind == "impression"], t[kind == "impression"]),
            "engaged": EventIndex(ub[np.isin(kind, ("click", "cart", "fav"))], t[np.isin(kind, ("click", "cart", "fav"))]),
            "bought": EventIndex(ub[kind == "purchase"], t_buy[kind == "purchase"]),
        }
        ui = self._user_item(ev)
        self._own = {"clicks": EventIndex(ui[kind == "click"], t[kind == "click"]),
                     "purchases": EventIndex(ui[kind == "purchase"], t_buy[kind == "purchase"])}
        self._friends = {}
        if self.social_ is not None:
            for name, kinds, times in (("clicks", ("click",), t), ("purchases", ("purchase",), t_buy)):
                m = np.isin(kind, kinds)
                acts = pd.DataFrame({"friend_id": ev["user_id"].to_numpy()[m], "item_id": ev["item_id"].to_numpy()[m],
                                     "t": times[m]})
                joined = acts.merge(self.social_, on="friend_id", how="inner")
                self._friends[name] = EventIndex(self._user_item(joined), joined["t"].to_numpy())

    def _user_code(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's user code; users with neither events nor social edges get ``len(self._users)``, a code
        under which no index holds anything (every user an index stores has a code of its own), so an unknown
        user never inherits another user's history or friends."""
        u = self._users.get_indexer(frame["user_id"].to_numpy())
        return np.where(u < 0, len(self._users), u).astype(np.int64)

    def _user_brand(self, frame: pd.DataFrame) -> np.ndarray:
        brand = self.items_["brand"].reindex(frame["item_id"].to_numpy()).to_numpy()
        b = self._brands.get_indexer(brand)
        b = np.where(b < 0, len(self._brands), b)
        return self._user_code(frame) * np.int64(len(self._brands) + 1) + b

    def _user_item(self, frame: pd.DataFrame) -> np.ndarray:
        i = self._items_ix.get_indexer(frame["item_id"].to_numpy())
        i = np.where(i < 0, len(self._items_ix), i)
        return self._user_code(frame) * np.int64(len(self._items_ix) + 1) + i

    def listed_friends_counts(self, friends: Sequence[Sequence | None], item_ix: np.ndarray, t: np.ndarray
                              ) -> dict[str, np.ndarray]:
        """Friends' clicks and purchases per row from the friends a request lists instead of the social graph.

        ``friends[i]``: row i's friends (user ids; None or empty: none), ``item_ix``: its item codes in
        ``self._items_ix``, ``t``: its time (int64 ns). Counts each listed friend's own events with the item in
        ``friend_window`` before ``t`` -- what the graph gives a user with exactly these friends.
        """
        lists = [list(dict.fromkeys(f)) if f is not None else [] for f in friends]
        row = np.repeat(np.arange(len(lists)), [len(f) for f in lists]).astype(np.int64)
        fid = pd.Index(np.asarray([u for f in lists for u in f], dtype=object))
        code = self._users.get_indexer(fid) if len(fid) else np.zeros(0, np.int64)
        row, code = row[code >= 0], code[code >= 0]  # a friend with no events adds nothing
        keys = code.astype(np.int64) * np.int64(len(self._items_ix) + 1) + np.asarray(item_ix, np.int64)[row]
        window = None if self.friend_window is None else int(pd.Timedelta(self.friend_window).value)
        t_rows = np.broadcast_to(np.asarray(t, np.int64), (len(lists),))[row]
        return {name: np.bincount(row, weights=self._own[name].count(keys, t_rows, window), minlength=len(lists))
                for name in self._friends}

    def transform(self, rows: pd.DataFrame, *, friends: Sequence[Sequence | None] | None = None) -> pd.DataFrame:
        """Feature frame for rows (user_id, item_id, timestamp[, media_id, two_tower_score, two_tower_rank,
        item_to_item_score]).

        ``friends`` (optional, one entry per row): the friends a request lists; a row with a list (even an empty
        one) takes its friends' features from that list instead of the social graph, None keeps the graph's.
        Used only when the builder was fitted with social edges (otherwise there are no friends' features).
        """
        self._check_rows(rows)
        t = _ns(rows["timestamp"])
        item = self.items_.reindex(rows["item_id"].to_numpy())
        cols = _item_columns(rows, item)
        if getattr(self, "benefits_", None) is not None:
            cols = with_benefits(cols, self.benefits_, self.items_.index.get_indexer(rows["item_id"].to_numpy()),
                                 rows["media_id"].to_numpy(dtype=object) if "media_id" in rows.columns else None, t)
        cols.update(self._friend_columns(rows, t, friends))
        cols.update(self._history_columns(rows, t))
        out = pd.DataFrame({k: np.asarray(v, dtype=np.float32) for k, v in cols.items()}, index=rows.index)
        if self.include_cvr:
            out = pd.concat([out, self.stats_.transform(rows)], axis=1)
        if self.include_ids:
            _add_id_columns(out, rows, item)
        return out

    def _check_rows(self, rows: pd.DataFrame) -> None:
        if not hasattr(self, "stats_"):
            raise DataValidationError("RankingFeatureBuilder.transform called before fit(events, items).")
        for col in ("user_id", "item_id", "timestamp"):
            if col not in rows.columns:
                raise DataValidationError(f"rows lack '{col}'; each row to rank needs user_id, item_id, timestamp "
                                          "(and media_id when the log has partners).")

    def _friend_columns(self, rows: pd.DataFrame, t: np.ndarray, friends: Sequence[Sequence | None] | None
                        ) -> dict[str, np.ndarray]:
        """Friends' clicks and purchases of each row's item (log1p), from the graph or from the listed friends."""
        cols: dict[str, np.ndarray] = {}
        for name, index in self._friends.items():
            window = None if self.friend_window is None else int(pd.Timedelta(self.friend_window).value)
            cols[f"friends_{name}"] = np.log1p(index.count(self._user_item(rows), t, window))
        if friends is not None and self._friends:
            if len(friends) != len(rows):
                raise DataValidationError(f"friends has {len(friends)} entries for {len(rows)} rows; pass one list "
                                          "(or None) per row.")
            listed = np.flatnonzero([f is not None for f in friends])
            item_ix = self._items_ix.get_indexer(rows["item_id"].to_numpy()[listed])
            counts = self.listed_friends_counts([friends[i] for i in listed],
                                                np.where(item_ix < 0, len(self._items_ix), item_ix), t[listed])
            for name, c in counts.items():
                cols[f"friends_{name}"][listed] = np.log1p(c)
        return cols

    def _history_columns(self, rows: pd.DataFrame, t: np.ndarray) -> dict[str, np.ndarray]:
        """The user's own history with the item (repeat purchases) and with its brand (stage of the journey)."""
        cols: dict[str, np.ndarray] = {}
        ui = self._user_item(rows)
        for name, index in self._own.items():  # the user's own history with this very item (repeat purchases)
            cols[f"user_item_log_{name}"] = np.log1p(index.count(ui, t))
        ub = self._user_brand(rows)
        seen, engaged = self._stage["seen"].count(ub, t), self._stage["engaged"].count(ub, t)
        bought = self._stage["bought"].count(ub, t)
        cols["brand_stage"] = np.select([bought >= 2, bought == 1, engaged > 0, seen > 0], [4, 3, 2, 1], 0)
        cols["user_brand_log_seen"] = np.log1p(seen)
        return cols


def _item_columns(rows: pd.DataFrame, item: pd.DataFrame) -> dict[str, np.ndarray]:
    """Price, commission and coupon of each row's item, and the retrieval score and rank when rows carry them."""
    price = item["price"].to_numpy(dtype=np.float64)
    rate = item["commission_rate"].to_numpy(dtype=np.float64)
    coupon = item["coupon"].to_numpy(dtype=np.float64) if "coupon" in item.columns else np.zeros(len(rows))
    cols: dict[str, np.ndarray] = {
        "price": price, "log_price": np.log1p(price), "commission_rate": rate,
        "log_commission_value": np.log1p(price * rate), "coupon": coupon,
        "coupon_share": np.where(price > 0, coupon / np.maximum(price, 1e-9), 0.0),
        "log_price_paid": np.log1p(np.maximum(price - coupon, 0.0)),  # what the buyer pays after the coupon
    }
    for col in ("two_tower_score", "two_tower_rank", "item_to_item_score"):  # given by the caller when it has them
        if col in rows.columns:
            cols[col] = rows[col].to_numpy(dtype=np.float64)
    return cols


def _add_id_columns(out: pd.DataFrame, rows: pd.DataFrame, item: pd.DataFrame) -> None:
    """Categorical ids (user, item, category, brand, shop, media partner) for models that embed them."""
    ids = {"user_id": rows["user_id"], "item_id": rows["item_id"], "category": item["category"].to_numpy(),
           "brand": item["brand"].to_numpy(), "shop": item["shop"].to_numpy()}
    if "media_id" in rows.columns:
        ids["media_id"] = rows["media_id"]
    for k, v in ids.items():
        out[k] = pd.Categorical(np.asarray(v))


def impression_labels(events: pd.DataFrame) -> pd.DataFrame:
    """One row per impression with ``click`` and ``purchase`` (0/1) from events linked by ``impression_id``.

    A purchase counts only when its impression was also clicked (attribution: impression -> click ->
    purchase). Rows keep the impression's columns and come back in time order.
    """
    if "impression_id" not in events.columns:
        raise DataValidationError("events lack 'impression_id', which links each click and purchase to the "
                                  "impression it followed; without it impressions cannot be labelled.")
    kind = events["event_type"].astype(str)
    imp = events.loc[(kind == "impression").to_numpy()].copy()
    clicked = pd.Index(events.loc[(kind == "click").to_numpy(), "impression_id"].unique())
    bought = pd.Index(events.loc[(kind == "purchase").to_numpy(), "impression_id"].unique())
    imp["click"] = imp["impression_id"].isin(clicked).astype(np.int8)
    imp["purchase"] = (imp["impression_id"].isin(bought) & (imp["click"] == 1)).astype(np.int8)
    return imp.sort_values("timestamp", kind="stable").reset_index(drop=True)


def check_feature_leakage(frame: pd.DataFrame, labels: Mapping[str, np.ndarray] | pd.DataFrame, *,
                          threshold: float = 0.99, max_rows: int = 20_000, seed: int = 0) -> None:
    """Raise :class:`LeakageError` if a feature column is (or nearly is) a label, or is a timestamp.

    Three checks: a column named like a label (``click``, ``is_purchase``, ``label``...); a datetime
    column (times are not features, and a time after the impression is post-event information); and
    a column that on its own separates click on impressions or purchase on clicks with AUC >= ``threshold``
    (or <= 1 - threshold) — no honest pre-impression feature does, a label copy or a post-event
    measurement (dwell time, order value) does.
    """
    from recsys.evaluation import check_labels_not_in_features

    check_labels_not_in_features([str(c) for c in frame.columns], ["click", "purchase"])
    named = [c for c in frame.columns if _LABEL_NAME.match(str(c).lower())]
    if named:
        raise LeakageError(f"feature column(s) {named} look like labels; remove labels from the feature frame "
                           "and pass them as `labels` instead.")
    times = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c].dtype)]
    if times:
        raise LeakageError(f"feature column(s) {times} are timestamps; drop them (features must be computed "
                           "point-in-time, e.g. with RankingFeatureBuilder, not carry event times).")
    n = len(frame)
    take = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False)) if n > max_rows else np.arange(n)
    sub = frame.iloc[take]
    click = np.asarray(labels["click"])[take]
    purchase = np.asarray(labels["purchase"])[take]
    for target, mask in (("click", np.ones(len(take), bool)), ("purchase", click > 0)):
        y = (click if target == "click" else purchase)[mask]
        if min(int(y.sum()), int(len(y) - y.sum())) < 10:
            continue
        scores = {c: x for c in sub.columns if (x := _as_score(sub[c], y, mask)) is not None}
        if not scores:
            continue
        values = _column_aucs(np.column_stack(list(scores.values())), y)
        worst = int(np.argmax(np.abs(values - 0.5)))
        if values[worst] >= threshold or values[worst] <= 1 - threshold:
            col = list(scores)[worst]
            raise LeakageError(f"feature '{col}' alone predicts {target} with AUC {values[worst]:.4f} (threshold "
                               f"{threshold}): it is a label or carries post-event information. Rebuild it "
                               "from events strictly before each impression, or drop it.")


def _column_aucs(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC of every column of X against y at once: the matrix form of :func:`recsys.evaluation.auc`
    (Mann-Whitney U on average ranks), one rank pass instead of one call per column."""
    from scipy.stats import rankdata

    pos = y > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(X, axis=0)
    return (ranks[pos].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _as_score(col: pd.Series, y: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """A numeric score for the separability check: numeric values, or for a low-cardinality categorical
    the in-sample label rate of its value (catches labels stored as strings)."""
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        x = col.to_numpy(dtype=np.float64, na_value=np.nan)[mask]
        finite = np.isfinite(x)
        return np.where(finite, x, x[finite].min() - 1 if finite.any() else 0.0)
    values = col.astype(str).to_numpy()[mask]
    if len(np.unique(values)) > 10:
        return None
    rate = pd.Series(y).groupby(values).mean()
    return rate.reindex(values).to_numpy()
