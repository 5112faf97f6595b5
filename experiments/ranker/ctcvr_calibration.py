"""Side experiment: why pCTCVR / observed is below 1 in the 1M-event synthetic benchmark.

Part 1 (about two minutes): observed purchases over the generating truth (repeat purchases damped)
in the rankers' fit rows, their calibration slice (last 20% of training impressions) and the test
period, for the benchmark's world (seed 0) and 59 others, then pooled over the 60 worlds with a 95%
interval: if something in the simulation raised the purchase rate over time beyond what the truth
computes, the pooled test ratio would sit above 1. Part 2 (minutes): GBDT and ESMM as in the
benchmark; their raw pCTCVR against the truth on the calibration slice and on test, and the test
pCTCVR / truth under three calibrations fitted on the same slice (Platt on pCTCVR, isotonic on
pCTCVR, Platt pCTR x Platt pCVR on the slice's clicks).

Run from the repository root: ``python experiments/ranker/ctcvr_calibration.py [--part1-only]``;
its output is ctcvr_calibration.txt.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from recsys.bench import ranker as bench
from recsys.datasets.splits import time_split
from recsys.datasets.synthetic import generate_world
from recsys.features.ranking_features import RankingFeatureBuilder, impression_labels
from recsys.models.rankers.calibration import Calibrator, RankerCalibration


def _slices(world):
    train_ev, test_ev = time_split(world.events, test_fraction=0.2)
    rows_tr, rows_te = impression_labels(train_ev), impression_labels(test_ev)
    n_fit = len(rows_tr) - int(round(0.2 * len(rows_tr)))
    return train_ev, test_ev, rows_tr, rows_te, n_fit


def part1(n_seeds: int = 60) -> None:
    print("seed | purchases fit / cal / test | observed over truth: fit, calibration slice, test")
    pooled = {k: np.zeros(2) for k in ("fit", "cal", "test")}  # observed, expected purchases
    for seed in range(n_seeds):
        world = generate_world(1_000_000, seed=seed, progress=False)
        _, _, rows_tr, rows_te, n_fit = _slices(world)
        parts = {"fit": rows_tr.iloc[:n_fit], "cal": rows_tr.iloc[n_fit:], "test": rows_te}
        counts = {k: (r["purchase"].sum(), bench._truth_rates(world, r)["purchase"].sum()) for k, r in parts.items()}
        for k, c in counts.items():
            pooled[k] += c
        print(f"{seed} | {' / '.join(str(int(c[0])) for c in counts.values())} | "
              + ", ".join(f"{o / e:.3f}" for o, e in counts.values()), flush=True)
    for k, (o, e) in pooled.items():  # Poisson count: 95% interval of observed / expected about +-1.96/sqrt(o)
        print(f"pooled over {n_seeds} worlds, {k}: {int(o)} purchases / {e:.1f} expected = {o / e:.3f} "
              f"(95% interval {o / e * np.exp(-1.96 / np.sqrt(o)):.3f}-{o / e * np.exp(1.96 / np.sqrt(o)):.3f})")


def part2() -> None:
    warnings.simplefilter("ignore")
    world = generate_world(1_000_000, seed=0, progress=False)
    train_ev, test_ev, rows_tr, rows_te, n_fit = _slices(world)
    builder = RankingFeatureBuilder(windows=("1D", "7D", None)).fit(train_ev, world.items, world.social)
    X_tr = bench._chunked(builder, rows_tr)
    builder.update(test_ev)
    X_te = bench._chunked(builder, rows_te)
    t_cal, t_te = bench._truth_rates(world, rows_tr.iloc[n_fit:]), bench._truth_rates(world, rows_te)
    click, buy = rows_tr["click"].to_numpy()[n_fit:], rows_tr["purchase"].to_numpy()[n_fit:]
    zoo = bench._zoo(False, builder.stats_.feature_names(), ablation=False)
    for name in ("gbdt", "esmm"):
        start = time.perf_counter()
        model = zoo[name]().fit(X_tr, rows_tr[["click", "purchase"]])
        (ctr_c, cv_c), (ctr_t, cv_t) = model._predict_raw(X_tr.iloc[n_fit:]), model._predict_raw(X_te)
        print(f"{name} (fit {time.perf_counter() - start:.0f}s): raw pCTCVR / truth on the calibration slice "
              f"{cv_c.mean() / t_cal['purchase'].mean():.3f}, on test {cv_t.mean() / t_te['purchase'].mean():.3f} "
              f"(raw test/slice {cv_t.mean() / cv_c.mean():.3f}, truth test/slice "
              f"{t_te['purchase'].mean() / t_cal['purchase'].mean():.3f})")
        for method in ("platt", "isotonic"):
            p = RankerCalibration(method).fit(ctr_c, cv_c, click, buy).apply_arrays(ctr_t, cv_t)[2]
            print(f"  {method} on pCTCVR: test pCTCVR / truth {p.mean() / t_te['purchase'].mean():.3f}, "
                  f"/ observed {p.mean() / rows_te['purchase'].mean():.3f}")
        clicked = click > 0
        cvr_c, cvr_t = np.clip(cv_c / ctr_c, 1e-9, 1), np.clip(cv_t / ctr_t, 1e-9, 1)
        p = (Calibrator("platt").fit(ctr_c, click).predict(ctr_t)
             * Calibrator("platt").fit(cvr_c[clicked], buy[clicked]).predict(cvr_t))
        print(f"  platt pCTR x platt pCVR (slice clicks): test pCTCVR / truth {p.mean() / t_te['purchase'].mean():.3f},"
              f" / observed {p.mean() / rows_te['purchase'].mean():.3f}", flush=True)


if __name__ == "__main__":
    part1()
    if "--part1-only" not in sys.argv:
        part2()
