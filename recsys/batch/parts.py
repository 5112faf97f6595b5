"""The files of a local batch job's output directory, each published atomically.

``part-{i:05d}.parquet``: part ``i`` of the plan, written to a hidden temp file (``.part-*.tmp-<pid>-<hex>``),
fsynced and renamed, so a part is visible only when complete; ``_job.json``: what the job scores (the
fingerprint of its inputs), written before the first part; ``_manifest.json`` and ``_SUCCESS`` at the end.
A kill leaves at most temp files, which the next run removes (one job at a time holds ``.lock``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import ConfigError
from recsys.storage.atomic import fsync_path

__all__ = ["JOB_FILE", "MANIFEST_FILE", "SUCCESS_FILE", "part_path", "part_files", "part_rows", "write_part",
           "write_json", "read_json", "remove_strays", "remove_outputs", "job_lock", "arrow_schema"]

JOB_FILE, MANIFEST_FILE, SUCCESS_FILE, LOCK_FILE = "_job.json", "_manifest.json", "_SUCCESS", ".lock"
_PART = re.compile(r"^part-\d{5,}\.parquet$")
_TEMP = re.compile(r"^\.(part-\d{5,}\.parquet|_job\.json|_manifest\.json)\.tmp-\d+-[0-9a-f]{8}$")


def part_path(out: Path, i: int) -> Path:
    """Where part ``i`` is published."""
    return out / f"part-{i:05d}.parquet"


def part_files(out: Path) -> list[Path]:
    """The published parts in ``out``, by name."""
    return sorted(p for p in out.iterdir() if _PART.match(p.name))


def part_rows(path: Path) -> int | None:
    """The row count in a part's Parquet footer; None when the part is absent or its footer does not read."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError, Exception):  # noqa: BLE001 - any unreadable file is a part to write again
        return None


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _publish(tmp: Path, path: Path) -> None:
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_part(frame: pd.DataFrame, path: Path, schema: Any) -> int:
    """Write ``frame`` as the Parquet file ``path``, atomically (temp file, fsync, rename); its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    tmp = _temp(path)
    try:
        pq.write_table(table, tmp)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return table.num_rows


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON at ``path``, atomically."""
    tmp = _temp(path)
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``; None when absent. A file that is not JSON is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not JSON ({e}); it was not written by recsys score. Remove it, or rerun "
                          "with restart=True (--restart) to start the job over") from None
    return data if isinstance(data, dict) else {}


def remove_strays(out: Path) -> int:
    """Remove temp files a killed run left in ``out``; how many."""
    strays = [p for p in out.iterdir() if _TEMP.match(p.name)]
    for p in strays:
        p.unlink(missing_ok=True)
    return len(strays)


def remove_outputs(out: Path) -> None:
    """Remove every file a job wrote in ``out`` (parts, job file, manifest, marker, temp files); nothing else."""
    remove_strays(out)
    for p in part_files(out):
        p.unlink(missing_ok=True)
    for name in (SUCCESS_FILE, MANIFEST_FILE, JOB_FILE):
        (out / name).unlink(missing_ok=True)
    fsync_path(out)


@contextmanager
def job_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for one job (released by the kernel when the process dies, even by SIGKILL)."""
    with open(out / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another recsys score job is writing {out}: wait for it to finish, or write to "
                              "another directory") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def arrow_schema(user_kind: str, item_kind: str, nested: bool) -> Any:
    """The Arrow schema of a part: ids int64 or string as the model's are (``id_kind``: "int" / "str"), the rest
    fixed (:data:`recsys.batch.rows.ROW_COLUMNS`; ``nested``: the feed a list of structs). None (Arrow infers
    it) for a model with mixed ids ("any")."""
    import pyarrow as pa

    if "any" in (user_kind, item_kind):
        return None

    def id_type(kind: str) -> Any:
        return pa.int64() if kind == "int" else pa.string()

    feed = [pa.field("rank", pa.int32()), pa.field("item_id", id_type(item_kind)), pa.field("score", pa.float64()),
            pa.field("pctr", pa.float64()), pa.field("pcvr", pa.float64()), pa.field("reason", pa.string()),
            pa.field("fallback", pa.string())]
    head = [pa.field("user_id", id_type(user_kind)), pa.field("media_id", pa.string())]
    tail = [pa.field("model_name", pa.string()), pa.field("model_version", pa.string()),
            pa.field("scored_at", pa.timestamp("us"))]
    if nested:
        return pa.schema([*head, pa.field("feed", pa.list_(pa.struct(feed))), *tail])
    return pa.schema([*head, *feed, *tail])
