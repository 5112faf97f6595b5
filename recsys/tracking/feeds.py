"""The request/response frames of the MLflow model: user ids and options in, feeds out.

Input: one row per feed request, ``user_id`` (required) and the optional columns ``k`` (items in the feed),
``media_id`` (the partner) and ``exclude`` (a list of item ids not to show). The same names are MLflow params
(:data:`PARAMS`: ``k`` default 20, ``media_id``, ``exclude``, ``layout``): a column's value wins for its row,
a missing or null cell (None, NaN: Spark fills an absent optional column with NaN) takes the param, and the
``exclude`` param is added to every row's own list. ``media_id`` null everywhere means no partner, served as
the model's ``no_partner`` says (under the default "auto", refused when some partner's pool is restricted).

Output, ``layout="rows"`` (the default): one row per feed item, ``request`` (the input row's position)
followed by :data:`recsys.recommender.OUTPUT_COLUMNS` (user_id, media_id, rank, item_id, score, pctr, pcvr,
reason, reason_code, source, fallback, score_kind); ``fallback`` is None on the normal path, as in
``Recommender.recommend``. ``layout="nested"``: one row per input row, ``request``, ``user_id``, ``media_id``
and ``feed``, a list of :data:`FEED_FIELDS` dicts in rank order; that is what
``mlflow.pyfunc.spark_udf(..., result_type=FEED_RESULT_TYPE, params={"layout": "nested"})`` returns as one
row per user (a struct with the ``feed`` array: MLflow converts an array result row by row from the frame's
columns, a struct result by field name). User ids are read by :func:`recsys.ids.coerce_id`, as in-process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError

__all__ = ["predict_feeds", "input_example", "feed_result_type", "DEFAULT_K", "INPUT_COLUMNS", "PARAMS",
           "LAYOUTS", "FEED_FIELDS", "FEED_RESULT_TYPE"]

DEFAULT_K = 20
INPUT_COLUMNS = ("user_id", "k", "media_id", "exclude")
LAYOUTS = ("rows", "nested")
PARAMS = {"k": DEFAULT_K, "media_id": None, "exclude": (), "layout": "rows"}  # name -> default
FEED_FIELDS = ("rank", "item_id", "score", "pctr", "pcvr", "reason", "fallback")  # one struct of a nested feed


def feed_result_type(item_id: str = "bigint") -> str:
    """The Spark DDL ``result_type`` of the nested layout; ``item_id``: "bigint" (integer item ids) or "string"."""
    if item_id not in ("bigint", "string"):
        raise DataValidationError(f"item_id must be 'bigint' or 'string' (the model's item ids), got {item_id!r}")
    return (f"feed array<struct<rank:int,item_id:{item_id},score:double,pctr:double,pcvr:double,"
            "reason:string,fallback:string>>")


FEED_RESULT_TYPE = feed_result_type()


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value))


def _params(params: Mapping | None) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise DataValidationError(f"unknown param(s) {unknown}; allowed: {list(PARAMS)}")
    out = {**PARAMS, **{k: v for k, v in params.items() if v is not None}}
    if out["layout"] not in LAYOUTS:
        raise DataValidationError(f"param layout must be one of {list(LAYOUTS)}, got {out['layout']!r}")
    out["exclude"] = _exclude_list(out["exclude"], "param exclude")
    return out


def _exclude_list(value: Any, where: str) -> tuple:
    if _missing(value):
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise DataValidationError(f"{where} must be a list of item ids, got {type(value).__name__} {value!r}; "
                                  f"wrap a single id: [{value!r}]")
    return tuple(v.item() if isinstance(v, np.generic) else v for v in value)


def _k_column(frame: pd.DataFrame, default: int) -> np.ndarray:
    if "k" not in frame.columns:
        return np.full(len(frame), default, dtype=np.int64)
    col = frame["k"]
    values = [default if _missing(v) else v for v in col.tolist()]
    for row, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)) or v % 1 != 0 or v < 1:
            raise DataValidationError(f"column 'k' must hold positive integers (null: the k param, "
                                      f"{default}); row {row} holds {v!r}")
    return np.asarray(values, dtype=np.int64)


def _requests(model_input: Any, params: dict) -> pd.DataFrame:
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise DataValidationError(f"expected a DataFrame with a 'user_id' column (and optional 'k', 'media_id', "
                                  f"'exclude'), got {type(model_input).__name__}")
    if "user_id" not in model_input.columns:
        raise DataValidationError(f"the request frame needs a 'user_id' column; it has {list(model_input.columns)}")
    unknown = [c for c in model_input.columns if c not in INPUT_COLUMNS]
    if unknown:
        raise DataValidationError(f"unknown request column(s) {unknown}; allowed: {list(INPUT_COLUMNS)}")
    frame = model_input.reset_index(drop=True)
    n = len(frame)
    media = frame["media_id"].tolist() if "media_id" in frame.columns else [None] * n
    media = [params["media_id"] if _missing(m) else m for m in media]
    own = frame["exclude"].tolist() if "exclude" in frame.columns else [None] * n
    exclude = [params["exclude"] + _exclude_list(e, f"column 'exclude' (row {row})") for row, e in enumerate(own)]
    return pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "k": _k_column(frame, params["k"]),
                         "media_id": pd.Series(media, dtype=object).to_numpy(),
                         "exclude": pd.Series(exclude, dtype=object).to_numpy()})


def predict_feeds(recommender: Any, model_input: Any, params: Mapping | None = None) -> pd.DataFrame:
    """Feeds for every request row in the ``layout`` param's shape (answered with ``recommend_batch``)."""
    from recsys.recommender import OUTPUT_COLUMNS

    params = _params(params)
    reqs = _requests(model_input, params)
    parts = []
    for k, excl, group in _batches(reqs):
        feeds = recommender.recommend_batch(group[["user_id", "media_id"]], k=int(k), exclude=excl)
        parts.append(_attach_requests(recommender, feeds, group, int(k), excl))
    if parts:
        rows = pd.concat(parts, ignore_index=True).sort_values(["request", "rank"], kind="stable")
        rows = rows.reset_index(drop=True)
    else:
        rows = pd.DataFrame(columns=["request", *OUTPUT_COLUMNS])
    return _nested(reqs, rows) if params["layout"] == "nested" else rows


