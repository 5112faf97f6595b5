"""Graph-filter retrieval benchmark: ``recsys benchmark graph-filter --data-dir DIR --json PATH --md PATH``.

On a LightGCN-format directory, each variant of :data:`recsys.models.graph_filter.VARIANTS` (the linear
low-pass filter; GF-CF: plus the ideal low-pass term; BSPM-EM: plus one RK4 step of sharpening) has its free
hyper-parameter chosen on a validation split carved from the *training* data (:data:`GRIDS`; test is never
read for it), is then fitted on all training data and scored on test with the LightGCN protocol
(:func:`recsys.evaluation.evaluate_topk`: every item ranked, training items masked, Recall@20 / NDCG@20).
Reported per variant: the figures, fit seconds, scoring seconds (all test users, metrics included) and the
peak resident memory above the phase's start (sampled every 10 ms); implicit-ALS (``DEFAULT_ALS``) runs
beside it, and the published rows of issue 20 are quoted (not rerun). Everything is deterministic.

One run handles one directory; its entry (keyed by the folder's name) replaces the one already in the JSON,
and the Markdown is written again from the whole JSON, so Gowalla and Yelp2018 are two short runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from recsys.storage.atomic import write_text_atomically

__all__ = ["GRIDS", "PUBLISHED", "run_graph_filter_benchmark", "markdown"]

#: Validation grids, one free hyper-parameter a variant (BSPM's sharpening time and method are its paper's
#: Gowalla setting; its ideal weight is chosen again, the sharpening moves the best one).
GRIDS: dict[str, dict[str, tuple]] = {"linear": {}, "gf-cf": {"ideal_weight": (0.1, 0.2, 0.3, 0.5)},
                                      "bspm": {"ideal_weight": (0.1, 0.2, 0.3)}}
VALIDATION_FRACTION, VALIDATION_USERS, SEED = 0.2, 0.15, 0
#: Quoted from issue 20's table (the papers' figures, not rerun here): (R@20, N@20) or None.
PUBLISHED: dict[str, dict[str, tuple | None]] = {
    "ChebyCF (SIGIR 2025, training-free)": {"gowalla": (.1941, .1616), "yelp2018": None},
    "NESCL (TKDE)": {"gowalla": (.1917, .1617), "yelp2018": (.0743, .0611)},
    "BSPM-EM (training-free)": {"gowalla": (.1920, .1597), "yelp2018": (.0720, .0593)},
    "XSimGCL": {"gowalla": None, "yelp2018": (.0723, .0604)},
    "GF-CF (training-free)": {"gowalla": (.1849, .1518), "yelp2018": (.0697, .0571)},
    "Turbo-CF (training-free)": {"gowalla": (.1835, None), "yelp2018": (.0693, .0574)},
}


def _log(msg: str) -> None:
    print(msg, flush=True)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def _phase():
    """Wall seconds and peak RSS above the start (MB, sampled every 10 ms) of the ``with`` block: a dict."""
    out: dict[str, float] = {}
    start, stop = _rss_mb(), threading.Event()
    peak = [start]

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], _rss_mb())

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - t0
        stop.set()
        t.join()
        out["peak_mb"] = max(peak[0], _rss_mb()) - start


def _metrics(model: Any, train: sp.csr_matrix, test: sp.csr_matrix) -> dict[str, float]:
    from recsys.evaluation import evaluate_topk

    r = evaluate_topk(model, train, test, (20,), metrics=("recall", "ndcg"), check_leakage=False)
    return {k: round(v, 6) for k, v in r.items()}


def _choose(name: str, base: Any, fit: sp.csr_matrix, valid: sp.csr_matrix) -> dict:
    """The variant's parameters after its grid on validation (``base``: fitted on ``fit``), with the grid's figures."""
    from recsys.models.graph_filter import VARIANTS

    params = {**VARIANTS[name]}
    history = []
    for key, values in GRIDS[name].items():
        best = None
        for value in values:
            trial = {**params, key: value}
            model = base.with_params(**{k: v for k, v in trial.items() if k not in ("ideal_rank",)})
            r = _metrics(model, fit, valid)
            history.append({key: value, **r})
            _log(f"  {name} validation {key}={value}: recall@20 {r['recall@20']:.4f}  ndcg@20 {r['ndcg@20']:.4f}")
            if best is None or r["recall@20"] > best[1]:
                best = (value, r["recall@20"])
        params[key] = best[0]
    return {"params": params, "validation": history}


def _run_variants(train: sp.csr_matrix, test: sp.csr_matrix, variants: tuple[str, ...]) -> dict[str, dict]:
    from recsys.fit.validation import carve_validation
    from recsys.models.graph_filter import VARIANTS, GraphFilter

    fit, valid = carve_validation(train, VALIDATION_FRACTION, VALIDATION_USERS, SEED)
    _log(f"validation: {valid.nnz:,} pairs of {int((valid.getnnz(axis=1) > 0).sum()):,} users held out of training")
    bases: dict[tuple, Any] = {}
    fitted: dict[tuple, tuple[Any, dict, str]] = {}
    rows: dict[str, dict] = {}
    for name in variants:
        spec = VARIANTS[name]
        key = (spec.get("ideal_weight", 0.3) > 0, spec.get("ideal_rank", 256))
        if key not in bases:  # one fit on the validation split serves every variant with the same SVD
            bases[key] = GraphFilter(**spec).fit(fit)
        row = _choose(name, bases[key], fit, valid) if GRIDS[name] else {"params": {**spec}, "validation": []}
        if key not in fitted:  # likewise one fit on all training data (deterministic: a refit is identical)
            with _phase() as fit_cost:
                fitted[key] = (GraphFilter(**row["params"]).fit(train), fit_cost, name)
        full, fit_cost, fit_by = fitted[key]
        model = full.with_params(**{k: v for k, v in row["params"].items() if k != "ideal_rank"})
        with _phase() as score_cost:
            row.update(_metrics(model, train, test))
        row.update(fit_seconds=round(fit_cost["seconds"], 2), fit_peak_mb=round(fit_cost["peak_mb"], 1),
                   score_seconds=round(score_cost["seconds"], 2), score_peak_mb=round(score_cost["peak_mb"], 1),
                   params=model.get_params(), fit_shared_with=None if fit_by == name else fit_by)
        _log(f"{name}: recall@20 {row['recall@20']:.4f}  ndcg@20 {row['ndcg@20']:.4f}  fit {row['fit_seconds']:.1f} s  "
             f"score {row['score_seconds']:.1f} s  peak +{max(row['fit_peak_mb'], row['score_peak_mb']):.0f} MB")
        rows[name] = row
        del model
    return rows


def _run_als(train: sp.csr_matrix, test: sp.csr_matrix) -> dict:
    from recsys.fit.baselines import evaluate_baselines

    with _phase() as cost:
        als = evaluate_baselines(train, test, names=("implicit-als",))["implicit-als"]
    return {**als, "peak_mb": round(cost["peak_mb"], 1)}


def run_graph_filter_benchmark(data_dir: str | Path, json_path: str | Path | None = None,
                               md_path: str | Path | None = None,
                               variants: tuple[str, ...] = ("linear", "gf-cf", "bspm")) -> dict[str, Any]:
    """Measure the variants and implicit-ALS on one LightGCN directory; merge the entry into ``json_path``."""
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.errors import ConfigError
    from recsys.models.graph_filter import VARIANTS

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown graph-filter variants {unknown}; choose from {list(VARIANTS)}.")
    ds = load_lightgcn(data_dir)
    train, test = ds.train_matrix(), ds.test_matrix()
    _log(f"{data_dir}: {ds.n_users:,} users x {ds.n_items:,} items, {train.nnz:,} train / {test.nnz:,} test")
    t0, c0 = time.perf_counter(), time.process_time()
    entry: dict[str, Any] = {"data_dir": str(data_dir), "n_users": ds.n_users, "n_items": ds.n_items,
                             "n_train": int(train.nnz), "n_test": int(test.nnz),
                             "validation": {"fraction": VALIDATION_FRACTION, "users": VALIDATION_USERS, "seed": SEED},
                             "variants": _run_variants(train, test, tuple(variants)), "implicit-als": _run_als(train, test)}
    entry["machine"] = {"cpus": os.cpu_count(), "wall_seconds": round(time.perf_counter() - t0, 1),
                        "cpu_seconds": round(time.process_time() - c0, 1),
                        "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                        "utc_at_end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if json_path is not None:
        _merge(Path(json_path), ds.name, entry, None if md_path is None else Path(md_path))
    return entry


def _merge(json_path: Path, name: str, entry: dict, md_path: Path | None) -> None:
    """Replace the dataset's entry in the JSON (under a lock: concurrent runs do not lose each other's entry)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(json_path.parent, os.O_RDONLY | os.O_DIRECTORY)  # the lock: the folder itself, no lock file
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        data = json.loads(json_path.read_text()) if json_path.exists() else {}
        data.setdefault("datasets", {})[name] = entry
        data["published_quoted_not_rerun"] = {k: v for k, v in PUBLISHED.items()}
        write_text_atomically(json_path, json.dumps(data, indent=2) + "\n")
        if md_path is not None:
            write_text_atomically(md_path, markdown(data))
    finally:
        os.close(folder)  # closing releases the lock
    _log(f"wrote {json_path}" + (f" and {md_path}" if md_path else ""))


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}".lstrip("0")


