"""Where the shared real public data lives: ``../shared/data`` beside the repository, or ``$RECSYS_SHARED_DATA``.

The datasets themselves are never copied into the repository (their licences do not allow it);
each folder there carries a PROVENANCE.md with its source, checksums and reference counts.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "RECSYS_SHARED_DATA"
_REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """The shared data directory: ``$RECSYS_SHARED_DATA`` if set, else ``<repo>/../shared/data``; None if absent."""
    env = os.environ.get(ENV_VAR)
    path = Path(env).expanduser() if env else _REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


def require_shared(subpath: str | os.PathLike[str] = "") -> Path:
    """``shared_data_dir() / subpath``, or a FileNotFoundError that says where it looked and how to fix it."""
    root = shared_data_dir()
    if root is None:
        env = os.environ.get(ENV_VAR)
        looked = env if env else str(_REPO.parent / "shared" / "data")
        raise FileNotFoundError(
            f"the shared real-data directory is absent (looked at {looked}).\n"
            f"Fix: set {ENV_VAR}=/path/to/shared/data, or place the data at {_REPO.parent / 'shared' / 'data'}."
        )
    path = root / subpath
    if not path.exists():
        parent = path.parent
        while not parent.is_dir():
            parent = parent.parent
        available = sorted(p.name for p in parent.iterdir())
        raise FileNotFoundError(
            f"{path} does not exist inside the shared data directory {root}.\n"
            f"Fix: check the name; {parent} holds {available}."
        )
    return path
