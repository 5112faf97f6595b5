"""LightGCN-format train/test splits: ``train.txt`` and ``test.txt``, one line per user, ``user item item ...``.

This is the published split of LightGCN (He et al., SIGIR 2020) used by most graph-CF papers since;
``../shared/data/retrieval/{gowalla,yelp2018}`` hold it, with sources and reference counts in their
PROVENANCE.md (Gowalla 29,858 users / 40,981 items / 810,128 train / 217,242 test interactions).
Any other directory in the same format loads too. Lines with a user and no items, blank lines and
trailing whitespace are tolerated; ids are 0-based integers.

Leakage between train and test is not checked here (see the splits module); :meth:`LightGCNDataset.stats`
reports how many pairs appear in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError

_ALLOWED = b"0123456789 \t\r\n\x0b\x0c"


@dataclass
class LightGCNDataset:
    """A published user-item split: interactions as (user_id, item_id) int64 frames plus the id-space sizes."""

    train: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int
    name: str = ""

    def train_matrix(self):
        """Training interactions as a binary scipy.sparse.csr_matrix (n_users x n_items, float32)."""
        return _to_csr(self.train, self.n_users, self.n_items)

    def test_matrix(self):
        """Held-out interactions as a binary scipy.sparse.csr_matrix (n_users x n_items, float32)."""
        return _to_csr(self.test, self.n_users, self.n_items)

    def stats(self) -> dict:
        """Counts (users, items, interactions, users with data, duplicates, pairs in both splits) as plain ints."""
        train_keys = _pair_keys(self.train, self.n_items)
        test_keys = _pair_keys(self.test, self.n_items)
        uniq_train, uniq_test = _sorted_unique(train_keys), _sorted_unique(test_keys)
        n_train = len(self.train)
        return {
            "name": self.name,
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
            "n_train": n_train,
            "n_test": len(self.test),
            "n_train_users": int(self.train["user_id"].nunique()),
            "n_test_users": int(self.test["user_id"].nunique()),
            "n_train_items": int(self.train["item_id"].nunique()),
            "train_density": n_train / max(self.n_users * self.n_items, 1),
            "train_duplicate_pairs": int(len(train_keys) - len(uniq_train)),
            "test_duplicate_pairs": int(len(test_keys) - len(uniq_test)),
            "pairs_in_train_and_test": int(np.intersect1d(uniq_train, uniq_test, assume_unique=True).size),
        }


def load_lightgcn(path: str | Path, name: str | None = None) -> LightGCNDataset:
    """Load a LightGCN-format directory (``train.txt`` and ``test.txt``); ``name`` defaults to the folder's name.

    ``n_users`` and ``n_items`` are the largest id seen in either file plus one (a user listed with
    no items still counts). Raises FileNotFoundError naming a missing file and DataValidationError
    naming file and line of a token that is not a non-negative integer.
    """
    root = Path(path).expanduser()
    if root.is_file():
        raise FileNotFoundError(
            f"{root} is a file; load_lightgcn expects the directory that holds train.txt and test.txt.\n"
            f"Fix: pass {root.parent}."
        )
    if not root.is_dir():
        raise FileNotFoundError(f"LightGCN directory {root} does not exist.\nFix: pass a directory holding "
                                "train.txt and test.txt (e.g. ../shared/data/retrieval/gowalla).")
    for fname in ("train.txt", "test.txt"):
        if not (root / fname).is_file():
            raise FileNotFoundError(
                f"{root / fname} is missing: a LightGCN-format directory needs train.txt and test.txt "
                f"(found {sorted(p.name for p in root.iterdir())}).\nFix: point at the folder of the split."
            )
    train_users, train_items, train_line_users = read_user_item_lists(root / "train.txt")
    test_users, test_items, test_line_users = read_user_item_lists(root / "test.txt")
    if train_users.size == 0:
        raise DataValidationError(
            f"{root / 'train.txt'} holds no interactions.\n"
            "Fix: each line must read 'user item item ...' with integer ids."
        )
    n_users = int(max(train_line_users.max(initial=-1), test_line_users.max(initial=-1))) + 1
    n_items = int(max(train_items.max(initial=-1), test_items.max(initial=-1))) + 1
    return LightGCNDataset(
        train=pd.DataFrame({"user_id": train_users, "item_id": train_items}),
        test=pd.DataFrame({"user_id": test_users, "item_id": test_items}),
        n_users=n_users,
        n_items=n_items,
        name=root.name if name is None else name,
    )


def read_user_item_lists(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``user item item ...`` lines: (user per interaction, item per interaction, user of every line)."""
    counts, values, _ = read_int_lines(path)
    starts = np.cumsum(counts) - counts
    line_users = values[starts]
    is_item = np.ones(values.size, dtype=bool)
    is_item[starts] = False
    users = np.repeat(line_users, counts - 1)
    return users, values[is_item], line_users


def read_int_lines(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a file of whitespace-separated non-negative integers, skipping blank lines.

    Returns (tokens per non-empty line, all values flattened as int64, 1-based line numbers of
    the non-empty lines). Tokenising is one pass of ``bytes.split`` and a single numpy conversion:
    about 0.3 s for Gowalla's 840k tokens.
    """
    raw = Path(path).read_bytes()
    lines = raw.splitlines()
    parts = [line.split() for line in lines]
    counts = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    keep = counts > 0
    if raw.translate(None, _ALLOWED):
        _raise_bad_token(path, parts)
    try:
        values = np.array(list(chain.from_iterable(parts)), dtype=np.int64)
    except (ValueError, OverflowError):
        _raise_bad_token(path, parts, max_digits=18)
    line_numbers = np.flatnonzero(keep) + 1
    return counts[keep], values.reshape(-1), line_numbers


def _raise_bad_token(path: Path, parts: list[list[bytes]], max_digits: int | None = None) -> None:
    """Find the first token that is not a non-negative int64 and raise naming file, line and token."""
    for lineno, tokens in enumerate(parts, start=1):
        for col, tok in enumerate(tokens, start=1):
            if not tok.isdigit() or (max_digits is not None and len(tok.lstrip(b"0")) > max_digits):
                raise DataValidationError(
                    f"{path}, line {lineno}, token {col}: {tok.decode(errors='replace')!r} is not a "
                    "non-negative integer id (below 2**63).\n"
                    f"Line {lineno} reads: {b' '.join(tokens).decode(errors='replace')[:120]!r}\n"
                    "Fix: every line must read 'user item item ...' with 0-based integer ids separated by spaces."
                )
    raise DataValidationError(f"{path}: could not parse the file as whitespace-separated integers.")


def _pair_keys(frame: pd.DataFrame, n_items: int) -> np.ndarray:
    return frame["user_id"].to_numpy(np.int64) * max(n_items, 1) + frame["item_id"].to_numpy(np.int64)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based unique is several times slower on 1M int64 keys)."""
    s = np.sort(keys)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if s.size else s


def _to_csr(frame: pd.DataFrame, n_users: int, n_items: int):
    import scipy.sparse as sp

    rows = frame["user_id"].to_numpy(np.int64)
    cols = frame["item_id"].to_numpy(np.int64)
    mat = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    mat.sum_duplicates()
    mat.data[:] = 1.0  # binary: a pair listed twice is still one interaction
    return mat
