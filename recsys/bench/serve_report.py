"""The serving benchmark's targets and its markdown tables (:mod:`recsys.bench.serve`)."""

from __future__ import annotations

TARGET_HTTP_OVER_IN_PROCESS = 0.8   # saturated HTTP throughput >= 80% of in-process on the same cores
TARGET_P99_AT_70_MS = 15.0          # p99 <= 15 ms at 70% of saturation
TARGET_FAILED = 0                   # failed requests across swaps and SIGTERM


def targets(r: dict) -> dict:
    """The issue's targets, each with its measured value and whether it is met. In-process is the best of the loop,
    the threads and the loop with one intra-op thread (the ceiling on these cores)."""
    ceiling = max(x["calls_per_s"] for x in r["in_process"].values())
    ratio = r["saturation"]["ok_per_s"] / ceiling
    p99 = r["at_70_percent"]["latency_ms"]["p99"]
    s = r["swaps"]
    swap_failed = s["non_2xx"] + s["unanswered"] + s["version_contradictions"] + \
        sum(1 for x in s["swaps"] if x["result"] != "swapped")
    dropped = r["sigterm"]["dropped"]
    return {"http_over_in_process": {"value": ratio, "target": f">= {TARGET_HTTP_OVER_IN_PROCESS}",
                                     "met": ratio >= TARGET_HTTP_OVER_IN_PROCESS},
            "p99_ms_at_70_percent": {"value": p99, "target": f"<= {TARGET_P99_AT_70_MS}",
                                     "met": p99 is not None and p99 <= TARGET_P99_AT_70_MS},
            "failed_across_swaps": {"value": swap_failed, "target": "0", "met": swap_failed == TARGET_FAILED},
            "dropped_on_sigterm": {"value": dropped, "target": "0", "met": dropped == TARGET_FAILED}}


def per_cpu_second(r: dict) -> float | None:
    """Saturated HTTP over in-process (threads), each per CPU second of its own process: how much dearer an answer
    over HTTP is, less sensitive than throughput to other work on a shared machine (wrk's CPU is not counted)."""
    best = max(r["levels"], key=lambda x: x["ok_per_s"])
    if not best.get("ok_per_cpu_s"):
        return None
    return best["ok_per_cpu_s"] / r["in_process"]["threads"]["calls_per_cpu_s"]


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _row(name: str, s: dict) -> str:
    lat = s["latency_ms"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items())) or "-"
    per_cpu = s.get("ok_per_cpu_s")
    return (f"| {name} | {s['sent']:,} | {s['ok_per_s']:.0f} | {'' if per_cpu is None else f'{per_cpu:.0f}'} | "
            f"{_ms(lat['p50'])} | {_ms(lat['p99'])} | {statuses} | {s['unanswered']} |")


