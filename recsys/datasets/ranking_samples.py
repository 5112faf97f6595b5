"""Ranking samples with click/conversion labels: AliExpress search logs and Alimama's Taobao display-ad clicks.

- AliExpress (Tianchi dataset 74690; ``../shared/data/ranking/aliexpress``, see its PROVENANCE.md, which
  holds torch-rechub's US samples; the full release's ``AliExpress_{NL,ES,FR,US}/{train,test}.csv`` share
  the layout): search_id, categorical_1..16, numerical_1..63 (pre-normalised), click, conversion.
- Taobao display ads ("Ad Display/Click Data on Taobao.com", Tianchi dataset 56;
  ``../shared/data/ranking/taobao-ad-display``, see its PROVENANCE.md: FuxiCTR's joined sample of
  raw_sample + ad_feature + user_profile + a ``^``-separated click sequence). No conversion label.

Labels come out as int8 ``click`` and ``purchase`` (AliExpress' ``conversion`` is a purchase after a
click); rows whose purchase has no click break the funnel and are dropped with a warning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError

# Columns of the display-ad sample after loading: renamed where our schema has a name, else as given.
AD_DISPLAY_RENAME = {"clk": "click", "time_stamp": "timestamp", "userid": "user_id", "user": "user_id"}
AD_DISPLAY_NULLABLE_INTS = ("brand", "cms_segid", "cms_group_id", "final_gender_code", "age_level",
                            "pvalue_level", "shopping_level", "occupation", "new_user_class_level")
_SPLIT = re.compile(r"(train|valid|val|test)", re.IGNORECASE)


def load_aliexpress(path: str | Path) -> dict[str, pd.DataFrame]:
    """Load AliExpress CSVs ({split: frame}) from one file or a folder of ``*train*.csv``/``*test*.csv``.

    Columns: search_id (int64), categorical_* (int64), numerical_* (float64), click and purchase
    (int8; ``conversion`` renamed). Split names come from the file names (train, val, test).
    """
    return {split: read_aliexpress_csv(f) for split, f in _split_files(path, "AliExpress").items()}


def read_aliexpress_csv(path: str | Path) -> pd.DataFrame:
    """Read one AliExpress CSV into labelled columns (see :func:`load_aliexpress`)."""
    path = Path(path)
    raw_header = _header(path)
    header = [c.strip() for c in raw_header]
    _require_columns(path, header, ("search_id", "click", "conversion"),
                     "search_id,categorical_1..16,numerical_1..63,click,conversion")
    dtypes = {c: ("float64" if c.strip().startswith("numerical_") else "int64") for c in raw_header}
    df = _read_csv(path, dtypes)
    df = df.rename(columns={"conversion": "purchase"})
    return check_funnel_labels(df, str(path))


def load_taobao_ad_display(path: str | Path) -> dict[str, pd.DataFrame]:
    """Load Taobao display-ad CSVs ({split: frame}) from one file or a folder of ``*train*``/``*test*`` CSVs.

    Columns: click (int8), timestamp (datetime64[ns]), user_id, adgroup_id, cate_id, campaign_id,
    customer (int64), pid (str, the ad slot), price (float64), brand and user-profile codes (nullable
    Int64; missing in the data), click_sequence (list of int ids of earlier clicks, apparently ad
    group ids; [] when absent). Other columns pass through. There is no purchase label.
    """
    return {split: read_taobao_ad_display_csv(f) for split, f in _split_files(path, "Taobao display-ad").items()}


def read_taobao_ad_display_csv(path: str | Path) -> pd.DataFrame:
    """Read one Taobao display-ad CSV (the joined sample, or the raw raw_sample.csv) into documented columns."""
    path = Path(path)
    raw_header = _header(path)
    renamed = [AD_DISPLAY_RENAME.get(c.strip(), c.strip()) for c in raw_header]
    _require_columns(path, renamed, ("click", "timestamp", "user_id", "adgroup_id"),
                     "clk,time_stamp,userid,adgroup_id,... (FuxiCTR's joined sample or Tianchi's raw_sample.csv)")
    dtypes = {c: "str" for c in raw_header if c.strip() in ("pid", "time_stamp", "click_sequence")}
    df = _read_csv(path, dtypes)
    df.columns = renamed
    df["timestamp"] = _parse_time(path, df["timestamp"])
    for col in ("user_id", "adgroup_id", "cate_id", "campaign_id", "customer"):
        if col in df.columns:
            df[col] = _as_int(path, df, col, "int64")
    for col in AD_DISPLAY_NULLABLE_INTS:
        if col in df.columns:
            df[col] = _as_int(path, df, col, "Int64")
    if "price" in df.columns:
        df["price"] = df["price"].astype("float64")
    if "click_sequence" in df.columns:
        df["click_sequence"] = parse_sequences(df["click_sequence"], sep="^", where=str(path))
    return check_funnel_labels(df, str(path))


def parse_sequences(values: pd.Series, *, sep: str, where: str) -> pd.Series:
    """Split ``sep``-joined integer ids into lists (missing or blank -> []); a non-integer names its row."""
    out = []
    for row, text in zip(values.index, values.to_numpy(), strict=True):
        if not isinstance(text, str) or not text.strip():
            out.append([])
            continue
        try:
            out.append([int(tok) for tok in text.split(sep) if tok.strip()])
        except ValueError:
            raise DataValidationError(
                f"{where}: row {row} has a sequence {text[:60]!r} that is not {sep!r}-separated integers.\n"
                "Fix: write the ids of earlier clicks as integers joined by the separator."
            ) from None
    return pd.Series(out, index=values.index, dtype=object)


def check_funnel_labels(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Labels must be 0/1 and a purchase must follow a click: raise on non-binary, drop (with a warning) the rest."""
    labels = [c for c in ("click", "purchase") if c in df.columns]
    for col in labels:
        bad = ~df[col].isin((0, 1))
        if bad.any():
            raise DataValidationError(
                f"{where}: column '{col}' must be 0 or 1; {int(bad.sum())} rows are not, the first ones:\n"
                f"{df.loc[bad, labels].head(5).to_string()}\nFix: binarise the labels."
            )
    if "purchase" in df.columns:
        inconsistent = (df["purchase"] == 1) & (df["click"] == 0)
        if inconsistent.any():
            warnings.warn(f"{where}: dropped {int(inconsistent.sum())} rows with purchase=1 but click=0 "
                          "(a purchase must follow a click).", stacklevel=3)
            df = df.loc[~inconsistent].reset_index(drop=True)
    return df.astype({c: np.int8 for c in labels})


