"""The JSON file both retrieval benchmarks (the two-tower run and the fused pipeline) write their result to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _write_json(result: dict[str, Any], json_path: str | Path) -> None:
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {path}", flush=True)
