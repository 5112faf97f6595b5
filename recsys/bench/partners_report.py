"""Markdown tables of a partners benchmark result (:func:`recsys.bench.partners.run_partners_benchmark`), for
experiments/partners/README.md: ``python -m recsys.bench.partners_report experiments/partners/results.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["carry_table", "recruit_table", "recruit_fit_table"]


def carry_table(result: dict) -> str:
    """One row per partner: true commission per 1,000 impressions of the top-N items of each method."""
    lines = ["| partner | candidates | proposed | popular | random | oracle | proposed / popular | "
             "overlap with oracle | CPU s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["carry"]["partners"]:
        lines.append(f"| {r['media_id']} | {r['candidates']:,} | {r['proposed']:.2f} | {r['popular']:.2f} | "
                     f"{r['random']:.2f} | {r['oracle']:.2f} | {r['proposed'] / max(r['popular'], 1e-12):.2f} | "
                     f"{r['overlap_with_oracle']:.2f} | {r['cpu_seconds']:.2f} |")
    s = result["carry"]["summary"]
    if s.get("n"):
        lines.append(f"| **mean of {s['n']}** | | **{s['mean_proposed']:.2f}** | **{s['mean_popular']:.2f}** | | "
                     f"**{s['mean_oracle']:.2f}** | **{s['ratio_proposed_to_popular']:.2f}** | | "
                     f"{s['mean_cpu_seconds']:.2f} |")
    return "\n".join(lines)


def recruit_table(result: dict) -> str:
    """One row per kind of target: true total commission of the top-k partners of each method, summed."""
    groups: dict[str, list[dict]] = {}
    for r in result["recruit"]["targets"]:
        groups.setdefault(next(iter(r["target"])), []).append(r)
    lines = ["| target | n | proposed | biggest partner | oracle | proposed / biggest | proposed share of oracle | "
             "biggest share of oracle | wins / ties / losses | CPU s |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for kind, rows in [*groups.items(), ("**all**", result["recruit"]["targets"])]:
        p, b, o = (sum(r[k] for r in rows) for k in ("proposed", "biggest", "oracle"))
        win = sum(r["proposed"] > r["biggest"] + 1e-12 for r in rows)
        lose = sum(r["proposed"] < r["biggest"] - 1e-12 for r in rows)
        cpu = sum(r["cpu_seconds"] for r in rows) / len(rows)
        lines.append(f"| {kind} | {len(rows)} | {p:.2f} | {b:.2f} | {o:.2f} | {p / max(b, 1e-12):.2f} | "
                     f"{p / max(o, 1e-12):.2f} | {b / max(o, 1e-12):.2f} | {win} / {len(rows) - win - lose} / {lose} | "
                     f"{cpu:.2f} |")
    return "\n".join(lines)


def recruit_fit_table(result: dict) -> str:
    """Per kind of target: true commission per 1,000 impressions of the k best-fitting partners of each method."""
    groups: dict[str, list[dict]] = {}
    for r in result["recruit"]["targets"]:
        groups.setdefault(next(iter(r["target"])), []).append(r)
    lines = ["| target | n | proposed (best fit) | biggest partner | oracle | proposed / biggest | "
             "proposed share of oracle |", "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, rows in [*groups.items(), ("**all**", result["recruit"]["targets"])]:
        p, b, o = (sum(r[k] for r in rows) / len(rows) for k in ("fit_proposed", "fit_biggest", "fit_oracle"))
        lines.append(f"| {kind} | {len(rows)} | {p:.2f} | {b:.2f} | {o:.2f} | {p / max(b, 1e-12):.2f} | "
                     f"{p / max(o, 1e-12):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    print(carry_table(data), recruit_table(data), recruit_fit_table(data), sep="\n\n")
