"""Kills during training and what the next run makes of them (issue 16: atomic checkpoints, resume).

Part 1, the trainer (``Trainer(..., TrainerSettings(checkpoint_every=4), checkpoint_dir=...)``, a small two-tower model): a worker
process is SIGKILLed (a) right after each file write of its second checkpoint (the worker wraps
``safetensors.torch.save_file``, ``os.replace`` and ``os.rename``, records each call on the checkpoint and
sleeps after it, so the kill lands exactly there) and (b) at uniform random times after its first
checkpoint; a second worker resumes, and its final weights are compared with an uninterrupted run's
(divergent: max |difference| > 1e-6; the same computation resumed is bit-equal).
Part 2, ``recsys train retrieval`` (tiny synthetic config, 8 epochs, tracked in a SQLite MLflow store): killed
at a random time of the run (``--kills``) or after its first checkpoint (``--kills-after-checkpoint``), each
time run again, all in one output folder; counts the killed runs still RUNNING after the reruns, the reruns
that resumed, and reruns whose weights differ from an uninterrupted run.

    .venv/bin/python experiments/reliability/checkpoint_kills.py --out experiments/reliability/checkpoint_kills.json

The "before" figures: the same command with ``PYTHONPATH`` at ``git archive ccaffea recsys | tar -x``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DIVERGENT = 1e-6


def worker(out: Path, ckpt: Path, trace: Path | None, pause: float) -> None:
    """Train the small model with checkpoints in ``ckpt`` (resuming what is there); save its final weights."""
    if trace is not None:
        import safetensors.torch as st

        def traced(fn, name):
            def call(*args, **kw):
                result = fn(*args, **kw)
                target = str(args[-1] if name != "save_file" else args[1])
                if target.startswith(str(ckpt)):
                    with open(trace, "a") as f:
                        f.write(f"{name} {Path(target).name}\n")
                    time.sleep(pause)
                return result
            return call

        st.save_file = traced(st.save_file, "save_file")
        os.replace, os.rename = traced(os.replace, "replace"), traced(os.rename, "rename")
    import numpy as np
    import scipy.sparse as sp
    import torch
    from safetensors.torch import save_file

    from recsys.fit.trainer import RetrievalData, Trainer, TrainerSettings
    from recsys.models.tasks import SampledSoftmaxTask
    from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 300, 3000), rng.integers(0, 120, 3000)
    pos = sp.csr_matrix((np.ones(3000, np.float32), (users, items)), shape=(300, 120))
    pos.data[:] = 1.0
    torch.manual_seed(0)
    model = TwoTowerModel(TwoTowerConfig(num_users=300, num_items=120, dim=16, history="mean"))
    settings = TrainerSettings(epochs=4, batch_size=256, lr=0.01, negatives="mixed", num_negatives=32,
                               history_dropout=0.2, seed=0, checkpoint_every=4)
    Trainer(model, SampledSoftmaxTask(temperature=0.2), settings, checkpoint_dir=ckpt, progress=False).fit(
        RetrievalData(pos))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))


def _worker_cmd(out: Path, ckpt: Path, trace: Path | None = None, pause: float = 0.0) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", str(out), "--ckpt", str(ckpt), "--pause", str(pause)]
    return cmd + (["--trace", str(trace)] if trace is not None else [])


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _max_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return max(float((x[k] - y[k]).abs().max()) for k in x)


def trainer_kills(work: Path, n_random: int, seed: int) -> dict:
    """Part 1: placed kills in the second checkpoint's writes, and random kills after the first checkpoint."""
    ref_dir = work / "trainer-ref"
    ref_dir.mkdir()
    proc = subprocess.Popen(_worker_cmd(ref_dir / "w.safetensors", ref_dir / "ck", ref_dir / "trace"))
    while not (ref_dir / "trace").exists() and proc.poll() is None:
        time.sleep(0.005)
    t_first = time.perf_counter()  # (about) the first checkpoint
    assert proc.wait() == 0
    span = time.perf_counter() - t_first  # training time after the first checkpoint, for the random kills
    events = (ref_dir / "trace").read_text().splitlines()
    # a checkpoint ends with its last replace: of state.json (one file at a time) or of LATEST (one unit)
    per_ckpt = 1 + next(i for i, e in enumerate(events) if e in ("replace state.json", "replace LATEST"))
    trials = [("placed", per_ckpt + j + 1) for j in range(per_ckpt)] + [("random", None)] * n_random
    rnd, rows = random.Random(seed), []
    for i, (kind, at_line) in enumerate(trials):
        d = work / f"trainer-{i}"
        d.mkdir()
        pause = 0.5 if kind == "placed" else 0.0
        proc = subprocess.Popen(_worker_cmd(d / "w.safetensors", d / "ck", d / "trace", pause))
        need = at_line if kind == "placed" else per_ckpt
        while _lines(d / "trace") < need and proc.poll() is None:
            time.sleep(0.005)
        if kind == "random":
            time.sleep(rnd.uniform(0, span))
        killed = proc.poll() is None
        event = (d / "trace").read_text().splitlines()[-1] if (d / "trace").exists() else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        resume = subprocess.run(_worker_cmd(d / "w.safetensors", d / "ck"), capture_output=True, text=True)
        diff = _max_diff(d / "w.safetensors", ref_dir / "w.safetensors") if resume.returncode == 0 else None
        rows.append({"kind": kind, "killed": killed, "after": event, "resume_ok": resume.returncode == 0,
                     "resume_error": resume.stderr.strip().splitlines()[-1] if resume.returncode else None,
                     "max_weight_diff": diff})
    summary = {}
    for kind in ("placed", "random"):
        sel = [r for r in rows if r["kind"] == kind and r["killed"]]
        diffs = [r["max_weight_diff"] for r in sel if r["max_weight_diff"] is not None]
        summary[kind] = {"kills": len(sel), "resume_failed": sum(not r["resume_ok"] for r in sel),
                         "divergent": sum(d > DIVERGENT for d in diffs), "max_weight_diff": max(diffs, default=0.0)}
    return {"summary": summary, "events_per_checkpoint": events[:per_ckpt], "trials": rows}