def markdown(r: dict) -> str:
    """The tables of one run: in process, the concurrency levels, the floor, 70%, 2x, swaps, SIGTERM, targets."""
    ip, sat, t = r["in_process"], r["saturation"], r["targets"]
    mark = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    head = ("| load | requests | 2xx/s | 2xx per server CPU s | p50 ms | p99 ms | non-2xx | unanswered |\n"
            "|---|---:|---:|---:|---:|---:|---|---:|")
    cpu = lambda x: f"{x['calls_per_s']:.0f} | {x['calls_per_cpu_s']:.0f}"  # noqa: E731
    lines = [f"# HTTP serving: {r['n_items']:,} items, k={r['k']}, `recsys serve` on 127.0.0.1", "",
             f"`{r['cli']}` on {r['machine']}; load average before {r['load_average']['before'][0]:.2f}, "
             f"after {r['load_average']['after'][0]:.2f}; {r['seconds']:.0f} s in all. Service: one worker, "
             f"--max-concurrency {r['service']['max_concurrency']}, --max-queue {r['service']['max_queue']}. "
             f"Closed loop: {r['load_generators']['closed_loop']}; open loop: {r['load_generators']['open_loop']}.",
             "", "| in process (`recommend`, no HTTP) | calls | calls/s | calls per CPU s |", "|---|---:|---:|---:|",
             f"| loop, 1 thread | {ip['loop']['calls']:,} | {cpu(ip['loop'])} |",
             f"| {ip['threads']['threads']} threads (= cores) | {ip['threads']['calls']:,} | {cpu(ip['threads'])} |",
             *([f"| loop, 1 intra-op thread (as the service) | {ip['loop_one_intra_op_thread']['calls']:,} | "
                f"{cpu(ip['loop_one_intra_op_thread'])} |"] if "loop_one_intra_op_thread" in ip else []),
             "", head]
    lines += [_row(f"wrk, {x['connections']} connections", x) for x in r["levels"]]
    lines += [_row(f"floor (bare FastAPI), {x['connections']} connections", x) for x in r["floor"]]
    a70, a2 = r["at_70_percent"], r["at_2x"]
    lines += [_row(f"open loop at 70% of the sustained rate ({a70['generator']['rate_requested']:.0f}/s), the median "
                   f"of {len(a70['repeats_p99_ms'])} runs", a70),
              _row(f"open loop at 2x saturation ({a2['generator']['rate_requested']:.0f}/s)", a2), "",
              f"Open loop: latency counts from each request's scheduled time; the generator ran at most "
              f"{a70['generator']['max_schedule_lag_ms']:.0f} ms (70%) and {a2['generator']['max_schedule_lag_ms']:.0f}"
              f" ms (2x) behind its schedule"
              + (f"; each phase first sent {a70['generator']['warmup_seconds']:g} s of the same schedule, left out "
                 f"(as wrk2 leaves out its calibration; the generator starts with no open connection)"
                 if a70["generator"].get("warmup_seconds") else "") + ".", ""]
    share = a2["statuses"].get("503", 0) / a2["sent"] if a2["sent"] else 0.0
    s, g = r["swaps"], r["sigterm"]
    swaps = "; ".join(f"{x['result']} to {x['version']} ({x['to']}) in {x['end'] - x['start']:.1f} s" for x in
                      s["swaps"])
    lines += [f"Saturation: {sat['ok_per_s']:.0f} answers/s at {sat['connections']} connections. At twice it, "
              f"{share:.1%} of requests got 503; the accepted ones' p99 was {_ms(a2['latency_ms']['p99'])} ms.", ""]
    steady = r["machine_steadiness"]
    lines += [f"Sustained rate: the median of {len(sat['samples_ok_per_s'])} wrk runs at {sat['connections']} "
              f"connections ({', '.join(f'{x:.0f}' for x in sat['samples_ok_per_s'])} answers/s), "
              f"{sat['sustained_ok_per_s']:.0f}/s; the 70% phase ran at 70% of it, {len(a70['repeats_p99_ms'])} times: "
              f"p99 {', '.join(_ms(x) for x in a70['repeats_p99_ms'])} ms (answers/s "
              f"{', '.join(f'{x:.0f}' for x in a70['repeats_ok_per_s'])}). Machine steadiness: one request repeated in "
              f"process ran at {steady['min']:.0f} to {steady['max']:.0f} calls/s (median {steady['median']:.0f}) per "
              f"{steady['window_s']:g} s window.", ""]
    lines += [
              f"Swaps: {s['seconds']:.0f} s of wrk at {s['connections']} connections, {s['sent']:,} requests, "
              f"{s['ok']:,} 2xx, {s['non_2xx']} non-2xx, {s['unanswered']} unanswered ({s['in_flight_at_stop']} in "
              f"flight when wrk stopped), "
              f"{s['version_contradictions']} answers whose version contradicts the swap times; versions seen "
              f"{', '.join(s['versions_seen'])}. Reloads: {swaps}.", "",
              f"SIGTERM after {g['signal_after_s']:.1f} s of wrk at {g['connections']} connections: "
              f"{g['sent_before_signal']:,} requests sent before it, {g['ok_before_signal']:,} answered 2xx, "
              f"{g['dropped']} dropped ({g['dropped_non_2xx']} non-2xx, {g['dropped_unanswered']} unanswered); "
              f"the service exited with {g['exit_code']} {g['shutdown_seconds']:.1f} s after the signal "
              f"(of wrk's {g['attempts_after_signal']:,} attempts after it, {g['ok_after_signal']} were still "
              f"answered 2xx on connections not yet closed; the others met a closed socket).", "",
              "| target | measured | target | |", "|---|---:|---:|---|",
              f"| saturated HTTP / in process | {t['http_over_in_process']['value']:.2f} | "
              f"{t['http_over_in_process']['target']} | {mark(t['http_over_in_process']['met'])} |",
              f"| the same per CPU second (server process / in-process threads) | "
              f"{_ratio(r['http_over_in_process_per_cpu_second'])} | (a reading) | |",
              f"| p99 at 70% of saturation (ms; the median of the runs) | {_ms(t['p99_ms_at_70_percent']['value'])} | "
              f"{t['p99_ms_at_70_percent']['target']} | {mark(t['p99_ms_at_70_percent']['met'])} |",
              f"| failed requests across swaps | {t['failed_across_swaps']['value']} | 0 | "
              f"{mark(t['failed_across_swaps']['met'])} |",
              f"| dropped requests on SIGTERM | {t['dropped_on_sigterm']['value']} | 0 | "
              f"{mark(t['dropped_on_sigterm']['met'])} |", ""]
    return "\n".join(lines)