def _batches(reqs: pd.DataFrame):
    """``(k, exclude, rows)`` for one ``recommend_batch`` call each: per k; rows with their own exclude lists
    go as a dict user_id -> ids when the users are distinct, else one call per distinct list."""
    for k, group in reqs.groupby("k", sort=False):
        users, lists = group["user_id"].tolist(), group["exclude"].tolist()
        try:
            distinct = len(set(users)) == len(users)
        except TypeError:  # an unhashable id: recommend_batch refuses it, naming the row
            distinct = False
        if len(set(lists)) == 1:
            yield k, lists[0], group
        elif distinct:
            yield k, dict(zip(users, lists, strict=True)), group
        else:
            for excl, rows in group.groupby("exclude", sort=False):
                yield k, excl, rows


def _attach_requests(recommender: Any, feeds: pd.DataFrame, group: pd.DataFrame, k: int, excl: Any
                     ) -> pd.DataFrame:
    """``request`` per row: feeds come back in request order, each starting at rank 1."""
    starts = (feeds["rank"].to_numpy() == 1).cumsum() - 1
    if len(feeds) and starts.max() + 1 == len(group) and (starts >= 0).all():
        return feeds.assign(request=group.index.to_numpy()[starts])[["request", *feeds.columns]]
    parts = []  # some feed came back empty: answer one request at a time
    for pos, row in group.iterrows():
        one = recommender.recommend_batch(pd.DataFrame([row[["user_id", "media_id"]]]), k=k, exclude=excl)
        parts.append(one.assign(request=pos)[["request", *one.columns]])
    return pd.concat(parts, ignore_index=True)


def _nested(reqs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per request: its feed as a list of :data:`FEED_FIELDS` dicts (plain Python values, JSON-ready)."""
    feeds: list[list[dict]] = [[] for _ in range(len(reqs))]
    fields = rows[list(FEED_FIELDS)].astype(object).where(rows[list(FEED_FIELDS)].notna(), None)
    for request, record in zip(rows["request"].tolist(), fields.to_dict("records"), strict=True):
        feeds[int(request)].append({f: v.item() if isinstance(v, np.generic) else v for f, v in record.items()})
    return pd.DataFrame({"request": np.arange(len(reqs), dtype=np.int64), "user_id": reqs["user_id"].to_numpy(),
                         "media_id": reqs["media_id"].to_numpy(), "feed": pd.Series(feeds, dtype=object)})


def input_example(user_ids: list, media_ids: list, k: int = 10) -> pd.DataFrame:
    """A small request frame for the model's signature and documentation."""
    n = len(user_ids)
    return pd.DataFrame({"user_id": pd.Series(user_ids), "k": np.full(n, k, dtype=np.int64),
                         "media_id": pd.Series(media_ids, dtype=object)})
