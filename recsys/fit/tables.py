"""Load the tables a :class:`~recsys.fit.settings.DataConfig` names, validate them and split them without leakage.

Every source comes back as :class:`Tables` in the events/items/users/social contract of
:mod:`recsys.features.schema`, so the stages downstream never branch on the dataset. Interaction-only
data (LightGCN-format Gowalla / Yelp2018, the Taobao multi-behaviour split) carries no item
attributes: its items table holds placeholders and ``interaction_only`` is set, so the feature stage
uses ids and histories only; its published test split is kept in ``test_events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError
from recsys.features.validation import read_table
from recsys.fit.settings import DataConfig, SplitConfig

__all__ = ["Tables", "Split", "load_tables", "split_tables", "journal_events", "resolve_data_path", "data_digest",
           "ENGAGED"]

ENGAGED = ("click", "cart", "fav", "purchase")
_TABLE_FILES = ("events", "items", "users", "social", "media", "media_pools", "benefits")
_EPOCH = pd.Timestamp("2020-01-01")


@dataclass
class Tables:
    """The training tables of one run (``test_events``: a published test split, if the data has one)."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    social: pd.DataFrame | None = None
    media: pd.DataFrame | None = None
    media_pools: pd.DataFrame | None = None
    benefits: pd.DataFrame | None = None  # partner coupons: recsys.features.benefits
    test_events: pd.DataFrame | None = None
    source: str = ""
    location: str = ""
    interaction_only: bool = False

    def frames(self) -> dict[str, pd.DataFrame]:
        names = (*_TABLE_FILES, "test_events")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def row_counts(self) -> dict[str, int]:
        return {n: len(df) for n, df in self.frames().items()}


@dataclass
class Split:
    """Train and test events plus the cut (a time, or ``"published"``)."""

    train: pd.DataFrame
    test: pd.DataFrame
    cut: str


def resolve_data_path(path: str | None, source: str) -> Path:
    """``path`` as given when it exists, else inside the shared data directory; a clear error otherwise."""
    if not path:
        raise ConfigError(f"config key 'data.path' is required for data.source '{source}' (a directory, e.g. "
                          "retrieval/gowalla inside the shared data directory)")
    p = Path(path).expanduser()
    if p.exists():
        return p
    from recsys.datasets.paths import require_shared

    if p.is_absolute():
        raise FileNotFoundError(f"data.path {p} does not exist")
    return require_shared(path)


def _files(cfg: DataConfig) -> Tables:
    root = resolve_data_path(cfg.path, "files")
    found = {}
    for name in _TABLE_FILES:
        hits = [root / f"{name}{ext}" for ext in (".parquet", ".csv") if (root / f"{name}{ext}").is_file()]
        if hits:
            found[name] = read_table(hits[0])  # ids as written; a broken file names itself
    missing = [n for n in ("events", "items") if n not in found]
    if missing:
        raise DataValidationError(f"{root} lacks {', '.join(f'{m}.parquet (or .csv)' for m in missing)}; it holds "
                                  f"{sorted(p.name for p in root.iterdir())}")
    return Tables(**found, source="files", location=str(root))


def _placeholder_items(n_items: int) -> pd.DataFrame:
    return pd.DataFrame({"item_id": np.arange(n_items, dtype=np.int64), "category": "unknown", "brand": "unknown",
                         "shop": "unknown", "price": 0.0, "commission_rate": 0.0, "title": "", "in_stock": True})


def _pairs(frame: pd.DataFrame, kind: str, start: int = 0) -> pd.DataFrame:
    """Timeless pairs as events; the row order stands in for time (one second apart) to keep it stable."""
    n = len(frame)
    return pd.DataFrame({"user_id": frame["user_id"].to_numpy(np.int64), "item_id": frame["item_id"].to_numpy(np.int64),
                         "timestamp": _EPOCH + pd.to_timedelta(np.arange(start, start + n), unit="s"),
                         "event_type": kind})


def _lightgcn(cfg: DataConfig) -> Tables:
    from recsys.datasets.lightgcn import load_lightgcn

    root = resolve_data_path(cfg.path, "lightgcn")
    ds = load_lightgcn(root)
    return Tables(events=_pairs(ds.train, "click"), items=_placeholder_items(ds.n_items),
                  test_events=_pairs(ds.test, "click", start=len(ds.train)), source="lightgcn",
                  location=str(root), interaction_only=True)


