"""Figures of a partner report: the audience insight (profile, top attributes, rates, spending power) and the
lifecycle funnel (stage counts as stacked bars; flows between windows as a Sankey-style alluvial plot).

Each function writes PNGs (matplotlib, Agg backend, imported on call) into a folder and returns their paths;
sections a report left out (suppressed, or no data) draw nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.tracking.plots import _plt, _save

__all__ = ["insight_plots", "funnel_plots"]

STAGE_COLOURS = {"none": "#d9d9d9", "awareness": "#9ecae1", "interest": "#4292c6", "purchase": "#fd8d3c",
                 "loyalty": "#d94801"}


def insight_plots(insight: dict, out_dir: str | Path) -> list[Path]:
    """``insight_profile.png``, ``insight_top.png``, ``insight_rates.png`` and ``insight_spending.png`` of an
    :func:`~recsys.partners.audience_insight` report (those with data)."""
    out_dir, paths = Path(out_dir), []
    media = insight["media_id"]
    profile = {k: v for k, v in (insight.get("profile") or {}).items() if v}
    if profile:
        paths.append(_share_bars(profile, out_dir / "insight_profile.png", f"{media}: audience profile vs network"))
    spending = {k: v for k, v in (insight.get("spending_power") or {}).items() if isinstance(v, dict) and v}
    if spending:
        paths.append(_share_bars({f"price level ({k})": v for k, v in spending.items()},
                                 out_dir / "insight_spending.png", f"{media}: spending power (1 = cheapest fifth)"))
    top = {k: v["rows"] for k, v in (insight.get("top") or {}).items() if v and v["rows"]}
    if top:
        paths.append(_lift_bars(top, out_dir / "insight_top.png", media))
    if insight.get("rates"):
        paths.append(_rate_bars(insight["rates"], out_dir / "insight_rates.png", media))
    return paths


def _share_bars(sections: dict, path: Path, title: str) -> Path:
    plt = _plt()
    n = len(sections)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    for ax, (name, sec) in zip(axes[0], sections.items(), strict=True):
        labels = [str(r["value"]) for r in sec["rows"]]
        y = np.arange(len(labels))
        ax.barh(y - 0.2, [r["share"] for r in sec["rows"]], 0.4, label="audience", color="tab:blue")
        ax.barh(y + 0.2, [r["network_share"] for r in sec["rows"]], 0.4, label="network", color="tab:gray")
        ax.set(yticks=y, yticklabels=labels, xlabel="share of users", title=name)
        ax.invert_yaxis()
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return _done(plt, fig, path)


def _lift_bars(top: dict, path: Path, media: str) -> Path:
    plt = _plt()
    n = len(top)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.6), squeeze=False)
    for ax, (attr, rows) in zip(axes[0], top.items(), strict=True):
        y = np.arange(len(rows))
        lift = [r["lift"] or 0.0 for r in rows]
        ax.barh(y, lift, color=["tab:green" if v >= 1 else "tab:red" for v in lift])
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set(yticks=y, yticklabels=[f"{r['value']} ({r['events']})" for r in rows], xlabel="lift vs network",
               title=f"top {attr} (events)")
        ax.invert_yaxis()
    fig.suptitle(f"{media}: what the audience engages with")
    return _done(plt, fig, path)


def _rate_bars(rates: dict, path: Path, media: str) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, len(rates), figsize=(3.4 * len(rates), 3.2), squeeze=False)
    for ax, (name, pair) in zip(axes[0], rates.items(), strict=True):
        keys = [k for k in ("partner", "network") if pair[k]["rate"] is not None]
        vals = [pair[k]["rate"] for k in keys]
        err = [[v - (pair[k]["ci_low"] if pair[k]["ci_low"] is not None else v) for k, v in zip(keys, vals, strict=True)],
               [(pair[k]["ci_high"] if pair[k]["ci_high"] is not None else v) - v
                for k, v in zip(keys, vals, strict=True)]]  # no bar where there is no interval
        ax.bar(keys, vals, yerr=err, capsize=6, color=["tab:blue", "tab:gray"][:len(keys)])
        ax.set(title=f"{name.upper()} (95% Wilson)", ylabel="rate")
    fig.suptitle(f"{media}: click and conversion rates")
    return _done(plt, fig, path)


def funnel_plots(funnel: dict, out_dir: str | Path) -> list[Path]:
    """``funnel_counts.png`` (stacked bars of the stages per window, one panel per brand) and ``funnel_flows.png``
    (the flows between windows, Sankey-style) of a :func:`~recsys.partners.lifecycle_funnel` result."""
    out_dir = Path(out_dir)
    if not funnel["brands"]:
        return []
    return [_stacked(funnel, out_dir / "funnel_counts.png"), _alluvial(funnel, out_dir / "funnel_flows.png")]


def _stacked(funnel: dict, path: Path) -> Path:
    plt = _plt()
    brands, n_win = funnel["brands"], len(funnel["windows"])
    fig, axes = plt.subplots(1, len(brands), figsize=(3.2 * len(brands), 3.4), squeeze=False, sharey=True)
    for ax, brand in zip(axes[0], brands, strict=True):
        rows = sorted((r for r in funnel["counts"] if r["brand"] == brand), key=lambda r: r["window"])
        bottom = np.zeros(n_win)
        for stage in funnel["stages"]:
            vals = np.array([r[stage] for r in rows], float)
            ax.bar(range(n_win), vals, bottom=bottom, color=STAGE_COLOURS[stage], label=stage)
            bottom += vals
        ax.set(title=str(brand), xlabel="window", xticks=range(n_win))
    axes[0][0].set_ylabel("users")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{funnel['media_id']}: lifecycle stages per {funnel['window']} window")
    return _done(plt, fig, path)


def _alluvial(funnel: dict, path: Path) -> Path:
    """Per brand: a column per window stacked by stage (``none`` at the bottom), bands for the flows."""
    plt = _plt()
    brands, stages = funnel["brands"], funnel["flow_stages"]
    fig, axes = plt.subplots(len(brands), 1, figsize=(7.0, 2.6 * len(brands)), squeeze=False)
    for ax, brand in zip(axes[:, 0], brands, strict=True):
        flows = sorted((f for f in funnel["flows"] if f["brand"] == brand), key=lambda f: f["from_window"])
        mats = [np.asarray(f["matrix"], float) for f in flows]
        cols = [m.sum(axis=1) for m in mats] + ([mats[-1].sum(axis=0)] if mats else [])
        if not cols:  # one window: no flows, one column
            cols = [np.array([0.0] + [r[s] for s in stages[1:] for r in funnel["counts"] if r["brand"] == brand])]
        tops = [np.concatenate([[0.0], np.cumsum(c)]) for c in cols]
        width = 0.18
        for x, (c, top) in enumerate(zip(cols, tops, strict=True)):
            for i, s in enumerate(stages):
                ax.bar(x, c[i], bottom=top[i], width=width, color=STAGE_COLOURS[s], edgecolor="white",
                       label=s if x == 0 else None)
        for x, m in enumerate(mats):
            _bands(ax, m, tops[x], tops[x + 1], x + width / 2, x + 1 - width / 2, stages)
        ax.set(title=str(brand), ylabel="users", xticks=range(len(cols)))
    axes[-1][0].set_xlabel("window")
    axes[0][0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{funnel['media_id']}: flows between lifecycle stages")
    return _done(plt, fig, path)


def _bands(ax, m: np.ndarray, left_top: np.ndarray, right_top: np.ndarray, x0: float, x1: float,
           stages: list) -> None:
    """One band per non-zero flow cell, leaving stage i's segment and entering stage j's, in cell order."""
    out_pos, in_pos = left_top[:-1].copy(), right_top[:-1].copy()
    xs = np.linspace(x0, x1, 30)
    ease = (1 - np.cos(np.linspace(0, np.pi, 30))) / 2
    for i in range(len(stages)):
        for j in range(len(stages)):
            n = m[i, j]
            if n <= 0:
                continue
            lo = out_pos[i] + (in_pos[j] - out_pos[i]) * ease
            ax.fill_between(xs, lo, lo + n, color=STAGE_COLOURS[stages[j]], alpha=0.35, lw=0)
            out_pos[i] += n
            in_pos[j] += n


def _done(plt, fig, path: Path) -> Path:
    out = _save(fig, path)
    plt.close(fig)
    return out
