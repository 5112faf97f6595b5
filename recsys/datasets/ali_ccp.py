"""Ali-CCP (Alibaba Click and Conversion Prediction, Tianchi dataset 408; ESMM, SIGIR 2018) loaders.

Two layouts are read, detected from the folder's contents:

- **processed CSVs** ``ali_ccp_{train,val,test}[_sample].csv`` as torch-rechub's preprocessing writes them
  (``../shared/data/ranking/ali-ccp`` holds its 100/50/50-row samples; see that PROVENANCE.md): columns
  click, purchase, 23 label-encoded sparse fields and 8 dense ``D*`` values.
- **the full public release** ``sample_skeleton_{train,test}.csv`` + ``common_features_{train,test}.csv``
  (tens of GB; streamed by :func:`iter_ali_ccp_full`). A skeleton line is
  ``sample_id,click,buy,common_feature_index,num_features,feature_list`` and a common-features line is
  ``common_feature_index,num_features,feature_list``; a feature list joins features with ``\\x01``, each
  ``field\\x02feature_id\\x03value``. Sparse columns take the feature id, dense ``D*`` columns the value of
  the same field; a repeated field keeps its last occurrence and an absent one reads 0, as in the
  torch-rechub preprocessing, so both layouts give the same columns (the full layout's ids are raw,
  not label-encoded, and it adds ``sample_id``).

Rows with a purchase but no click break the funnel and are dropped with a warning (the reference
preprocessing drops them too).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.datasets.ranking_samples import check_funnel_labels
from recsys.errors import DataValidationError
from recsys.progress import show_progress

SPARSE_FIELDS: tuple[str, ...] = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206",
                                  "207", "210", "216", "508", "509", "702", "853", "301", "109_14", "110_14",
                                  "127_14", "150_14")
DENSE_FIELDS: tuple[str, ...] = ("109_14", "110_14", "127_14", "150_14", "508", "509", "702", "853")
DENSE_COLUMNS: tuple[str, ...] = tuple("D" + f for f in DENSE_FIELDS)
LABELS: tuple[str, ...] = ("click", "purchase")
COLUMNS: tuple[str, ...] = (*LABELS, *SPARSE_FIELDS, *DENSE_COLUMNS)
FIELD_MEANING: dict[str, str] = {
    "101": "user", "121": "user profile", "122": "user profile", "124": "gender", "125": "age",
    "126": "consumption level", "127": "consumption level", "128": "occupation", "129": "geography",
    "205": "item", "206": "item category", "207": "shop", "210": "intention node", "216": "brand",
    "301": "scenario/position", "508": "user x category", "509": "user x shop", "702": "user x node",
    "853": "user x brand", "109_14": "14-day categories", "110_14": "14-day shops",
    "127_14": "14-day brands", "150_14": "14-day intention nodes",
}
_PROCESSED = re.compile(r"^ali_ccp_(train|val|test)(?:_sample)?\.csv$")
_SKELETON = "sample_id,click,buy,common_feature_index,num_features,feature_list"
_COMMON = "common_feature_index,num_features,feature_list"
_SPARSE_POS = {f: i for i, f in enumerate(SPARSE_FIELDS)}
_DENSE_POS = {f: i for i, f in enumerate(DENSE_FIELDS)}
# (field, sparse column or None, dense column or None) for every field we keep
_FIELD_POS = tuple((f, _SPARSE_POS.get(f), _DENSE_POS.get(f)) for f in dict.fromkeys((*SPARSE_FIELDS, *DENSE_FIELDS)))


def detect_ali_ccp_format(path: str | Path) -> str:
    """'processed' (ali_ccp_*.csv) or 'full' (sample_skeleton_*.csv + common_features_*.csv)."""
    root = _require_dir(path)
    names = {p.name for p in root.iterdir()}
    processed = any(_PROCESSED.match(n) for n in names)
    full = any(n.startswith("sample_skeleton_") and n.endswith(".csv") for n in names)
    if processed and full:
        raise DataValidationError(f"{root} holds both processed ali_ccp_*.csv files and the full release's "
                                  "sample_skeleton_*.csv.\nFix: pass format='processed' or format='full'.")
    if not (processed or full):
        raise FileNotFoundError(
            f"{root} holds no Ali-CCP files (found {sorted(names)}).\nFix: point at a folder with "
            "ali_ccp_{train,val,test}[_sample].csv or sample_skeleton_{train,test}.csv + common_features_*.csv."
        )
    return "processed" if processed else "full"


def load_ali_ccp(path: str | Path, *, splits: tuple[str, ...] | None = None, max_rows: int | None = None,
                 format: str = "auto") -> dict[str, pd.DataFrame]:
    """Load every split found (or ``splits``) as {split: frame}, one row per impression, columns COLUMNS.

    Splits are train/val/test for processed CSVs and train/test for the full release; ``max_rows``
    caps each split (use :func:`iter_ali_ccp_full` to stream the full release instead).
    """
    root = _require_dir(path)
    fmt = detect_ali_ccp_format(root) if format == "auto" else format
    if fmt == "processed":
        files = {m.group(1): root / n for n in sorted(p.name for p in root.iterdir()) if (m := _PROCESSED.match(n))}
    elif fmt == "full":
        files = {s: root / f"sample_skeleton_{s}.csv" for s in ("train", "test")
                 if (root / f"sample_skeleton_{s}.csv").is_file()}
    else:
        raise ValueError(f"format must be 'auto', 'processed' or 'full', got {format!r}")
    wanted = tuple(files) if splits is None else splits
    absent = [s for s in wanted if s not in files]
    if absent:
        raise FileNotFoundError(f"{root} has no {fmt} Ali-CCP file for split(s) {absent}; found {sorted(files)}.")
    if fmt == "processed":
        return {s: read_ali_ccp_csv(files[s], nrows=max_rows) for s in wanted}
    return {s: _collect(iter_ali_ccp_full(root, s), max_rows) for s in wanted}


def read_ali_ccp_csv(path: str | Path, *, nrows: int | None = None) -> pd.DataFrame:
    """Read one processed Ali-CCP CSV: labels int8, sparse fields int64, dense D* float64; extra columns kept."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {missing}.\nFix: a processed Ali-CCP CSV has the header "
            f"{','.join(COLUMNS)} (torch-rechub's preprocessing output)."
        )
    dtypes = {**{c: "int64" for c in (*LABELS, *SPARSE_FIELDS)}, **{c: "float64" for c in DENSE_COLUMNS}}
    try:
        df = pd.read_csv(path, dtype=dtypes, nrows=nrows)
    except (ValueError, pd.errors.ParserError) as e:
        raise DataValidationError(f"{path}: a value does not fit its column ({e}).\n"
                                  "Fix: labels and sparse fields must be integers, D* columns numbers.") from None
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df[[*COLUMNS, *extra]]
    return check_funnel_labels(df, str(path))


