"""Column checks shared by the table schemas: each failure names the column, shows bad rows and the fix.

The helpers here never let a data mistake surface as a traceback from deep inside pandas:
they inspect, then raise :class:`recsys.errors.DataValidationError` with

- what is wrong and in which column of which table,
- a sample of the offending rows (row labels and values),
- how to fix it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError

SAMPLE_ROWS = 5


class DataQualityWarning(UserWarning):
    """Data was repaired on the way in (duplicates dropped, rows sorted, ...); the message says how much."""


def sample_rows(df: pd.DataFrame, mask: np.ndarray | pd.Series, columns: Iterable[str]) -> str:
    """Render up to SAMPLE_ROWS offending rows (with their row labels) for an error message."""
    cols = [c for c in columns if c in df.columns]
    bad = df.loc[np.asarray(mask, dtype=bool), cols].head(SAMPLE_ROWS)
    return bad.to_string(max_colwidth=40)


def fail(table: str, column: str, problem: str, df: pd.DataFrame | None, mask, fix: str) -> None:
    """Raise a DataValidationError in the house format."""
    lines = [f"{table}: column '{column}' {problem}."]
    if df is not None and mask is not None:
        n_bad = int(np.asarray(mask, dtype=bool).sum())
        lines.append(f"{n_bad} of {len(df)} rows are affected; the first ones:")
        context = [c for c in ("user_id", "item_id", "friend_id") if c in df.columns and c != column]
        lines.append(sample_rows(df, mask, [column, *context]))
    lines.append(f"Fix: {fix}")
    # a lone surrogate in a sample row is written escaped ('\\ud800'), so the message itself prints anywhere
    raise DataValidationError("\n".join(lines).encode("utf-8", "backslashreplace").decode("utf-8"))


def require_frame(table: str, df: object) -> pd.DataFrame:
    """Accept a DataFrame (or a path to parquet/CSV) and refuse an empty table."""
    if isinstance(df, str) or hasattr(df, "__fspath__"):
        df = read_table(df)
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(
            f"{table}: expected a pandas DataFrame or a path to a parquet/CSV file, got {type(df).__name__}.\n"
            "Fix: pass pd.DataFrame(...) or a path such as 'events.parquet'."
        )
    if len(df) == 0:
        raise DataValidationError(
            f"{table}: the table is empty (0 rows; columns: {list(df.columns)}).\n"
            f"Fix: check the file or query that produced the {table} table; it must hold at least one row."
        )
    repeated = df.columns[df.columns.duplicated()].unique().tolist()
    if repeated:
        raise DataValidationError(f"{table}: column name(s) {repeated} appear more than once; the table has "
                                  f"{list(df.columns)}.\nFix: keep one column per name, e.g. "
                                  "df = df.loc[:, ~df.columns.duplicated()].")
    for column in df.columns:
        check_text(table, df, column)
    return df


def check_text(table: str, df: pd.DataFrame, column: object) -> None:
    """Refuse column names and str values that UTF-8 cannot encode (lone surrogates such as '\\ud800'):
    ids, titles and brands leave as UTF-8 (Arrow, parquet, JSON), where they would fail deep inside."""
    if isinstance(column, str) and not _encodable(column):
        raise DataValidationError(f"{table}: the column name {column!r} holds a lone surrogate, which UTF-8 cannot "
                                  "encode.\nFix: rename the column, decoding its bytes as UTF-8.")
    s = df[column]
    if s.dtype != object:  # str / category / numeric dtypes cannot hold a lone surrogate
        return
    try:
        import pyarrow as pa

        pa.array(s, type=pa.string(), from_pandas=True)  # fast path, in C: raises on a lone surrogate
        return
    except Exception:  # noqa: BLE001 - a surrogate, values not all str, no pyarrow: test one by one
        pass
    bad = s.map(lambda x: isinstance(x, str) and not _encodable(x)).to_numpy(dtype=bool)
    if bad.any():
        fail(table, str(column), "holds text with lone surrogates (e.g. '\\ud800'), which UTF-8 cannot encode",
             df, bad, "decode the source bytes as UTF-8 (errors='strict' or 'replace', not 'surrogateescape'), "
             f"or drop those rows, e.g. df = df[~df['{column}'].str.contains('[\\ud800-\\udfff]', na=False)].")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_table(path: object) -> pd.DataFrame:
    """Read a parquet or CSV file into a DataFrame, with ids kept as written."""
    from pathlib import Path

    p = Path(path)  # type: ignore[arg-type]
    if not p.exists():
        raise DataValidationError(f"no such file: {p}.\nFix: check the path (relative paths start at {Path.cwd()}).")
    suffix = "".join(p.suffixes).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        return _read(p, "parquet", pd.read_parquet)
    if suffix.endswith(".csv") or suffix.endswith(".csv.gz") or suffix.endswith(".tsv"):
        from recsys.ids import read_csv_table  # integer ids only when canonical: '007' stays '007'

        sep = "\t" if ".tsv" in suffix else ","
        return _read(p, "TSV" if sep == "\t" else "CSV", lambda path: read_csv_table(path, sep=sep))
    raise DataValidationError(
        f"cannot read {p}: unknown file type '{suffix or '(none)'}'.\nFix: use .parquet, .csv or .tsv."
    )


_READ_FIXES = {
    "parquet": "write it again with df.to_parquet(path) (the file may be truncated by an interrupted copy), "
               "or give a .csv path if it is really CSV",
    "CSV": "the first line must name the columns (user_id,item_id,...), text fields with commas or quotes must be "
           "quoted with doubled inner quotes (\"a \"\"b\"\"\"), and the file must be UTF-8 (re-save it as "
           "UTF-8, e.g. iconv -f gbk -t utf-8)",
}


def _read(path: object, kind: str, reader) -> pd.DataFrame:
    """``reader(path)``, with any reading failure (empty, truncated or garbage file, bad quoting, bytes that are
    not UTF-8, a folder) a DataValidationError naming the file and the fix."""
    try:
        return reader(path)
    except DataValidationError:
        raise
    except UnicodeDecodeError as e:
        problem = f"it holds bytes that are not UTF-8 (e.g. {e.object[e.start:e.start + 4]!r}: GBK or Latin-1?)"
    except pd.errors.EmptyDataError:
        problem = "the file is empty (no header line)"
    except Exception as e:  # noqa: BLE001 - parser, OS and pyarrow errors alike: the file cannot be read
        problem = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e).strip() else 'unreadable'}"
    fix = _READ_FIXES["parquet" if kind == "parquet" else "CSV"]
    raise DataValidationError(f"cannot read {path} as {kind}: {problem.rstrip('.')}.\nFix: {fix}.") from None


def check_columns(table: str, df: pd.DataFrame, required: Iterable[str]) -> None:
    """Raise when required columns are missing, listing what is there."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{table}: missing required column(s) {missing}; the table has {list(df.columns)}.\n"
            f"Fix: add or rename the column(s), e.g. df.rename(columns={{'<your name>': '{missing[0]}'}})."
        )


