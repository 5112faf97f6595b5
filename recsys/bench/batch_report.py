"""The batch benchmark's targets and its markdown table (:mod:`recsys.bench.batch`)."""

from __future__ import annotations

TARGET_LOCAL_OVER_LOOP = 5.0    # (b) at least 5x (a)
TARGET_LOCAL_OVER_SPARK = 1.3   # (c) within 1.3x of (b): (b)/(c) <= 1.3


def targets(r: dict) -> dict:
    """The issue's targets, each with its measured value and whether it is met: the two speed ratios, and rows after
    a resume and on Spark (lost or duplicated; differing from the reference in any way, item included)."""
    a, b, c = (r[key]["users_per_s"] for key in ("a_recommend_loop", "b_local_job", "c_spark_job"))
    rows = r["resume"]["rows_vs_full_run"]
    bad = rows["lost"] + rows["extra"] + rows["duplicated"]
    resumed, spark = _differing(rows), _differing(r["spark_rows_vs_local"])
    return {"local_over_loop": {"value": b / a, "target": f">= {TARGET_LOCAL_OVER_LOOP}",
                                "met": b / a >= TARGET_LOCAL_OVER_LOOP},
            "local_over_spark": {"value": b / c, "target": f"<= {TARGET_LOCAL_OVER_SPARK}",
                                 "met": b / c <= TARGET_LOCAL_OVER_SPARK},
            "rows_lost_or_duplicated_after_resume": {"value": bad, "target": "0", "met": bad == 0},
            # "equal to an uninterrupted run" and "Spark = local row for row": every row, its item included
            "rows_differing_after_resume": {"value": resumed, "target": "0", "met": resumed == 0},
            "spark_rows_differing_from_local": {"value": spark, "target": "0", "met": spark == 0}}


def _differing(rows: dict) -> int:
    """Rows of a comparison that are not the reference's: lost, extra, duplicated or with another item."""
    return rows["lost"] + rows["extra"] + rows["duplicated"] + rows["different_item"]


def markdown(r: dict) -> str:
    """The table of one run: users/s, seconds, peak memory, the ratios and the resume."""
    a, b, c, d = r["a_recommend_loop"], r["b_local_job"], r["c_spark_job"], r["d_exact_gemm_limit"]
    res, t = r["resume"], r["targets"]
    rows = res["rows_vs_full_run"]
    mark = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines = [
        f"# Batch scoring: {r['users']:,} users, {r['n_items']:,} items, k={r['k']}, partner {r['media_id']}",
        "",
        f"`{r['cli']}` on {r['machine']}; load average before {r['load_average']['before'][0]:.2f}, "
        f"after {r['load_average']['after'][0]:.2f}. Users: {r['users']:,} distinct of {r['known_users']:,} "
        f"known (requested {r['users_requested']:,}).",
        "",
        "| way | users | seconds | users/s | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
        f"| (a) loop of `recommend` (in process), the median of {len(a['runs_users_per_s'])} runs "
        f"({', '.join(f'{x:.0f}' for x in a['runs_users_per_s'])} users/s) | {a['users']:,} | {a['seconds']:.1f} | "
        f"{a['users_per_s']:.0f} | |",
        f"| (b) `recsys score` local (subprocess) | {b['users']:,} | {b['job_seconds']:.1f} "
        f"(wall {b['wall_seconds']:.1f}) | {b['users_per_s']:.0f} | {b['peak_rss_mb']:.0f} |",
        f"| (c) `recsys score --engine spark` {c['master']} | {c['users']:,} | {c['job_seconds']:.1f} "
        f"(wall {c['wall_seconds']:.1f}) | {c['users_per_s']:.0f} | {c['peak_rss_mb']:.0f} |",
        f"| (d) exact GEMM + top-{r['k']} limit (no ranker), {d['block']} users timed | {r['users']:,} | "
        f"{d['seconds_for_all_users']:.1f} (scaled) | {d['users_per_s']:.0f} | |",
        "",
        "| target | measured | target | |",
        "|---|---:|---:|---|",
        f"| (b)/(a) | {t['local_over_loop']['value']:.2f}x | {t['local_over_loop']['target']} | "
        f"{mark(t['local_over_loop']['met'])} |",
        f"| (b)/(c) | {t['local_over_spark']['value']:.2f}x | {t['local_over_spark']['target']} | "
        f"{mark(t['local_over_spark']['met'])} |",
        f"| rows lost + extra + duplicated after kill and resume | {rows['lost']} + {rows['extra']} + "
        f"{rows['duplicated']} | 0 | {mark(t['rows_lost_or_duplicated_after_resume']['met'])} |",
        f"| rows of the resumed run not equal to (b)'s (another item included) | "
        f"{t['rows_differing_after_resume']['value']} | 0 | {mark(t['rows_differing_after_resume']['met'])} |",
        f"| rows of (c) not equal to (b)'s | {t['spark_rows_differing_from_local']['value']} | 0 | "
        f"{mark(t['spark_rows_differing_from_local']['met'])} |",
        "",
        f"Resume: the local job killed (SIGKILL) after {res['killed_after_seconds']:.1f} s with "
        f"{res['parts_at_kill']} of {res['parts']} parts published; the rerun skipped {res['resumed_parts']} parts "
        f"and took {res['resumed_run_seconds']:.1f} s, against {res['full_run_seconds']:.1f} s for the full run (b). "
        f"Rows with another item than (b)'s: {rows['different_item']}. Spark against local: "
        f"{r['spark_rows_vs_local']['lost']} lost, {r['spark_rows_vs_local']['extra']} extra, "
        f"{r['spark_rows_vs_local']['different_item']} with another item.",
        "",
    ]
    return "\n".join(lines)