def _split_files(path: str | Path, what: str) -> dict[str, Path]:
    """{split: file} from one CSV or a folder of CSVs whose names say train/val/test."""
    path = Path(path).expanduser()
    if path.is_file():
        return {_split_name(path): path}
    if not path.is_dir():
        raise FileNotFoundError(f"{what} data not found at {path}.\nFix: pass a CSV file or the folder holding them.")
    files = sorted(p for p in path.glob("*.csv") if _SPLIT.search(p.stem))
    if not files:
        raise FileNotFoundError(f"{path} holds no {what} CSV whose name contains train/val/test "
                                f"(found {sorted(p.name for p in path.iterdir())}).\nFix: pass the CSV file itself.")
    out: dict[str, Path] = {}
    for f in files:
        split = _split_name(f)
        if split in out:
            raise DataValidationError(f"{path}: both {out[split].name} and {f.name} look like the {split} split.\n"
                                      "Fix: pass the CSV file you mean.")
        out[split] = f
    return out


def _split_name(path: Path) -> str:
    m = _SPLIT.search(path.stem)
    if m is None:
        return path.stem
    name = m.group(1).lower()
    return "val" if name == "valid" else name


def _header(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (ValueError, pd.errors.ParserError) as e:  # EmptyDataError is a ValueError
        raise DataValidationError(f"{path}: cannot read a CSV header ({e}).\nFix: the file must start with "
                                  "a comma-separated header line.") from None


def _require_columns(path: Path, header: list[str], required: tuple[str, ...], layout: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {missing}; the header is {header[:12]}.\n"
                                  f"Fix: the expected layout is {layout}.")


def _read_csv(path: Path, dtypes: dict[str, str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=dtypes)
    except (ValueError, pd.errors.ParserError) as e:
        raise DataValidationError(f"{path}: a value does not fit its column ({e}).\n"
                                  "Fix: ids and labels must be integers, numerical_* columns numbers.") from None
    df.columns = [c.strip() for c in df.columns]
    return df


def _as_int(path: Path, df: pd.DataFrame, col: str, dtype: str) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = (values.isna() & df[col].notna()) | (values.notna() & (values % 1 != 0))
    if dtype == "int64":
        bad |= values.isna()
    if bad.any():
        raise DataValidationError(f"{path}: column '{col}' must hold integers; rows {list(df.index[bad][:5])} "
                                  f"hold {df.loc[bad, col].head(5).tolist()}.\nFix: correct or drop those rows.")
    return values.astype(dtype)


def _parse_time(path: Path, values: pd.Series) -> pd.Series:
    """ISO date-times as given, or integer unix seconds (the raw Tianchi files) read as UTC."""
    numeric = pd.to_numeric(values, errors="coerce")
    try:
        if numeric.notna().all():
            return pd.to_datetime(numeric.astype("int64"), unit="s").astype("datetime64[ns]")
        return pd.to_datetime(values, format="ISO8601").astype("datetime64[ns]")
    except (ValueError, TypeError) as e:
        raise DataValidationError(f"{path}: column 'time_stamp' holds values that are not date-times ({e}).\n"
                                  "Fix: use 'YYYY-MM-DD HH:MM:SS' or unix seconds.") from None