def check_not_null(table: str, df: pd.DataFrame, column: str) -> None:
    """Key columns may not hold nulls."""
    mask = df[column].isna().to_numpy()
    if mask.any():
        fail(table, column, "holds null values but is a key", df, mask,
             f"drop or fill those rows before passing the table, e.g. df.dropna(subset=['{column}']).")


def check_id(table: str, df: pd.DataFrame, column: str) -> None:
    """Ids are integers (any width, signed or unsigned) or strings; values are never recast."""
    s = df[column]
    check_not_null(table, df, column)
    if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype) and _all_str(s):
        return
    if pd.api.types.is_float_dtype(s.dtype):
        mask = (s != np.floor(s)).to_numpy()
        fail(table, column, f"has dtype {s.dtype}; ids must be integers or strings (floats lose 64-bit ids)",
             df, mask if mask.any() else np.ones(len(s), bool),
             f"read ids as integers or strings, e.g. pd.read_csv(..., dtype={{'{column}': 'int64'}}) "
             f"or df['{column}'] = df['{column}'].astype('int64').")
    if s.dtype == object:
        kinds = s.map(type)
        is_int = kinds.map(lambda t: issubclass(t, (int, np.integer)) and not issubclass(t, bool))
        is_str = kinds.map(lambda t: issubclass(t, str))
        if bool(is_int.all()) or bool(is_str.all()):
            return
        mask = ~(is_str if is_str.sum() >= is_int.sum() else is_int).to_numpy()
        fail(table, column, "mixes ids of different types (strings and numbers, or other objects)", df, mask,
             f"use one id type per column, e.g. df['{column}'] = df['{column}'].astype(str).")
    fail(table, column, f"has dtype {s.dtype}; ids must be integers or strings", df,
         np.ones(len(s), bool), f"convert it, e.g. df['{column}'] = df['{column}'].astype(str).")


def _all_str(s: pd.Series) -> bool:
    return bool(s.map(lambda v: isinstance(v, str)).all())


def to_numeric(table: str, df: pd.DataFrame, column: str) -> pd.Series:
    """Return the column as float64, refusing values that are not numbers."""
    s = df[column]
    if pd.api.types.is_bool_dtype(s.dtype) or not (
        pd.api.types.is_numeric_dtype(s.dtype) or s.dtype == object or pd.api.types.is_string_dtype(s.dtype)
    ):
        fail(table, column, f"has dtype {s.dtype}; expected numbers", df, np.ones(len(s), bool),
             f"convert it, e.g. df['{column}'] = pd.to_numeric(df['{column}']).")
    out = pd.to_numeric(s, errors="coerce")
    bad = (out.isna() & s.notna()).to_numpy()
    if bad.any():
        fail(table, column, f"has dtype {s.dtype} with values that are not numbers", df, bad,
             f"clean those values, then df['{column}'] = pd.to_numeric(df['{column}']).")
    return out.astype("float64")