def iter_ali_ccp_full(path: str | Path, split: str = "train", *, chunk_rows: int = 500_000,
                      drop_inconsistent: bool = True) -> Iterator[pd.DataFrame]:
    """Stream the full release's ``split`` (train or test) in frames of at most ``chunk_rows`` impressions.

    The common-features file (user-side features, shared by many impressions) is read first into
    compact arrays (a few hundred bytes per distinct common index); the skeleton is then streamed.
    Columns: sample_id, click, purchase, the 23 sparse fields (raw feature ids), the 8 D* values.
    """
    root = _require_dir(path)
    skeleton, common = root / f"sample_skeleton_{split}.csv", root / f"common_features_{split}.csv"
    for f in (skeleton, common):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; the full Ali-CCP release has sample_skeleton_{split}.csv and "
                                    f"common_features_{split}.csv side by side.")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return _iter_full(skeleton, common, split, chunk_rows, drop_inconsistent)


def _iter_full(skeleton: Path, common: Path, split: str, chunk_rows: int,
               drop_inconsistent: bool) -> Iterator[pd.DataFrame]:
    index, c_sparse, c_dense, c_has_s, c_has_d = _read_common(common)
    dropped = 0
    chunk = _Chunk(chunk_rows)
    for lineno, parts, line in _records(skeleton, "Ali-CCP " + split, _SKELETON):
        try:
            sid, click, buy = int(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            _bad_line(skeleton, lineno, "sample_id, click and buy must be integers", _SKELETON, line)
        if click not in (0, 1) or buy not in (0, 1):
            _bad_line(skeleton, lineno, f"click={click}, buy={buy}: labels must be 0 or 1", _SKELETON, line)
        if buy and not click and drop_inconsistent:
            dropped += 1
            continue
        ci = index.get(parts[3])
        if ci is None:
            _bad_line(skeleton, lineno, f"common_feature_index {parts[3]!r} is not in {common.name}",
                      "use the common_features file of the same split")
        r = chunk.n
        chunk.meta[r] = (sid, click, buy, ci)
        _parse_features(parts[5], parts[4], chunk.sparse[r], chunk.dense[r], skeleton, lineno)
        chunk.n += 1
        if chunk.n == chunk_rows:
            yield chunk.frame(c_sparse, c_dense, c_has_s, c_has_d)
            chunk = _Chunk(chunk_rows)
    if chunk.n:
        yield chunk.frame(c_sparse, c_dense, c_has_s, c_has_d)
    if dropped:
        warnings.warn(f"{skeleton.name}: dropped {dropped} impressions with buy=1 but click=0 "
                      "(a purchase must follow a click).", stacklevel=2)


class _Chunk:
    """Preallocated arrays for up to ``size`` skeleton rows, merged with common features on output."""

    def __init__(self, size: int) -> None:
        self.n = 0
        self.meta = np.zeros((size, 4), dtype=np.int64)  # sample_id, click, buy, common row
        self.sparse = np.zeros((size, len(SPARSE_FIELDS)), dtype=np.int64)
        self.dense = np.zeros((size, len(DENSE_FIELDS)), dtype=np.float64)
        self.sparse[:] = -1  # -1 = field absent on the skeleton line
        self.dense[:] = np.nan

    def frame(self, c_sparse, c_dense, c_has_s, c_has_d) -> pd.DataFrame:
        n, meta = self.n, self.meta[: self.n]
        ci = meta[:, 3]
        sparse = np.where(c_has_s[ci], c_sparse[ci], self.sparse[:n])  # common features win, as in ESMM's prep
        dense = np.where(c_has_d[ci], c_dense[ci], self.dense[:n])
        sparse[sparse < 0] = 0
        dense = np.nan_to_num(dense, nan=0.0)
        cols: dict[str, np.ndarray] = {"sample_id": meta[:, 0], "click": meta[:, 1].astype(np.int8),
                                       "purchase": meta[:, 2].astype(np.int8)}
        cols.update({f: sparse[:, j] for j, f in enumerate(SPARSE_FIELDS)})
        cols.update({c: dense[:, j] for j, c in enumerate(DENSE_COLUMNS)})
        return pd.DataFrame(cols)


def _read_common(path: Path):
    """Parse common_features_*.csv into {index: row} and (sparse, dense, has_sparse, has_dense) arrays."""
    index: dict[str, int] = {}
    cap = 1024
    sparse = np.full((cap, len(SPARSE_FIELDS)), -1, dtype=np.int64)
    dense = np.full((cap, len(DENSE_FIELDS)), np.nan, dtype=np.float64)
    for lineno, parts, _line in _records(path, "Ali-CCP common features", _COMMON):
        if parts[0] in index:
            _bad_line(path, lineno, f"common_feature_index {parts[0]!r} appears twice", "keep one line per index")
        row = len(index)
        if row == cap:
            cap *= 2
            sparse = np.concatenate([sparse, np.full_like(sparse, -1)])
            dense = np.concatenate([dense, np.full_like(dense, np.nan)])
        index[parts[0]] = row
        _parse_features(parts[2], parts[1], sparse[row], dense[row], path, lineno)
    n = len(index)
    sparse, dense = sparse[:n], dense[:n]
    return index, sparse, dense, sparse >= 0, ~np.isnan(dense)


def _records(path: Path, desc: str, header: str) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, line) of each non-blank line of ``path`` under a byte progress bar.

    A line splits into as many comma-separated fields as ``header`` names (the last keeps its commas);
    any other count is a DataValidationError that shows the line.
    """
    n = header.count(",") + 1
    with path.open("r", encoding="utf-8", newline="\n") as fh, progress(path, desc) as bar:
        for lineno, line in enumerate(fh, start=1):
            bar.update(len(line))
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split(",", n - 1)
            if len(parts) != n:
                _bad_line(path, lineno, f"expected {n} comma-separated fields, found {len(parts)}", header, line)
            yield lineno, parts, line


def _parse_features(text: str, declared: str, sparse_row: np.ndarray, dense_row: np.ndarray,
                    path: Path, lineno: int) -> None:
    """Fill one row from a ``field\\x02id\\x03value`` list joined by ``\\x01``; the last repeat of a field wins.

    Features are split into a {field: "id\\x03value"} dict first (later repeats overwrite earlier
    ones) and only the kept fields are converted: about 3x faster than converting every feature on
    the full release's user lines, which hold hundreds of history features.
    """
    feats = text.split("\x01") if text else []
    n = len(feats)
    if declared.strip() != str(n) or text.count("\x02") != n or text.count("\x03") != n:
        _bad_line(path, lineno, f"num_features says {declared!r} but the list holds {n} well-formed features",
                  "features 'field\\x02feature_id\\x03value' joined by '\\x01', as many as num_features")
    last = dict(feat.split("\x02", 1) for feat in feats)
    for field, js, jd in _FIELD_POS:
        got = last.get(field)
        if got is None:
            continue
        try:
            fid, value = got.split("\x03")
            if js is not None:
                sparse_row[js] = int(fid)
            if jd is not None:
                dense_row[jd] = float(value)
        except ValueError as e:
            _bad_line(path, lineno, f"malformed feature of field {field} ({e})",
                      "features 'field\\x02feature_id\\x03value' with an integer id and a numeric value")


def _bad_line(path: Path, lineno: int, problem: str, expected: str, line: str | None = None) -> None:
    shown = "" if line is None else f"\nLine {lineno} reads: {line.rstrip()[:120]!r}"
    raise DataValidationError(f"{path}, line {lineno}: {problem}.{shown}\nExpected: {expected}")


def _collect(chunks: Iterator[pd.DataFrame], max_rows: int | None) -> pd.DataFrame:
    frames, total = [], 0
    for frame in chunks:
        frames.append(frame)
        total += len(frame)
        if max_rows is not None and total >= max_rows:
            break
    if not frames:
        empty_s, empty_d = np.zeros((0, len(SPARSE_FIELDS)), np.int64), np.zeros((0, len(DENSE_FIELDS)))
        return _Chunk(0).frame(empty_s, empty_d, empty_s > 0, empty_d > 0)
    out = pd.concat(frames, ignore_index=True)
    return out if max_rows is None else out.head(max_rows)


def progress(path: Path, desc: str):
    """A byte-counting tqdm bar over a file, shown only where :func:`recsys.progress.show_progress` allows."""
    if not show_progress():
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(total=path.stat().st_size, desc=desc, unit="B", unit_scale=True)


class _NoBar:
    def update(self, n: int) -> None:
        pass


def _require_dir(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Ali-CCP directory {root} does not exist (or is not a directory).\n"
                                "Fix: pass the folder that holds the Ali-CCP CSV files.")
    return root
