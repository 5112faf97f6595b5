"""``recommend.md``: the serving benchmark's figures (:mod:`recsys.bench.recommend`) as markdown tables."""

from __future__ import annotations


def _markdown(r: dict) -> str:
    return "\n".join(_md_setup(r) + _md_latency(r) + _md_paired(r) + _md_stages(r["latency_stages_ms"], r["latency_stages_cpu_ms"])
                     + _md_index_recall(r.get("index_recall", {})) + _md_engines(r) + _md_batch(r))


def _md_setup(r: dict) -> list[str]:
    return [
        "# Recommender serving speed", "",
        f"Command: `{r['command']}` ({r['seconds']:.0f} s in all)  ",
        f"Machine: {r['machine']}; every stage limited to one thread (torch, FAISS, BLAS/OpenMP). Load average "
        f"(1/5/15 min) {', '.join(f'{x:.1f}' for x in r['load_average']['before'])} before and "
        f"{', '.join(f'{x:.1f}' for x in r['load_average']['after'])} after the run: the machine is shared, so "
        "wall times include waiting for a core; CPU time (``time.thread_time``, this thread only) is the cost "
        "of a request without the wait.", "",
        f"Catalogue {r['n_items']:,} items ({r['index_factory']}, {r.get('index_params', {})}), "
        f"{r['n_candidates']} candidates"
        + (" from the two-tower" if r.get("item_to_item") or r.get("friends") else "")
        + (f", up to {r['item_to_item']} from the item-to-item channel" if r.get("item_to_item") else "")
        + (f", up to {r['friends']} from the friends channel" if r.get("friends") else "")
        + f" ranked per request, k={r['k']}. Ranking features computed as "
        f"{r.get('serving', {}).get('ranking_features')}, GBDT trees walked by "
        f"{r.get('serving', {}).get('forest_engine')}.", ""]


def _md_latency(r: dict) -> list[str]:
    lat, cpu = r["latency"], r["latency_cpu"]
    met = lambda p: f"{r['target_p99_ms']} ms ({'met' if p <= r['target_p99_ms'] else 'missed'})"  # noqa: E731
    return [
        f"recommend latency, one request in process, {lat.get('rounds', 1)} rounds of {lat['n'] // lat.get('rounds', 1):,} "
        "calls: the median over the rounds of each percentile, then each round's own.", "",
        "| recommend latency | p50 ms | p90 ms | p99 ms | mean ms | target p99 |",
        "|---|---|---|---|---|---|",
        f"| **wall, median of rounds** | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | **{lat['p99_ms']:.2f}** | "
        f"{lat['mean_ms']:.2f} | {met(lat['p99_ms'])} |",
        f"| CPU, median of rounds | {cpu['p50_ms']:.2f} | {cpu['p90_ms']:.2f} | {cpu['p99_ms']:.2f} | "
        f"{cpu['mean_ms']:.2f} | {met(cpu['p99_ms'])} |",
        *([f"| each request's median CPU over the rounds (host noise damped; not the target's measure) | "
           f"{sc['p50_ms']:.2f} | {sc['p90_ms']:.2f} | {sc['p99_ms']:.2f} | {sc['mean_ms']:.2f} | |"]
          if (sc := r.get("latency_steady_cpu")) else []),
        *[f"| round {i + 1}: wall / CPU | {w['p50_ms']:.2f} / {c['p50_ms']:.2f} | {w['p90_ms']:.2f} / "
          f"{c['p90_ms']:.2f} | {w['p99_ms']:.2f} / {c['p99_ms']:.2f} | {w['mean_ms']:.2f} / {c['mean_ms']:.2f} | |"
          for i, (w, c) in enumerate((x["wall"], x["cpu"]) for x in r.get("latency_rounds", []))]]


