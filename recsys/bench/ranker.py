"""Ranker benchmark: both rankers against baselines on the synthetic world, real Taobao carts and Ali-CCP.

``run_ranker_benchmark(data, data_dir=None, json_path=None, n_events=1_000_000)`` returns a dict and
writes ``experiments/ranker/results_<data>[_<n>].json`` plus ``experiments/ranker/README.md`` (tables of
every results file present). The pieces, by role: :mod:`.ranker_common` (the model zoo, the timing/memory
meter and the scoring the datasets share), :mod:`.ranker_synthetic`, :mod:`.ranker_real` (Taobao carts,
Ali-CCP) and :mod:`.ranker_report` (the README tables).

- ``synthetic``: impressions of the affiliate world, time split (last 20% of events tested). GBDT,
  ESMM (and ESMM + ESCM2-IPS), LightGBM on the same features, and a popularity-and-price baseline
  (item's smoothed CTR/CVR; price and commission enter through the objective). CTR AUC on
  impressions, CVR AUC on clicks, CTCVR AUC, GAUC by user and partner, LogLoss, ECE (also for an "oracle"
  row: the probabilities that generated the test impressions, the ceiling), an ablation
  without the CVR statistics, a leakage check, and expected commission per 1,000 impressions when
  each model re-ranks sampled test requests by each objective (valued with the world's true
  probabilities).
- ``taobao-multibehavior``: which carted items get bought (real users); see :func:`.ranker_real._taobao_rows`.
- ``ali-ccp``: the loader's splits (the shared 100/50/50-row sample, or a full release folder).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

# re-exported: the CLI, tests/test_ranker_bench.py and experiments/ranker/*.py use these through this module
from recsys.bench.ranker_common import OUT_DIR, Meter, _zoo, ratio_interval  # noqa: F401
from recsys.bench.ranker_real import _ali_ccp, _taobao, _taobao_rows  # noqa: F401
from recsys.bench.ranker_report import render_readme
from recsys.bench.ranker_synthetic import _chunked, _leakage_demo, _synthetic, _truth_rates  # noqa: F401
from recsys.errors import ConfigError

DATASETS = ("synthetic", "taobao-multibehavior", "ali-ccp")


def _default_dir(data: str) -> Path:
    from recsys.datasets.paths import require_shared

    return require_shared({"taobao-multibehavior": "multibehavior/taobao", "ali-ccp": "ranking/ali-ccp"}[data])


def run_ranker_benchmark(data: str = "synthetic", data_dir: str | Path | None = None,
                         json_path: str | Path | None = None, n_events: int = 1_000_000, *, quick: bool = False,
                         out_dir: str | Path | None = OUT_DIR) -> dict:
    """Run one dataset's ranker benchmark; write its JSON (and the README of all results) under ``out_dir``.

    ``n_events`` sizes the synthetic world, or caps the rows per split read from a full Ali-CCP release.
    ``quick`` shrinks models and samples for smoke tests.
    """
    if data not in DATASETS:
        raise ConfigError(f"--data {data!r} is unknown; choose from {list(DATASETS)}.")
    command = f"recsys benchmark ranker --data {data}" + (f" --data-dir {data_dir}" if data_dir else "")
    if data == "synthetic" and n_events != 1_000_000:
        command = f"python -m recsys.bench.ranker --data synthetic --n-events {n_events}"
    with Meter() as total:
        if data == "synthetic":
            result = _synthetic(int(n_events), quick, plot_dir=out_dir)
        elif data == "taobao-multibehavior":
            result = _taobao(Path(data_dir) if data_dir else _default_dir(data), quick)
        else:
            max_rows = None if n_events == 1_000_000 else int(n_events)  # the default size means "all rows"
            result = _ali_ccp(Path(data_dir) if data_dir else _default_dir(data), quick, max_rows)
    result = {"benchmark": "ranker", "command": command, "machine": _machine(), "quick": quick, **result,
              "total": total.as_dict()}
    text = json.dumps(result, indent=2, default=str) + "\n"
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        suffix = f"_{n_events}" if data == "synthetic" else ""
        (out / f"results_{data}{suffix}.json").write_text(text)
        (out / "README.md").write_text(render_readme(out))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text)
    return result


def _machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> None:
    """``python -m recsys.bench.ranker --data synthetic --n-events 10000000``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", choices=DATASETS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--n-events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run_ranker_benchmark(args.data, data_dir=args.data_dir, json_path=args.json_path, n_events=args.n_events,
                         quick=args.quick)
    print((OUT_DIR / "README.md").read_text())


if __name__ == "__main__":
    main()