def _taobao(cfg: DataConfig) -> Tables:
    from recsys.datasets.taobao import load_taobao_multibehavior

    root = resolve_data_path(cfg.path, "taobao-multibehavior")
    ds = load_taobao_multibehavior(root)
    parts = [_pairs(ds.train, "purchase")]
    if ds.cart is not None:
        parts.append(_pairs(ds.cart, "cart", start=len(ds.train)))
    events = pd.concat(parts, ignore_index=True)
    return Tables(events=events, items=_placeholder_items(ds.n_items),
                  test_events=_pairs(ds.test, "purchase", start=len(events)), source="taobao-multibehavior",
                  location=str(root), interaction_only=True)


def _synthetic(cfg: DataConfig, seed: int, progress: bool) -> Tables:
    from recsys.datasets.synthetic import generate_world

    w = generate_world(cfg.n_events, n_days=cfg.n_days, seed=seed, progress=progress)
    return Tables(events=w.events, items=w.items, users=w.users, social=w.social, media=w.media,
                  media_pools=w.media_pools, benefits=w.benefits, source="synthetic", location=f"generate_world({cfg.n_events}, seed={seed})")


def load_tables(cfg: DataConfig, *, seed: int = 0, progress: bool = False) -> Tables:
    """Load (or generate) the data, then validate every table against its contract when ``cfg.validate``."""
    loaders = {"synthetic": lambda: _synthetic(cfg, seed, progress), "files": lambda: _files(cfg),
               "lightgcn": lambda: _lightgcn(cfg), "taobao-multibehavior": lambda: _taobao(cfg)}
    tables = loaders[cfg.source]()
    if cfg.event_journal:
        tables.events = journal_events(tables.events, cfg.event_journal)
    if cfg.validate:
        from recsys.features.schema import validate_events, validate_tables

        checked = validate_tables(events=tables.events, items=tables.items, users=tables.users, social=tables.social,
                                  media=tables.media, media_pools=tables.media_pools, benefits=tables.benefits)
        for name, df in checked.items():
            setattr(tables, name, df.reset_index(drop=True))
        if tables.test_events is not None:
            tables.test_events = validate_events(tables.test_events).reset_index(drop=True)
    return tables


def journal_events(events: pd.DataFrame, path: str) -> pd.DataFrame:
    """``events`` and the events of the journal at ``path`` (each sequence number once; columns every journaled
    row leaves empty are left out)."""
    from recsys.storage.journal import EventJournal

    if not Path(path).expanduser().is_file():
        raise ConfigError(f"data.event_journal {path} does not exist (a journal file written by the service)")
    live = EventJournal(path).read().drop_duplicates("seq").drop(columns="seq").dropna(axis=1, how="all")
    return pd.concat([events, live], ignore_index=True) if len(live) else events


def split_tables(tables: Tables, cfg: SplitConfig) -> Split:
    """Train/test events: the published split when the data has one and ``method`` is published, else by time."""
    if cfg.method == "published":
        if tables.test_events is None:
            raise ConfigError(f"split.method 'published' needs data with its own test split (lightgcn, "
                              f"taobao-multibehavior); data.source '{tables.source}' has none: use split.method time")
        return Split(tables.events, tables.test_events, "published")
    if tables.test_events is not None:
        raise ConfigError(f"data.source '{tables.source}' comes with a published test split and no times; set "
                          "split.method: published")
    from recsys.datasets.splits import time_split

    train, test = time_split(tables.events, test_start=cfg.test_start, test_fraction=cfg.test_fraction)
    cut = str(train.attrs.get("split_time", test["timestamp"].min()))
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    train.attrs, test.attrs = {}, {}  # the cut lives in Split.cut; parquet writers want JSON-able attrs
    return Split(train, test, cut)


def data_digest(tables: Tables) -> str:
    """sha256 over every table (the bundle manifest's ``training_data_hash`` uses the same function)."""
    from recsys.storage.bundle import data_hash

    return data_hash(tables.frames())

