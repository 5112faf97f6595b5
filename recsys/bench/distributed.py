"""One process against ``torchrun --nproc_per_node=N``: the retrieval stage's quality and wall time, side by side.

``run_distributed_benchmark(config)`` runs ``recsys train retrieval -c CONFIG --no-tracking`` once in one
process and once under ``torchrun --standalone --nproc_per_node=N`` (alternating, ``repeats`` times),
each in fresh processes with the same total thread budget (one process with ``threads`` threads, N
processes with ``threads // N`` each), and reports Recall@20 / NDCG@20 on the test split, the
epochs run and chosen, the training and whole-command wall seconds (medians) and the largest weight
difference between the two saved models. It writes ``results.json`` and ``README``-ready markdown
(``table.md``) under ``out_dir``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from recsys.errors import ConfigError

__all__ = ["run_distributed_benchmark"]


def _command(config: Path, out: Path, nproc: int, overrides: Sequence[str]) -> list[str]:
    train = ["-m", "recsys", "train", "retrieval", "-c", str(config), "--no-tracking", "--quiet",
             "--set", f"output.dir={out}", *[a for o in overrides for a in ("--set", o)]]
    if nproc == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *train]


def _one_run(config: Path, name: str, out: Path, nproc: int, threads: int, overrides: Sequence[str]) -> dict:
    """``threads``: torch threads of each process."""
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(_command(config, out, nproc, overrides), capture_output=True, text=True, env=env,
                          check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{nproc}-process run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    ev = json.loads((out / name / "evaluation.json").read_text())
    tt, tr = ev["retrieval"]["two-tower"], ev["training"]
    return {"processes": tr["processes"], "threads_per_process": threads,
            "recall@20": tt["recall@20"], "ndcg@20": tt["ndcg@20"], "best_epoch": tr["best_epoch"],
            "epochs_run": tr["epochs_run"], "train_seconds": round(tr["train_seconds"], 2),
            "command_seconds": round(wall, 2), "loadavg_after": os.getloadavg()[0],
            "validation": [{k: v for k, v in h.items() if k != "seconds"} for h in tr["history"]],
            "model": str(out / name / "retrieval" / "model" / "model.safetensors")}


def _weight_gap(a: str, b: str) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(a), load_file(b)
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 4)


def run_distributed_benchmark(config: str | Path, *, nproc: int = 2, threads: int = 2, repeats: int = 1,
                              overrides: Sequence[str] = (), out_dir: str | Path | None = "experiments/distributed",
                              tag: str | None = None, single_threads: int | None = None) -> dict:
    """Median quality and time of 1 process vs ``nproc`` processes on ``config``'s retrieval stage.

    The ``nproc`` processes get ``threads // nproc`` threads each; the one process gets ``single_threads``
    (default ``threads``: the same budget).
    """
    from recsys.fit.settings import load_config

    if nproc < 2:
        raise ConfigError(f"nproc must be >= 2 to compare with one process, got {nproc}")
    config = Path(config)
    name = load_config(config, overrides=overrides).name
    runs: dict[int, list[dict]] = {1: [], nproc: []}
    with tempfile.TemporaryDirectory(prefix="recsys-ddp-") as tmp:
        for rep in range(max(1, repeats)):
            for n in ((1, nproc) if rep % 2 == 0 else (nproc, 1)):  # alternate so drifting load hits both
                per = (single_threads or threads) if n == 1 else max(1, threads // nproc)
                runs[n].append(_one_run(config, name, Path(tmp) / f"{n}-{rep}", n, per, overrides))
        gap = _weight_gap(runs[1][0]["model"], runs[nproc][0]["model"])
    for rs in runs.values():
        for r in rs:
            r.pop("model")
    summary = {str(n): {k: _median(rs, k) for k in ("recall@20", "ndcg@20", "train_seconds", "command_seconds")}
               | {"best_epoch": rs[0]["best_epoch"], "epochs_run": rs[0]["epochs_run"]} for n, rs in runs.items()}
    one, many = summary["1"], summary[str(nproc)]
    result = {"config": str(config), "overrides": list(overrides), "nproc": nproc, "threads_total": threads,
              "threads_single_process": single_threads or threads,
              "repeats": repeats, "summary": summary, "runs": {str(n): rs for n, rs in runs.items()},
              "max_weight_difference_first_pair": gap,
              "ratios": {"recall@20": round(many["recall@20"] / one["recall@20"], 4),
                         "ndcg@20": round(many["ndcg@20"] / one["ndcg@20"], 4),
                         "train_seconds": round(many["train_seconds"] / one["train_seconds"], 3)},
              "commands": {str(n): " ".join(_command(config, Path("OUT"), n, overrides)).replace(sys.executable,
                                                                                                   "python")
                           for n in runs},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"results-{tag}" if tag else "results"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / f"{stem}.md").write_text(markdown(result) + "\n")
    return result


def markdown(result: dict) -> str:
    """The side-by-side table of one benchmark result."""
    n = result["nproc"]
    one, many = result["summary"]["1"], result["summary"][str(n)]
    rows = [("Recall@20 (test)", "recall@20"), ("NDCG@20 (test)", "ndcg@20"),
            ("training wall seconds (median)", "train_seconds"), ("whole command wall seconds", "command_seconds"),
            ("epoch chosen / epochs run", None)]
    t1 = result.get("threads_single_process", result["threads_total"])
    tn = max(1, result["threads_total"] // n)
    lines = [f"| `{Path(result['config']).name}` {' '.join(result['overrides'])} | 1 process x {t1} thread(s) | "
             f"torchrun, {n} processes x {tn} thread(s) | ratio |", "|---|---|---|---|"]
    for label, key in rows:
        if key is None:
            lines.append(f"| {label} | {one['best_epoch']} / {one['epochs_run']} | "
                         f"{many['best_epoch']} / {many['epochs_run']} | |")
        else:
            ratio = many[key] / one[key] if one[key] else float("nan")
            fmt = ".1f" if key.endswith("seconds") else ".4f"
            lines.append(f"| {label} | {one[key]:{fmt}} | {many[key]:{fmt}} | {ratio:.3f} |")
    lines.append(f"| largest weight difference between the two models | | "
                 f"{result['max_weight_difference_first_pair']:.2e} | |")
    return "\n".join(lines)