def check_range(table: str, df: pd.DataFrame, column: str, values: pd.Series, *, low: float = 0.0,
                high: float | None = None, allow_nan: bool = False, hint: str = "") -> None:
    """Refuse NaN (unless allowed), infinite values and values outside [low, high]."""
    nan = values.isna().to_numpy()
    if nan.any() and not allow_nan:
        fail(table, column, "holds NaN / missing values", df, nan,
             f"fill or drop them, e.g. df = df.dropna(subset=['{column}']).{hint}")
    v = values.to_numpy()
    infinite = ~nan & np.isinf(v)
    if infinite.any():
        fail(table, column, "holds infinite values (inf / -inf)", df, infinite,
             f"{column} must be a finite number; a division by zero upstream is the usual cause: correct or drop "
             f"those rows.{hint}")
    below = ~nan & (v < low)
    if below.any():
        fail(table, column, f"holds values below {low:g}", df, below,
             f"{column} must be >= {low:g}; correct or drop those rows.{hint}")
    if high is not None:
        above = ~nan & (v > high)
        if above.any():
            fail(table, column, f"holds values above {high:g}", df, above,
                 f"{column} must be <= {high:g}.{hint}")


# what datetime64[ns] holds (1677-09-21 .. 2262-04-11), in whole seconds
TIME_RANGE = (pd.Timestamp.min.ceil("s"), pd.Timestamp.max.floor("s"))


def to_timestamp(table: str, df: pd.DataFrame, column: str) -> pd.Series:
    """Normalise timestamps to timezone-naive UTC datetime64[ns]; integers are Unix seconds.

    Times outside :data:`TIME_RANGE` (what datetime64[ns] holds) are refused, not overflowed."""
    s = df[column]
    check_not_null(table, df, column)
    fix_range = (f"timestamps must lie between {TIME_RANGE[0]} and {TIME_RANGE[1]} (pandas datetime64[ns]); a "
                 "year such as 2500 or 1600 is usually a typo or a placeholder: correct or drop those rows "
                 "(integer timestamps are Unix seconds, not milliseconds).")
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s
    elif pd.api.types.is_bool_dtype(s.dtype):
        out = pd.Series(pd.NaT, index=s.index)
    elif pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_float_dtype(s.dtype):
        secs = pd.to_numeric(s).astype("float64")
        lo, hi = (t.value // 10**9 for t in TIME_RANGE)
        outside = (secs.notna() & ~secs.between(lo, hi)).to_numpy()  # inf and 1e300 included
        if outside.any():
            fail(table, column, "holds Unix times outside the range pandas can hold", df, outside, fix_range)
        out = pd.to_datetime(s, unit="s", errors="coerce")
    elif s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        out = _parse_times(s)
        redo = (out.isna() & s.notna()).to_numpy()  # unparsable, or beyond what the column's unit holds
        if redo.any():
            far = np.zeros(len(s), dtype=bool)
            far[redo] = s[redo].map(lambda x: not _in_range(_parse_one(x))).to_numpy(dtype=bool)
            if far.any():
                fail(table, column, "holds times outside the range pandas can hold", df, far, fix_range)
    else:
        out = pd.Series(pd.NaT, index=s.index)
    bad = out.isna().to_numpy()
    if bad.any():
        fail(table, column, f"has dtype {s.dtype} with values that are not timestamps", df, bad,
             "use datetime64 values, ISO-8601 strings ('2026-01-31 12:00:00') or integer Unix seconds.")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    outside = ((out < TIME_RANGE[0]) | (out > TIME_RANGE[1])).to_numpy()
    if outside.any():
        fail(table, column, "holds times outside the range pandas can hold", df, outside, fix_range)
    return out.astype("datetime64[ns]")


def _parse_times(s: pd.Series) -> pd.Series:
    """Strings and datetime objects as UTC times; what does not parse (or overflows) becomes NaT."""
    try:
        return pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError):  # a mix pandas cannot parse as one column: one value at a time
        one = s.map(_parse_one)
        try:
            return pd.to_datetime(one.where(one.map(_in_range), pd.NaT), utc=True)
        except (ValueError, TypeError, OverflowError):
            return pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")


def _in_range(t: pd.Timestamp) -> bool:
    """NaT, or a time datetime64[ns] holds (:data:`TIME_RANGE`)."""
    return t is pd.NaT or bool(TIME_RANGE[0] <= t.tz_convert("UTC").tz_localize(None) <= TIME_RANGE[1])


def _parse_one(value: object) -> pd.Timestamp:
    try:
        t = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    return t if t.tzinfo is not None or t is pd.NaT else t.tz_localize("UTC")


def check_allowed(table: str, df: pd.DataFrame, column: str, values: pd.Series, allowed: tuple[str, ...]) -> None:
    """Refuse values outside an allowed set, naming the unknown ones."""
    bad = (~values.isin(allowed)).to_numpy()
    if bad.any():
        unknown = sorted(map(str, pd.unique(df.loc[bad, column].astype(str))))[:10]
        fail(table, column, f"holds unknown value(s) {unknown}", df, bad,
             f"use one of {list(allowed)} (map your own names first, e.g. df['{column}'].replace({{'pv': 'click'}})).")


def warn_repair(message: str) -> None:
    """Emit a DataQualityWarning pointing at the caller's code."""
    warnings.warn(message, DataQualityWarning, stacklevel=4)
