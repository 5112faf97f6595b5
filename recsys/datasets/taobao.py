"""Taobao loaders: the multi-behaviour purchase split and the UserBehavior event log (Alibaba Tianchi data).

``load_taobao_multibehavior`` reads ``../shared/data/multibehavior/taobao`` (CascadingRank's copy of the
MBCGCN Taobao split; see its PROVENANCE.md): one ``user item`` pair a line, 0-based ids, no timestamps.

``load_taobao_userbehavior`` reads Taobao UserBehavior (Tianchi dataset 649; the extract in
``../shared/data/ranking/taobao-userbehavior``, see its PROVENANCE.md, or the full 100M-row
``UserBehavior.csv``) into our events schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.datasets.lightgcn import read_int_lines
from recsys.errors import DataValidationError
from recsys.features.schema import EVENT_TYPES

# UserBehavior logs no impressions. A 'pv' is the user opening the item's detail page, which is what a
# click on a feed card leads to, so it plays the click role in our impression -> click -> purchase funnel.
USERBEHAVIOR_EVENT_MAP: dict[str, str] = {"pv": "click", "cart": "cart", "fav": "fav", "buy": "purchase"}
USERBEHAVIOR_COLUMNS = ("user_id", "item_id", "category", "behavior_type", "timestamp")
_BEHAVIOR_FILES = ("buy", "cart", "collect", "view")
_SPLIT_FILES = ("train", "valid", "test")


@dataclass
class MultiBehaviorDataset:
    """Purchases to train on, held-out purchases (valid, test) and auxiliary behaviours, as (user_id, item_id) frames.

    ``cart``, ``collect`` and ``view`` are None when their file is absent (the shared Taobao copy has
    no view.txt and no collect.txt). ``statistics`` is the folder's statistics.json, if any.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    buy: pd.DataFrame
    n_users: int
    n_items: int
    cart: pd.DataFrame | None = None
    collect: pd.DataFrame | None = None
    view: pd.DataFrame | None = None
    name: str = ""
    statistics: dict | None = field(default=None, repr=False)

    def behaviors(self) -> dict[str, pd.DataFrame]:
        """The behaviours present, weakest first (view, collect, cart, buy)."""
        found = {"view": self.view, "collect": self.collect, "cart": self.cart, "buy": self.buy}
        return {k: v for k, v in found.items() if v is not None}

    def stats(self) -> dict:
        """Users, items and the number of pairs in every file that is present."""
        out: dict = {"name": self.name, "n_users": int(self.n_users), "n_items": int(self.n_items)}
        for split in _SPLIT_FILES:
            out[f"n_{split}"] = len(getattr(self, split))
        for kind, frame in self.behaviors().items():
            out[f"n_{kind}"] = len(frame)
        return out


