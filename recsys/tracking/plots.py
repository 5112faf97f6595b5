"""The figures a training run logs: loss curves, Recall@K against K, calibration, ANN recall against latency.

Each function writes one PNG (matplotlib, Agg backend, imported on call) and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["loss_curve", "recall_curve", "calibration_curve", "ann_curve"]


def _plt():
    try:
        import matplotlib
    except ImportError as e:
        from recsys.errors import MissingDependencyError

        raise MissingDependencyError("the run's plots need matplotlib: pip install matplotlib") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    fig.clf()
    return path


def loss_curve(history: Sequence[Mapping[str, float]], path: str | Path, *, monitor: str = "recall@20") -> Path:
    """Training loss per epoch, with the validation metric on a second axis when there is one."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="training loss")
    ax.set(xlabel="epoch", ylabel="loss", title="Two-tower training")
    if history and monitor in history[0]:
        ax2 = ax.twinx()
        ax2.plot(epochs, [h[monitor] for h in history], "s--", color="tab:orange", label=f"validation {monitor}")
        ax2.set_ylabel(f"validation {monitor}")
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    out = _save(fig, path)
    plt.close(fig)
    return out


def recall_curve(results: Mapping[str, Mapping[str, float]], ks: Sequence[int], path: str | Path,
                 *, metric: str = "recall") -> Path:
    """``metric``@K against K, one line per model (test split, full ranking)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, res in results.items():
        pts = [(k, res[f"{metric}@{k}"]) for k in ks if f"{metric}@{k}" in res]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=name)
    ax.set(xlabel="K", ylabel=f"{metric}@K", title=f"{metric.capitalize()}@K on the test split (full ranking)")
    ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.legend()
    out = _save(fig, path)
    plt.close(fig)
    return out


def calibration_curve(cal, path: str | Path, *, title: str = "Ranker pCTR calibration (test impressions)") -> Path:
    """Reliability diagram of a :class:`recsys.evaluation.Calibration` (observed vs predicted rate per bin)."""
    from recsys.evaluation import reliability_plot

    return reliability_plot(cal, path, title=title)


def ann_curve(grid: Sequence[Mapping], path: str | Path, *, k: int, factory: str, target: float | None = None) -> Path:
    """Recall@k against exact search versus milliseconds per query, one point per search setting."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    pts = sorted((g["ms_per_query_batch"], g["recall"], g["params"]) for g in grid)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=factory)
        for ms, rec, params in pts:
            if params:
                ax.annotate(",".join(f"{v}" for v in params.values()), (ms, rec), fontsize=7,
                            textcoords="offset points", xytext=(3, -9))
    if target is not None:
        ax.axhline(target, color="grey", ls="--", label=f"target {target}")
    ax.set(xlabel="ms per query (batched, log scale)", ylabel=f"recall@{k} vs exact", title="ANN recall against latency")
    ax.set_xscale("log")
    ax.legend(loc="lower right")
    out = _save(fig, path)
    plt.close(fig)
    return out
