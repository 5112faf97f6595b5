"""What both retrieval benchmarks (the two-tower run and the fused pipeline) add to their result: the
implicit-ALS row fitted beside the model, and the JSON file it is written to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import scipy.sparse as sp


def _log(msg: str) -> None:
    print(msg, flush=True)


def _add_baselines(result: dict[str, Any], train: sp.csr_matrix, test: sp.csr_matrix) -> None:
    """implicit-ALS fitted in the same process, and the two-tower's ratio to it."""
    from recsys.fit.baselines import evaluate_baselines

    als = evaluate_baselines(train, test, names=("implicit-als",))["implicit-als"]
    result["implicit-als"] = als
    if "recall@20" in als:
        result["ratio_vs_als"] = {k: round(result[k] / als[k], 3) for k in ("recall@20", "ndcg@20")}


def _write_json(result: dict[str, Any], json_path: str | Path) -> None:
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    _log(f"wrote {path}")
