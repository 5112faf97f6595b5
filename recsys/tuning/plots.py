"""The study's figures, logged to the parent MLflow run: optimisation history and parameter importance.

Both come from :mod:`optuna.visualization.matplotlib` (Agg backend, PNG). Importance needs at least two
finished trials whose parameters differ; when it cannot be computed the reason is returned instead of a file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

__all__ = ["study_plots"]


def study_plots(study: Any, out_dir: str | Path) -> tuple[list[Path], dict[str, str]]:
    """Write ``optimization_history.png`` and ``param_importances.png`` under ``out_dir``; returns the
    paths written and, per figure not drawn, why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], {}
    for name, draw in (("optimization_history", ovm.plot_optimization_history),
                       ("param_importances", ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                ax = draw(study)
            fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            path = out / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        except (RuntimeError, ValueError, ZeroDivisionError) as e:  # too few finished trials, one-point space
            skipped[name] = f"{type(e).__name__}: {e}"
            plt.close("all")
    return written, skipped