def _md_paired(r: dict) -> list[str]:
    p = r.get("latency_paired")
    if not p:
        return []
    row = lambda name, x: (f"| {name} | {x['p50_ms']:.2f} | {x['p90_ms']:.2f} | {x['p99_ms']:.2f} | "  # noqa: E731
                           f"{x['mean_ms']:.2f} |")
    ratio = p["both_channels"]["p99_ms"] / p["two_tower_only"]["p99_ms"]
    extra = " and ".join(f"up to {r[key]} {name} candidates" for key, name in
                         (("item_to_item", "item-to-item"), ("friends", "friends'")) if r.get(key))
    return ["", f"The same requests again, rounds alternating between the channels (two-tower + {extra}) and the "
                f"two-tower alone on the same Recommender "
                f"(median of {p['both_channels']['rounds']} rounds each); p99 ratio {ratio:.2f}:", "",
            "| channels | p50 ms | p90 ms | p99 ms | mean ms |", "|---|---|---|---|---|",
            row("**all channels, wall**", p["both_channels"]), row("two-tower alone, wall", p["two_tower_only"]),
            row("all channels, CPU", p["both_channels_cpu"]), row("two-tower alone, CPU", p["two_tower_only_cpu"])]


def _md_stages(st: dict, st_cpu: dict) -> list[str]:
    return ["", "| stage (mean ms per request) | " + " | ".join(st) + " | sum |", "|---|" + "---|" * (len(st) + 1),
            "| wall | " + " | ".join(f"{v:.2f}" for v in st.values()) + f" | {sum(st.values()):.2f} |",
            "| CPU | " + " | ".join(f"{st_cpu.get(k, float('nan')):.2f}" for k in st) +
            f" | {sum(st_cpu.values()):.2f} |", ""]


def _md_index_recall(rec: dict) -> list[str]:
    if not rec.get("by_nprobe"):
        return []
    return [f"Index recall@{rec['k']} against exact scoring ({rec['queries']} users, unfiltered), and CPU "
            f"per query; serving uses {rec['serving']}:", "", "| nprobe | recall | CPU ms per query |", "|---|---|---|",
            *[f"| {n} | {v['recall']:.3f} | {v['cpu_ms_per_query']:.2f} |" for n, v in rec["by_nprobe"].items()], ""]


def _md_engines(r: dict) -> list[str]:
    lines: list[str] = []
    fe = r.get("forest_engines") or {}
    if fe.get("cpu_ms_per_request"):
        lines += _engine_table(f"GBDT tree walks side by side on the feature matrices of {fe['requests']} requests "
                               f"({fe['rows_per_request']:.0f} rows per request: candidates, then the reasons' "
                               f"ablated rows), CPU ms per request, median of {fe['repeats']} round-robin repeats:",
                               "tree walk", fe, "compiled")
    te = r.get("tower_engines") or {}
    if te.get("cpu_ms_per_request"):
        lines += _engine_table(f"User tower (inputs and forward, one user a call) side by side for {te['requests']} "
                               f"requests, CPU ms per request, median of {te['repeats']} round-robin repeats; largest "
                               f"difference between the two vectors {te['max_abs_difference']:.1e}:",
                               "user tower", te, "numpy")
    return lines


def _md_batch(r: dict) -> list[str]:
    thr, mm = r["batch"], r["matmul_limit"]
    return [
        "| batch scoring | users | seconds | users/s | ratio to matmul limit |", "|---|---|---|---|---|",
        f"| recommend_batch (retrieve + rank + rules + reasons) | {thr['users']:,} | {thr['seconds']:.1f}"
        f"{' (extrapolated from ' + format(thr['measured_users'], ',') + ' users)' if thr['extrapolated'] else ''} | "
        f"{thr['users_per_s']:,.0f} | {thr['users_per_s'] / mm['users_per_s']:.3f} |",
        f"| exact scoring limit (GEMM + top-{r['k']} over all items, 1 thread) | {thr['users']:,} | "
        f"{mm['seconds_for_all_users']:.1f} (extrapolated) | {mm['users_per_s']:,.0f} | 1 |", "",
        f"GEMM rate measured: {mm['gflops']:.1f} GFLOP/s.", ""]


def _engine_table(title: str, label: str, d: dict, ref: str) -> list[str]:
    """Markdown lines of a side-by-side timing (``d``: cpu_ms_per_request and ratio_to_<ref>)."""
    ratio = d.get(f"ratio_to_{ref}", {})
    return [title, "", f"| {label} | CPU ms per request | ratio to {ref} |", "|---|---|---|",
            *[f"| {e} | {v:.3f} | {ratio.get(e, float('nan')):.2f} |" for e, v in d["cpu_ms_per_request"].items()], ""]