def _train_cmd(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "recsys", "train", "retrieval", "-c", str(cfg)]


def _run(cmd: list[str], **kw) -> subprocess.Popen:
    """Start ``cmd`` in the scratch folder, so that ``-m recsys`` imports the recsys on PYTHONPATH (or the installed
    one), never a ``recsys/`` in the working directory."""
    return subprocess.Popen(cmd, cwd=tempfile.gettempdir(), **kw)


def cli_kills(work: Path, n_kills: int, n_after_checkpoint: int, seed: int) -> dict:
    """Part 2: `recsys train` killed at random times over the whole run (``n_kills``) and at random times after its
    first checkpoint (``n_after_checkpoint``; none where no checkpoint is written), each kill followed by a rerun;
    the MLflow statuses after all of them."""
    import mlflow
    from safetensors.torch import load_file

    root = work / "cli"
    root.mkdir()
    store = f"sqlite:///{root}/mlflow.db"

    def config(name: str, tracking: bool) -> Path:
        path = root / f"{name}.yaml"
        path.write_text(f"name: tiny\nseed: 0\ndata:\n  n_events: 4000\nfeatures:\n  title_buckets: 64\n"
                        f"retrieval:\n  epochs: 8\n  dim: 8\noutput:\n  dir: {root / name}\n"
                        f"tracking:\n  enabled: {tracking}\n  experiment: kills\n  tracking_uri: {store}\n"
                        f"  artifact_location: {root / 'art'}\n")
        return path

    weights = lambda name: root / name / "tiny" / "retrieval" / "model" / "model.safetensors"  # noqa: E731
    mlflow.MlflowClient(tracking_uri=store).search_experiments()  # create the store: a kill mid-migration breaks it
    t0 = time.perf_counter()
    assert _run(_train_cmd(config("ref", False)), stdout=subprocess.DEVNULL).wait() == 0
    span = time.perf_counter() - t0
    cfg, rnd, rows = config("killed", True), random.Random(seed), []
    for kind in ["anytime"] * n_kills + ["after_checkpoint"] * n_after_checkpoint:
        proc = _run(_train_cmd(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kind == "anytime":
            time.sleep(rnd.uniform(0.1 * span, 0.95 * span))
        else:
            while proc.poll() is None and not any((root / "killed").glob("tiny/checkpoints/*/fit/LATEST")):
                time.sleep(0.01)
            time.sleep(rnd.uniform(0, 2.0))  # 8 epochs of about 0.3 s each on an idle machine
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        weights("killed").unlink(missing_ok=True)
        rerun = subprocess.run(_train_cmd(cfg), capture_output=True, text=True, cwd=tempfile.gettempdir())
        diff = None
        if rerun.returncode == 0:
            ref, got = load_file(str(weights("ref"))), load_file(str(weights("killed")))
            diff = max(float((ref[k] - got[k]).abs().max()) for k in ref)
        rows.append({"kind": kind, "killed": killed, "rerun_ok": rerun.returncode == 0, "resumed": "resumed from" in rerun.stdout,
                     "rerun_error": None if rerun.returncode == 0 else (rerun.stdout + rerun.stderr)[-1500:],
                     "max_weight_diff": diff})
    client = mlflow.MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("kills").experiment_id])
    status = {s: sum(r.info.status == s for r in runs) for s in ("RUNNING", "FAILED", "FINISHED", "KILLED")}
    summary = {"runs_in_store": len(runs), "runs_by_status": status, "killed_runs_left_running": status["RUNNING"]}
    for kind in ("anytime", "after_checkpoint"):
        killed = [r for r in rows if r["killed"] and r["kind"] == kind]
        summary[kind] = {"kills": len(killed), "reruns_failed": sum(not r["rerun_ok"] for r in killed),
                         "reruns_resumed": sum(r["resumed"] for r in killed),
                         "reruns_divergent": sum((r["max_weight_diff"] or 0) > DIVERGENT for r in killed)}
    # every rerun ends its own run (FINISHED) or continues the killed one; the rest were started by killed processes
    return {"summary": summary, "trials": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--random", type=int, default=16, help="random kills of the trainer worker")
    ap.add_argument("--kills", type=int, default=10, help="random kills of recsys train")
    ap.add_argument("--kills-after-checkpoint", type=int, default=5, help="kills of recsys train after a checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="trainer,cli", help="which parts to run (comma-separated)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--trace", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pause", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.ckpt, args.trace, args.pause)
    os.environ["CI"] = "true"
    with tempfile.TemporaryDirectory() as tmp:
        import recsys

        result = {"recsys": str(Path(recsys.__file__).parent)}
        if "trainer" in args.parts:
            result["trainer"] = trainer_kills(Path(tmp), args.random, args.seed)
        if "cli" in args.parts:
            result["recsys_train"] = cli_kills(Path(tmp), args.kills, args.kills_after_checkpoint, args.seed)
    print(json.dumps({k: v["summary"] if isinstance(v, dict) else v for k, v in result.items()}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
