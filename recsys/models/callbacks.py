"""Trainer hooks (the MLflow adapter plugs in here) and the checkpoint files that make training resumable.

A checkpoint is a directory: ``model.safetensors`` (current weights), ``best.safetensors`` (the
weights selected on validation so far), ``optimizer.safetensors`` (optimizer tensors),
``rng.safetensors`` (torch RNG states) and ``state.json`` (epoch, step, metrics, optimizer
hyper-parameters). No pickle anywhere, so a checkpoint from an untrusted place is safe to load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from recsys.errors import ArtifactError

__all__ = ["Callback", "StopTraining", "save_checkpoint", "load_checkpoint", "progress_enabled"]


class Callback:
    """Hook points of :class:`recsys.models.trainer.Trainer`; override the ones you need."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch with its training loss, validation metrics and timing."""

    def on_train_end(self, summary: dict[str, Any]) -> None:
        """Called once with the best epoch, its metrics and the total training time."""


class StopTraining(Exception):
    """Raise from a callback to stop training at once (the last checkpoint stays resumable)."""


def progress_enabled() -> bool:
    """Progress bars only for a person at a terminal: off under ``CI=true`` or when stderr is not a TTY."""
    import sys

    return os.environ.get("CI", "").lower() not in ("1", "true", "yes") and sys.stderr.isatty()


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, pstate in state["state"].items():
        for name, val in pstate.items():
            key = f"{pid}.{name}"
            if torch.is_tensor(val):
                tensors[key] = val.detach().cpu().contiguous()
            else:
                scalars[key] = val
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, val in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    best_state: dict[str, torch.Tensor] | None, trainer_state: dict[str, Any],
                    rank_rng_states: list[torch.Tensor] | None = None) -> None:
    """Write a resumable checkpoint atomically (files first, ``state.json`` last).

    ``rank_rng_states`` (data-parallel training): every rank's torch RNG state, index = rank.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(cpu, str(path / "model.safetensors.tmp"))
    if best_state is not None:
        save_file({k: v.cpu().contiguous() for k, v in best_state.items()}, str(path / "best.safetensors.tmp"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, str(path / "optimizer.safetensors.tmp"))
    rng = {"torch": torch.get_rng_state()}
    for r, state in enumerate(rank_rng_states or []):
        if r > 0:
            rng[f"torch.rank{r}"] = state
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    save_file(rng, str(path / "rng.safetensors.tmp"))
    for name in ("model", "best", "optimizer", "rng"):
        tmp = path / f"{name}.safetensors.tmp"
        if tmp.exists():
            os.replace(tmp, path / f"{name}.safetensors")
    state = dict(trainer_state, optimizer=opt_meta, has_best=best_state is not None)
    (path / "state.json.tmp").write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(path / "state.json.tmp", path / "state.json")


def load_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rank: int = 0) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore model, optimizer and RNG states in place; return (trainer state, best weights or None).

    ``rank`` > 0 (data-parallel training) restores that rank's RNG state if the checkpoint has one,
    else keeps the RNG as it is (a job resumed with more processes than it was saved with).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "state.json").exists():
        raise ArtifactError(f"no checkpoint in {path}: state.json is missing (was training started with "
                            f"checkpoint_dir={str(path)!r}?)")
    state = json.loads((path / "state.json").read_text())
    device = str(next(model.parameters()).device)
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=device))
    opt = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors"), device=device), state.pop("optimizer"))
    optimizer.load_state_dict(opt)
    rng = load_file(str(path / "rng.safetensors"))
    key = "torch" if rank == 0 else f"torch.rank{rank}"
    if key in rng:
        torch.set_rng_state(rng[key])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    best = load_file(str(path / "best.safetensors"), device=device) if state.pop("has_best") else None
    return state, best
