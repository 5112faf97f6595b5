"""Champion and candidates: every registered version is a candidate; the champion alias moves only when it wins.

>>> d = decide(client, "guess-you-like", "champion", "retrieval.recall_at_20", run_id, version="2")  # doctest: +SKIP
>>> d.promote, d.reason                                                                              # doctest: +SKIP
(False, 'not_better')

The champion's figure is read from the run that produced the champion version, in the same store and
under the same metric name as the candidate's, so the two are comparable; a champion run without the
metric is reported and never silently beaten. ``force`` (``recsys train --promote``) promotes whatever
the figures say. The decision is recorded in the candidate's run: tags ``promotion.decision``,
``promotion.reason``, ``promotion.metric``, ``promotion.champion_version`` and metrics
``promotion.candidate_value`` / ``promotion.champion_value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsys.fit.settings import lower_is_better

__all__ = ["CANDIDATE_ALIAS", "Decision", "decide", "metric_value", "record_decision"]

CANDIDATE_ALIAS = "candidate"


def metric_value(metrics: Mapping[str, float], name: str) -> float | None:
    """``name``'s finite value in a run's logged metrics, else None.

    A configured name (``retrieval.recall_at_20`` or ``retrieval.recall@20``) is looked up under the key the
    tracker logs it as (:func:`~recsys.evaluation.names.metric_name`).
    """
    from recsys.evaluation.names import metric_name

    value = metrics.get(metric_name(name))
    return float(value) if value is not None and math.isfinite(float(value)) else None


@dataclass(frozen=True)
class Decision:
    """Whether the candidate becomes champion, why (``reason``: a short code), and the figures compared."""

    promote: bool
    reason: str  # first, better, not_better, forced, champion_lacks_metric, candidate_lacks_metric
    message: str
    metric: str
    version: str
    candidate_value: float | None = None
    champion_value: float | None = None
    champion_version: str | None = None
    same_data: bool | None = None


def _champion(client: Any, name: str, alias: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        champ = client.get_model_version_by_alias(name, alias)
    except MlflowException:  # the alias (or the model) does not exist yet
        return None
    return None if str(champ.version) == str(version) else champ


def _run_data(client: Any, run_id: str | None):
    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}, {}
    try:
        data = client.get_run(run_id).data
    except MlflowException:  # the run was deleted
        return {}, {}
    return data.metrics, data.tags


def decide(client: Any, name: str, alias: str, metric: str, run_id: str | None, *, version: str,
           force: bool = False) -> Decision:
    """Compare version ``version`` of ``name`` (logged by run ``run_id``) with the version holding ``alias``."""
    metrics, tags = _run_data(client, run_id)
    cand = metric_value(metrics, metric)
    champ = _champion(client, name, alias, version)
    common = {"metric": metric, "version": str(version), "candidate_value": cand}
    if champ is None:
        return Decision(True, "first", f"version {version} becomes {alias}: no version holds @{alias} yet", **common)
    champ_metrics, champ_tags = _run_data(client, champ.run_id)
    held = metric_value(champ_metrics, metric)
    hashes = tags.get("data.hash"), champ_tags.get("data.hash")
    same = hashes[0] == hashes[1] if all(hashes) else None
    common |= {"champion_value": held, "champion_version": str(champ.version), "same_data": same}
    vs = f"{metric} {_fmt(cand)} vs champion version {champ.version}'s {_fmt(held)}"
    if same is False:
        vs += " (evaluated on different data: the figures may not be comparable)"
    if force:
        return Decision(True, "forced", f"version {version} becomes {alias} (--promote): {vs}", **common)
    keep = f"version {version} stays @{CANDIDATE_ALIAS}, @{alias} stays on version {champ.version}"
    how = f"; rerun with --promote (or set the alias in MLflow) to make it {alias} anyway"
    if held is None:
        return Decision(False, "champion_lacks_metric", f"{keep}: the champion's run {champ.run_id} has no {metric} "
                        f"to compare with{how}", **common)
    if cand is None:
        return Decision(False, "candidate_lacks_metric", f"{keep}: this run logged no {metric}{how}", **common)
    better = cand < held if lower_is_better(metric) else cand > held  # a tie keeps the champion
    if better:
        return Decision(True, "better", f"version {version} becomes {alias}: {vs}", **common)
    return Decision(False, "not_better", f"{keep}: {vs}, not better{how}", **common)


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"


def record_decision(client: Any, run_id: str | None, decision: Decision) -> None:
    """Write the decision into the candidate's run (tags and the two compared figures)."""
    if not run_id:
        return
    tags = {"promotion.decision": "promoted" if decision.promote else "kept", "promotion.reason": decision.reason,
            "promotion.message": decision.message[:5000], "promotion.metric": decision.metric,
            "promotion.version": decision.version, "promotion.champion_version": decision.champion_version or "none"}
    if decision.same_data is not None:
        tags["promotion.same_data"] = str(decision.same_data).lower()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    for key, value in (("candidate_value", decision.candidate_value), ("champion_value", decision.champion_value)):
        if value is not None:
            client.log_metric(run_id, f"promotion.{key}", value)
