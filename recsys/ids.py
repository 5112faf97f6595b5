"""Ids: one rule for the ids a serving call is given and for the id columns of CSV files.

A request's id is read the way the model's own ids are typed. :func:`coerce_id` turns an id written
another way into the model's when there is exactly one reading ("1279", 1279.0 and numpy.int64(1279)
are 1279 on a model with integer ids; 1279 is "1279" on a model with string ids) and otherwise leaves it
as given, with a note that says so (the id is then simply unknown: a new user, an ignored exclusion, an
unknown item or partner). ``Recommender.recommend``, ``recommend_batch``, ``recommend_ids``,
``similar_items`` and the MLflow model (which answers through ``recommend_batch``) all use it.

CSV files carry no types: :func:`read_csv_table` reads id columns as text and makes a column integers
only when every value is a canonical integer (digits, an optional '-', no leading zeros, within 64 bits),
so an id written ``007`` stays the string ``"007"`` and comes back as written.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError

__all__ = ["ID_COLUMNS", "shared_index", "canonical_int", "id_kind", "check_text", "coerce_id", "coerce_ids", "coerce_media", "read_csv_table"]

ID_COLUMNS = ("user_id", "item_id", "friend_id", "media_id")
_CANONICAL = r"-?[1-9][0-9]*|0"
_CANONICAL_RE = re.compile(_CANONICAL)
_INT64 = (-(2**63), 2**63)
_EXACT_FLOAT = 2**53  # floats hold every integer below this exactly
_KIND_WORDS = {"int": "an integer id", "str": "a string id", "any": "an id"}


def canonical_int(text: str) -> int | None:
    """The integer ``text`` spells canonically ("42", "-7"; not "007", "+7", " 7", "7.0"), else None."""
    if not _CANONICAL_RE.fullmatch(text):
        return None
    value = int(text)
    return value if _INT64[0] <= value < _INT64[1] else None


def id_kind(ids: pd.Index) -> str:
    """How a model's ids are typed: ``"int"``, ``"str"`` or ``"any"`` (mixed or empty); cached by pandas."""
    kind = ids.inferred_type
    return "int" if kind == "integer" else "str" if kind == "string" else "any"


def _integral(value: float) -> bool:
    return math.isfinite(value) and value.is_integer() and abs(value) < _EXACT_FLOAT


def check_text(value: str, what: str) -> str:
    """``value`` when it can be written as UTF-8 (every id and text leaves as UTF-8: Arrow, JSON, MLflow).

    Raises :class:`~recsys.errors.DataValidationError` naming ``what`` for a str holding a lone surrogate
    (e.g. ``"\\ud800"``, what a broken decoder or ``errors="surrogateescape"`` leaves behind).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataValidationError(f"{what} {value!r} is not valid text: character {e.start} is a lone surrogate "
                                  f"({value[e.start]!r}), which UTF-8 cannot encode. Fix: decode the bytes it came "
                                  "from as UTF-8 (errors='strict' or 'replace', not 'surrogateescape').") from None
    return value


def coerce_id(value: Any, kind: str, what: str, unknown: str) -> tuple[Any, str | None]:
    """``(id, note)``: ``value`` as the model's id when it reads one way only, else ``(value, note)``.

    ``kind`` is :func:`id_kind` of the model's ids; ``what`` names the argument (``"user_id"``);
    ``unknown`` says what happens to an id that is not coerced (``"served as an unknown user"``).
    Raises :class:`~recsys.errors.DataValidationError` for values that are no id at all (None, bool, lists,
    a str that UTF-8 cannot encode).
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataValidationError(f"{what} must be an int or a str (a float only when it holds an integer), got "
                                  f"{type(value).__name__} {value!r}")
    if isinstance(value, str):
        check_text(value, what)
    out: Any = None
    if isinstance(value, float):
        if _integral(value):
            out = str(int(value)) if kind == "str" else int(value)
    elif kind == "int":
        out = value if isinstance(value, int) else canonical_int(value)
    elif kind == "str":
        out = value if isinstance(value, str) else str(value)
    else:
        out = value
    if out is None:
        return value, f"{what} {value!r} is not {_KIND_WORDS[kind]} of this model: {unknown}"
    return out, None


def coerce_ids(values: tuple, kind: str, what: str) -> tuple[tuple, list[str]]:
    """Item ids (``exclude``, stock updates) coerced one by one; ids that are not the model's are dropped
    (they can match no item) and named in the notes."""
    out, notes = [], []
    for v in values:
        got, note = coerce_id(v, kind, what, "ignored")
        if note is None:
            out.append(got)
        else:
            notes.append(note)
    return tuple(out), notes


def coerce_media(value: Any) -> tuple[str | None, str | None]:
    """A partner id as the string the serving tables key it by (None, NaN: no partner) and a note, if any."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None, None
    got, note = coerce_id(value, "str", "media_id", "served without a partner")
    return (None, note) if note is not None else (got, None)


def _settle(column: pd.Series) -> pd.Series:
    """An id column read as text: integers when every value is a canonical int64, else the text as written."""
    present = column.dropna()
    if not len(present) or not bool(present.str.fullmatch(_CANONICAL).all()):
        return column
    try:
        values = present.astype(np.int64)
    except (OverflowError, ValueError):  # beyond 64 bits: keep the text
        return column
    if len(present) == len(column):
        return values
    return values.reindex(column.index).astype("Int64")


def read_csv_table(path: str | Path, sep: str = ",") -> pd.DataFrame:
    """Read a CSV (or TSV) table; id columns (:data:`ID_COLUMNS`) are integers only when every value is a
    canonical integer, else strings exactly as written (``007`` stays ``"007"``)."""
    header = pd.read_csv(path, sep=sep, nrows=0).columns
    ids = [c for c in ID_COLUMNS if c in header]
    frame = pd.read_csv(path, sep=sep, dtype={c: str for c in ids})
    for c in ids:
        frame[c] = _settle(frame[c])
    return frame


def shared_index(ids: np.ndarray) -> pd.Index:
    """A ``pd.Index`` of ``ids`` with its hash table built now. pandas builds it lazily on the first lookup and
    not thread-safely: two threads' first ``get_indexer`` calls can race and find a unique index "not unique"
    (InvalidIndexError). Catalogues, user tables and vocabularies are read by every request thread, so they are built before
    they are shared."""
    index = pd.Index(ids)
    if index.is_unique and len(index):
        index.get_indexer(index[:1])
    return index
