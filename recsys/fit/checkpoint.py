"""Resumable training checkpoints that a kill at any instant leaves loadable, never mixed.

A checkpoint directory ``root`` holds::

    root/ckpt-00000007/   model.safetensors, best.safetensors (when there is one), optimizer.safetensors,
                          rng.safetensors, state.json, MANIFEST.json (sha256 and size of every other file)
    root/LATEST           the name of the newest complete checkpoint (a hint: loading verifies anyway)

Writing puts every file into a fresh ``root/.tmp-ckpt-<n>-<pid>/``, fsyncs it, writes MANIFEST.json
last, renames the directory to ``ckpt-<n>`` (one atomic step), then replaces LATEST (``os.replace``)
and deletes the older checkpoints. Loading takes the newest ``ckpt-*`` whose files match its manifest,
so weights, optimizer, RNG and step always come from one save; ``.tmp-*`` leftovers of an interrupted
write are deleted and never read. No pickle anywhere: a checkpoint from an untrusted place is safe to load.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from recsys.errors import ArtifactError
from recsys.storage.atomic import file_sha256, fsync_path

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint"]

MANIFEST = "MANIFEST.json"
LATEST = "LATEST"
_PREFIX, _TMP = "ckpt-", ".tmp-ckpt-"
# tests only: seconds to sleep after each step of a save, and a file that records each step (kill-window tests)
PAUSE_ENV, TRACE_ENV = "RECSYS_CHECKPOINT_TEST_PAUSE", "RECSYS_CHECKPOINT_TEST_TRACE"


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


def _test_step(name: str) -> None:
    """Kill-window tests: record the step just finished and sleep (both off unless the env vars are set)."""
    if os.environ.get(TRACE_ENV):
        with open(os.environ[TRACE_ENV], "a") as f:
            f.write(name + "\n")
    if os.environ.get(PAUSE_ENV):
        time.sleep(float(os.environ[PAUSE_ENV]))


def _number(name: str) -> int:
    try:
        return int(name[len(_PREFIX):])
    except ValueError:
        return -1


def _complete(ckpt: Path) -> bool:
    """Whether every file the manifest lists is there with its size and sha256."""
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
        return all((ckpt / name).stat().st_size == entry["bytes"] and file_sha256(ckpt / name) == entry["sha256"]
                   for name, entry in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _clean_leftovers(root: Path, keep: str | None = None) -> None:
    """Delete interrupted writes (``.tmp-*``) and, when ``keep`` is given, every other checkpoint."""
    for p in root.iterdir() if root.is_dir() else []:
        if p.name.startswith(_TMP) or (keep is not None and p.name.startswith(_PREFIX) and p.name != keep):
            shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (verified against its manifest), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    names = sorted((p.name for p in root.iterdir() if p.name.startswith(_PREFIX) and p.is_dir()),
                   key=_number, reverse=True)
    return next((root / n for n in names if _complete(root / n)), None)


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    best_state: dict[str, torch.Tensor] | None, trainer_state: dict[str, Any],
                    rank_rng_states: list[torch.Tensor] | None = None) -> Path:
    """Write one checkpoint under ``path`` as a single atomic unit; returns its directory.

    ``rank_rng_states`` (data-parallel training): every rank's torch RNG state, index = rank.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(root)
    n = 1 + max((_number(p.name) for p in root.iterdir() if p.name.startswith(_PREFIX)), default=0)
    name = f"{_PREFIX}{n:08d}"
    tmp = root / f"{_TMP}{n}-{os.getpid()}"
    tmp.mkdir()
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    files = {"model.safetensors": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
             "optimizer.safetensors": opt_tensors, "rng.safetensors": _rng_states(rank_rng_states)}
    if best_state is not None:
        files["best.safetensors"] = {k: v.detach().cpu().contiguous() for k, v in best_state.items()}
    _write_unit(tmp, name, files, dict(trainer_state, optimizer=opt_meta, has_best=best_state is not None))
    _publish(root, tmp, name)
    _clean_leftovers(root, keep=name)
    return root / name


def _rng_states(rank_rng_states: list[torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """This process's torch RNG state, the other ranks' (``torch.rank<r>``) and every CUDA device's."""
    rng = {"torch": torch.get_rng_state()}
    for r, state in enumerate(rank_rng_states or []):
        if r > 0:
            rng[f"torch.rank{r}"] = state
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    return rng


def _write_unit(tmp: Path, name: str, files: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
    """The tensor files, ``state.json`` and, last, the manifest of their hashes, each fsynced, into ``tmp``."""
    from safetensors.torch import save_file

    for fname, tensors in files.items():
        save_file(tensors, str(tmp / fname))
        fsync_path(tmp / fname)
        _test_step(f"{name} {fname}")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
    fsync_path(tmp / "state.json")
    _test_step(f"{name} state.json")
    listed = {f: {"sha256": file_sha256(tmp / f), "bytes": (tmp / f).stat().st_size} for f in [*files, "state.json"]}
    (tmp / MANIFEST).write_text(json.dumps({"files": listed}, indent=1, sort_keys=True))
    fsync_path(tmp / MANIFEST)
    fsync_path(tmp)
    _test_step(f"{name} {MANIFEST}")


def _publish(root: Path, tmp: Path, name: str) -> None:
    """Rename the finished unit to ``name``, then point ``LATEST`` at it (each step atomic and fsynced)."""
    os.rename(tmp, root / name)
    fsync_path(root)
    _test_step(f"{name} renamed")
    (root / f"{LATEST}.tmp").write_text(name + "\n")
    fsync_path(root / f"{LATEST}.tmp")
    os.replace(root / f"{LATEST}.tmp", root / LATEST)
    fsync_path(root)
    _test_step(f"{name} {LATEST}")


def load_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rank: int = 0, checkpoint: Path | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore model, optimizer and RNG states from the newest complete checkpoint under ``path``, in place;
    return (trainer state, best weights or None).

    ``rank`` > 0 (data-parallel training) restores that rank's RNG state if the checkpoint has one,
    else keeps the RNG as it is (a job resumed with more processes than it was saved with). ``checkpoint``: the
    directory :func:`latest_checkpoint` already returned (its files are not hashed a second time).
    """
    from safetensors.torch import load_file

    ckpt = checkpoint if checkpoint is not None else latest_checkpoint(path)
    if ckpt is None:
        raise ArtifactError(f"no complete checkpoint in {path}: expected a ckpt-<n>/ directory whose files match its "
                            f"{MANIFEST} (was training started with checkpoint_dir={str(path)!r}?)")
    if rank == 0:
        _clean_leftovers(Path(path))
    state = json.loads((ckpt / "state.json").read_text())
    device = str(next(model.parameters()).device)
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=device))
    opt = _unflatten_optimizer(load_file(str(ckpt / "optimizer.safetensors"), device=device), state.pop("optimizer"))
    optimizer.load_state_dict(opt)
    rng = load_file(str(ckpt / "rng.safetensors"))
    key = "torch" if rank == 0 else f"torch.rank{rank}"
    if key in rng:
        torch.set_rng_state(rng[key])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    best = load_file(str(ckpt / "best.safetensors"), device=device) if state.pop("has_best") else None
    return state, best
