"""Side experiment: is the rankers' pCTCVR / truth in the 1M-event benchmark systematic or one world's luck?

For 1M-event worlds with seeds 1-3 (seed 0 is the committed benchmark), GBDT, ESMM and LightGBM are
fitted exactly as in the benchmark; per model it prints the calibrated test pCTCVR over the generating
truth and over the observed purchases (with the 95% interval of the latter), and splits the first into
its two factors: the calibration slice's observed / truth (label noise the calibration copies) and the
raw scores' drift from the slice to the test period relative to the truth's own drift.

Run from the repository root: ``python experiments/ranker/ctcvr_seeds.py [seed ...]``; its output is
ctcvr_seeds.txt (about 3 minutes a seed on an idle 2-core machine).
"""

from __future__ import annotations

import sys
import time
import warnings

from recsys.bench import ranker as bench
from recsys.datasets.splits import time_split
from recsys.datasets.synthetic import generate_world
from recsys.features.ranking_features import RankingFeatureBuilder, impression_labels


def run(seed: int) -> None:
    warnings.simplefilter("ignore")
    world = generate_world(1_000_000, seed=seed, progress=False)
    train_ev, test_ev = time_split(world.events, test_fraction=0.2)
    rows_tr, rows_te = impression_labels(train_ev), impression_labels(test_ev)
    n_fit = len(rows_tr) - int(round(0.2 * len(rows_tr)))
    builder = RankingFeatureBuilder(windows=("1D", "7D", None)).fit(train_ev, world.items, world.social)
    X_tr = bench._chunked(builder, rows_tr)
    builder.update(test_ev)
    X_te = bench._chunked(builder, rows_te)
    t_cal = bench._truth_rates(world, rows_tr.iloc[n_fit:])["purchase"].mean()
    t_te = bench._truth_rates(world, rows_te)["purchase"].mean()
    o_cal, o_te = rows_tr["purchase"].to_numpy()[n_fit:].mean(), rows_te["purchase"].mean()
    print(f"seed {seed}: test {int(rows_te['purchase'].sum())} purchases, observed / truth {o_te / t_te:.3f}; "
          f"calibration slice {int(rows_tr['purchase'].to_numpy()[n_fit:].sum())} purchases, observed / truth "
          f"{o_cal / t_cal:.3f}; truth test / slice {t_te / t_cal:.3f}", flush=True)
    zoo = bench._zoo(False, builder.stats_.feature_names(), ablation=False)
    for name in ("gbdt", "esmm", "lightgbm"):
        start = time.perf_counter()
        model = zoo[name]().fit(X_tr, rows_tr[["click", "purchase"]])
        raw_cal, raw_te = model._predict_raw(X_tr.iloc[n_fit:])[1].mean(), model._predict_raw(X_te)[1]
        p = model.predict_proba(X_te)["pctcvr"].to_numpy()
        lo, hi = bench.ratio_interval(float(p.sum()), int(rows_te["purchase"].sum()))
        print(f"  {name} (fit {time.perf_counter() - start:.0f}s): pCTCVR / truth {p.mean() / t_te:.3f}, / observed "
              f"{p.mean() / o_te:.3f} (95% {lo:.2f}-{hi:.2f}); raw drift slice -> test over the truth's "
              f"{raw_te.mean() / raw_cal / (t_te / t_cal):.3f}", flush=True)


if __name__ == "__main__":
    for s in [int(a) for a in sys.argv[1:]] or [1, 2, 3]:
        run(s)
