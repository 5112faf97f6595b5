"""How long the synthetic affiliate world takes to generate, and how much memory, at each size.

``run_synthetic_benchmark(sizes)`` generates each size in a fresh Python process (so peak memory is
that run's alone), ``repeats`` times, and reports the median seconds, the peak resident memory, the
growth over the process baseline and bytes per event, with ratios against the smallest size, side
by side. It writes ``experiments/synthetic/results.json`` and ``experiments/synthetic/README.md``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
import pyarrow, recsys.datasets.synthetic as syn  # imports count in the baseline
n, seed = int(sys.argv[1]), int(sys.argv[2])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
world = syn.generate_world(n, seed=seed, progress=False)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = world.summary()
print(json.dumps({"seconds": seconds, "peak_rss_kib": peak, "base_rss_kib": base,
                  "frame_bytes": int(world.events.memory_usage(deep=True).sum()), "events": s["events"],
                  "users": s["users"], "items": s["items"], "ctr": s["ctr"],
                  "purchase_per_click": s["purchase_per_click"]}))
"""


def _one_run(n_events: int, seed: int) -> dict:
    env = {**os.environ, "CI": "true"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n_events), str(seed)], capture_output=True,
                         text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"generating {n_events:,} events failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_synthetic_benchmark(sizes: Sequence[int] = (1_000_000, 10_000_000), *, repeats: int = 3, seed: int = 0,
                            out_dir: str | Path | None = "experiments/synthetic",
                            json_path: str | Path | None = None) -> dict:
    """Median generation time and peak memory per size (fresh process per run); writes JSON + markdown."""
    rows = []
    for n in sorted(sizes):
        runs = [_one_run(int(n), seed) for _ in range(max(1, repeats))]
        peak = statistics.median(r["peak_rss_kib"] for r in runs) / 1024
        growth = statistics.median((r["peak_rss_kib"] - r["base_rss_kib"]) for r in runs) / 1024
        rows.append({
            "n_events_requested": int(n), "events": runs[0]["events"], "users": runs[0]["users"],
            "items": runs[0]["items"], "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
            "seconds_all": [round(r["seconds"], 3) for r in runs], "peak_rss_mib": round(peak, 1),
            "rss_growth_mib": round(growth, 1), "events_frame_mib": round(runs[0]["frame_bytes"] / 2**20, 1),
            "peak_growth_bytes_per_event": round(growth * 2**20 / runs[0]["events"], 1),
            "ctr": round(runs[0]["ctr"], 4), "purchase_per_click": round(runs[0]["purchase_per_click"], 4),
        })
    first = rows[0]
    for r in rows:
        r["size_ratio"] = round(r["events"] / first["events"], 2)
        r["time_ratio"] = _ratio(r["seconds_median"], first["seconds_median"])
        r["memory_growth_ratio"] = _ratio(r["rss_growth_mib"], first["rss_growth_mib"])
    result = {
        "benchmark": "synthetic", "command": _command(sizes, repeats, seed), "repeats": repeats, "seed": seed,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "rows": rows,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "README.md").write_text(_markdown(result))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _ratio(a: float, b: float) -> float | None:
    """a / b, or None when the reference is zero (tiny sizes may not raise the peak at all)."""
    return round(a / b, 2) if b > 0 else None


def _command(sizes: Sequence[int], repeats: int, seed: int) -> str:
    return (f"python -m recsys.bench.synthetic --sizes {','.join(str(s) for s in sorted(sizes))} "
            f"--repeats {repeats} --seed {seed}")


def _markdown(result: dict) -> str:
    lines = [
        "# Synthetic affiliate world: generation time and memory", "",
        f"Command: `{result['command']}` (each run in a fresh process; medians of {result['repeats']}).", "",
        f"Machine: {result['machine']['cpus']} CPUs, Python {result['machine']['python']}, load average at start "
        f"{result['machine']['load_average_at_start']} (shared machine: timings include contention).", "",
        "| events | users | items | seconds (median) | time ratio | peak RSS MiB | growth MiB | growth ratio "
        "| bytes/event | events frame MiB | CTR | purchases/click |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['events']:,} | {r['users']:,} | {r['items']:,} | {r['seconds_median']} | {r['time_ratio']} "
            f"| {r['peak_rss_mib']} | {r['rss_growth_mib']} | {r['memory_growth_ratio']} "
            f"| {r['peak_growth_bytes_per_event']} | {r['events_frame_mib']} | {r['ctr']} "
            f"| {r['purchase_per_click']} |")
    lines += ["", "Growth is peak resident memory minus the process's resident memory before generating "
              "(imports included in the baseline); ratios are against the smallest size.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m recsys.bench.synthetic --sizes 1000000,10000000 --repeats 3``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="experiments/synthetic")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    result = run_synthetic_benchmark(sizes, repeats=args.repeats, seed=args.seed, out_dir=args.out_dir)
    print(_markdown(result))


if __name__ == "__main__":
    main()
