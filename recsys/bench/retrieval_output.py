"""The JSON file both retrieval benchmarks (the two-tower run and the fused pipeline) write their result to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recsys.storage.atomic import write_text_atomically


def _write_json(result: dict[str, Any], json_path: str | Path) -> None:
    path = write_text_atomically(json_path, json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {path}", flush=True)