def load_taobao_multibehavior(path: str | Path, name: str | None = None) -> MultiBehaviorDataset:
    """Load a multi-behaviour folder: train/valid/test (+ buy, cart, collect, view when present).

    ``train.txt`` and ``buy.txt`` are the same purchases in the published data; either one alone
    is enough. ``n_users``/``n_items`` come from statistics.json when present (it also counts
    users and items seen only in the missing view.txt), else the largest id plus one.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"multi-behaviour directory {root} does not exist.\n"
                                "Fix: pass a folder such as ../shared/data/multibehavior/taobao.")
    present = {p.stem for p in root.glob("*.txt")}
    missing = [f"{s}.txt" for s in ("valid", "test") if s not in present]
    if "train" not in present and "buy" not in present:
        missing.insert(0, "train.txt (or buy.txt)")
    if missing:
        raise FileNotFoundError(
            f"{root} lacks {', '.join(missing)} (found {sorted(p.name for p in root.iterdir())}).\n"
            "Fix: a multi-behaviour folder holds train.txt or buy.txt, valid.txt, test.txt and optionally "
            "cart.txt, collect.txt, view.txt, one 'user item' pair a line."
        )
    frames = {stem: read_pairs(root / f"{stem}.txt") for stem in (*_SPLIT_FILES, *_BEHAVIOR_FILES)
              if stem in present}
    frames.setdefault("train", frames.get("buy"))
    frames.setdefault("buy", frames["train"])
    stats = _read_statistics(root / "statistics.json")
    max_user = max(int(f["user_id"].to_numpy().max(initial=-1)) for f in frames.values())
    max_item = max(int(f["item_id"].to_numpy().max(initial=-1)) for f in frames.values())
    n_users, n_items = max_user + 1, max_item + 1
    if stats is not None:
        n_users, n_items = _check_sizes(root, stats, n_users, n_items)
    return MultiBehaviorDataset(
        train=frames["train"], valid=frames["valid"], test=frames["test"], buy=frames["buy"],
        cart=frames.get("cart"), collect=frames.get("collect"), view=frames.get("view"),
        n_users=n_users, n_items=n_items, name=root.name if name is None else name, statistics=stats,
    )


def read_pairs(path: Path) -> pd.DataFrame:
    """Read a ``user item`` pair-per-line file into an int64 (user_id, item_id) frame."""
    counts, values, line_numbers = read_int_lines(path)
    bad = np.flatnonzero(counts != 2)
    if bad.size:
        raise DataValidationError(
            f"{path}, line {int(line_numbers[bad[0]])}: expected 2 integers 'user item', found {int(counts[bad[0]])} "
            f"({bad.size} such lines).\nFix: write one 'user item' pair per line."
        )
    pairs = values.reshape(-1, 2)
    return pd.DataFrame({"user_id": pairs[:, 0].copy(), "item_id": pairs[:, 1].copy()})


def _read_statistics(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataValidationError(f"{path} is not valid JSON ({e}).\nFix: repair or delete the file.") from None


def _check_sizes(root: Path, stats: dict, n_users: int, n_items: int) -> tuple[int, int]:
    sizes = []
    for key, seen in (("n_users", n_users), ("n_items", n_items)):
        declared = stats.get(key)
        if declared is None:
            sizes.append(seen)
            continue
        if int(declared) < seen:
            raise DataValidationError(
                f"{root / 'statistics.json'} declares {key}={declared} but the files use ids up to {seen - 1}.\n"
                "Fix: correct statistics.json or delete it (sizes then come from the largest ids)."
            )
        sizes.append(int(declared))
    return sizes[0], sizes[1]


def load_taobao_userbehavior(path: str | Path, *, nrows: int | None = None) -> pd.DataFrame:
    """Read Taobao UserBehavior (a CSV, or a folder holding one) as an events table in our schema.

    Columns: user_id, item_id (int64), timestamp (datetime64[ns], UTC, from unix seconds; Beijing
    time is +08:00), event_type (categorical over EVENT_TYPES, mapped by USERBEHAVIOR_EVENT_MAP:
    pv->click, cart->cart, fav->fav, buy->purchase) and category (int64, the item's category; see
    :func:`userbehavior_items`). Rows keep the file's order. The file has no header
    (``user_id,item_id,category_id,behavior_type,timestamp``); a header line is tolerated.
    """
    csv = _find_userbehavior_csv(Path(path).expanduser())
    with csv.open("rb") as fh:
        first = fh.readline()
    header = 0 if first[:1] and not first[:1].isdigit() else None
    try:
        raw = pd.read_csv(csv, header=header, names=list(USERBEHAVIOR_COLUMNS), nrows=nrows,
                          dtype={"user_id": "int64", "item_id": "int64", "category": "int64",
                                 "behavior_type": "str", "timestamp": "int64"})
    except (ValueError, pd.errors.ParserError) as e:
        raise DataValidationError(
            f"{csv} is not in UserBehavior format ({e}).\n"
            "Fix: each line must read 'user_id,item_id,category_id,behavior_type,unix_seconds' with integer ids."
        ) from None
    kinds = raw["behavior_type"].str.strip().str.lower()
    mapped = kinds.map(USERBEHAVIOR_EVENT_MAP)
    unknown = mapped.isna()
    if unknown.any():
        sample = raw.loc[unknown, ["user_id", "item_id", "behavior_type"]].head(5).to_string()
        raise DataValidationError(
            f"{csv}: column 'behavior_type' has {int(unknown.sum())} rows outside {sorted(USERBEHAVIOR_EVENT_MAP)}; "
            f"the first ones:\n{sample}\nFix: keep only pv, cart, fav and buy rows."
        )
    return pd.DataFrame({
        "user_id": raw["user_id"],
        "item_id": raw["item_id"],
        "timestamp": pd.to_datetime(raw["timestamp"], unit="s").astype("datetime64[ns]"),
        "event_type": pd.Categorical(mapped, categories=list(EVENT_TYPES)),
        "category": raw["category"],
    })


def userbehavior_items(events: pd.DataFrame) -> pd.DataFrame:
    """An items-like frame (item_id, category) from UserBehavior events: one row per item, first category seen.

    UserBehavior has no brand, shop, price or commission, so this is not a full items table.
    """
    if "category" not in events.columns:
        raise DataValidationError("userbehavior_items needs the 'category' column that load_taobao_userbehavior "
                                  "returns.\nFix: pass that frame before dropping columns.")
    return events[["item_id", "category"]].drop_duplicates("item_id", keep="first").reset_index(drop=True)


def _find_userbehavior_csv(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist.\nFix: pass UserBehavior.csv or the folder holding it.")
    candidates = sorted(path.glob("UserBehavior*.csv"))
    exact = [p for p in candidates if p.name == "UserBehavior.csv"]
    if exact or len(candidates) == 1:
        return (exact or candidates)[0]
    raise FileNotFoundError(
        f"{path} holds {'no' if not candidates else len(candidates)} UserBehavior*.csv files "
        f"({[p.name for p in candidates]}).\nFix: pass the CSV file itself."
    )