def markdown(data: dict) -> str:
    """The benchmark's tables: one row per variant and dataset, implicit-ALS and the quoted published rows."""
    sets = sorted(data.get("datasets", {}))
    lines = ["# Graph-filter retrieval channel (training-free) on the LightGCN splits", "",
             "Written by `recsys benchmark graph-filter` (recsys/bench/graph_filter.py); full-ranking Recall@20 / "
             "NDCG@20, training items masked. Fit and scoring seconds are wall time on this shared machine; "
             "peak MB is the resident memory above the phase's start. Scoring = every test user, metrics included. "
             "BSPM's sharpening (RK4, one step of time 2.5) is its paper's Gowalla setting, fixed; each variant's "
             "ideal weight is chosen on a validation split carved from the training data (the grids below).", ""]
    for name in sets:
        e = data["datasets"][name]
        lines += [f"## {name} ({e['n_users']:,} users x {e['n_items']:,} items, {e['n_train']:,} train pairs)", "",
                  "| variant | parameters (chosen on validation) | R@20 | N@20 | fit s | score s | peak MB fit / score |",
                  "|---|---|---|---|---|---|---|"]
        for var, r in e["variants"].items():
            p = r["params"]
            shown = ", ".join(f"{k} {p[k]}" for k in ("ideal_weight", "ideal_rank", "sharpen", "sharpen_method")
                              if k in p and (k != "ideal_rank" or p["ideal_weight"] > 0)
                              and (not k.startswith("sharpen") or p["sharpen"] > 0))
            if r.get("fit_shared_with"):
                shown += f" (fit shared with {r['fit_shared_with']})"
            lines.append(f"| {var} | {shown or '—'} | {_fmt(r['recall@20'])} | {_fmt(r['ndcg@20'])} | "
                         f"{r['fit_seconds']:.1f} | {r['score_seconds']:.1f} | {r['fit_peak_mb']:.0f} / "
                         f"{r['score_peak_mb']:.0f} |")
        a = e["implicit-als"]
        if "recall@20" in a:
            lines.append(f"| implicit-ALS (dim 64, measured beside) | reg {a['params']['regularization']}, alpha "
                         f"{a['params']['alpha']} | {_fmt(a['recall@20'])} | {_fmt(a['ndcg@20'])} | "
                         f"{a['fit_seconds']:.1f} | {a['eval_seconds']:.1f} | {a['peak_mb']:.0f} (both) |")
        m = e["machine"]
        lines += ["", f"Run: {m['wall_seconds']:.0f} s wall, {m['cpu_seconds']:.0f} CPU-s, {m['cpus']} cores, load "
                  f"{m['load_average_1m_at_end']} at the end ({m['utc_at_end']}).", "", "Validation (R@20 / N@20):", ""]
        for var, r in e["variants"].items():
            for h in r["validation"]:
                k = next(iter(h))
                lines.append(f"- {var}, {k} {h[k]}: {_fmt(h['recall@20'])} / {_fmt(h['ndcg@20'])}")
        lines.append("")
    lines += ["## Published rows (quoted from issue 20, not rerun)", "", "| | " + " | ".join(sets) + " |",
              "|---|" + "---|" * len(sets)]
    for label, figs in data.get("published_quoted_not_rerun", PUBLISHED).items():
        cells = [("—" if figs.get(s) is None else f"{_fmt(figs[s][0])} / {_fmt(figs[s][1])}") for s in sets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def graph_filter_command(data_dir: Path, json_path: Path | None, md_path: Path | None) -> None:
    """Typer body: run, or print ``error: ...`` and exit 2 on a RecsysError."""
    from recsys.errors import RecsysError

    try:
        run_graph_filter_benchmark(data_dir, json_path, md_path)
    except (RecsysError, FileNotFoundError) as e:
        import typer

        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
