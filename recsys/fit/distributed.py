"""Data-parallel training under ``torchrun``: one process per core or GPU, the same model on each.

    torchrun --standalone --nproc_per_node=2 -m recsys train retrieval -c experiments/synthetic-demo.yaml

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address);
:class:`DataParallel` reads them, joins the process group (gloo on CPU, nccl on CUDA) and wraps the
loss computation in :class:`~torch.nn.parallel.DistributedDataParallel`, whose backward averages the
gradients of every rank. The trainer's ``batch_size`` stays the *global* batch: each of the W ranks
takes every W-th row of the same seeded batch (a deterministic, ``DistributedSampler``-like share,
re-drawn each epoch from ``(seed, epoch)``), and each rank's loss is weighted by its share of the
batch's loss terms, so the averaged gradient is the gradient one process would compute on the whole
batch. Sampled-softmax tasks score each row against the positives of the *whole* global batch
(:meth:`DataParallel.gather_rows`, differentiable), as one process does. Rank 0 validates, runs
the callbacks and writes checkpoints; the other ranks follow its decisions (metrics and the stop
flag are broadcast), so every rank stops at the same epoch.
Without ``torchrun`` (``WORLD_SIZE`` unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.errors import ConfigError

__all__ = ["WorldInfo", "world_from_env", "is_main_process", "DataParallel", "rank_share"]


@dataclass(frozen=True)
class WorldInfo:
    """This process's place among the training processes (``rank`` 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; torchrun sets it, "
                          f"unset it to train in one process") from None


def world_from_env() -> WorldInfo:
    """Rank, world size and local rank from the variables ``torchrun`` sets (defaults: one process)."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, "
                          f"LOCAL_RANK={local}; expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0")
    return WorldInfo(rank, world, local)


def is_main_process() -> bool:
    """True in a single process and in rank 0 of a ``torchrun`` job: the process that writes outputs."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return world_from_env().rank == 0


def rank_share(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s rows of a global batch: every ``world_size``-th row, starting at ``rank``."""
    return batch[rank::world_size]


def _comm_device(world: WorldInfo) -> str:
    import torch.distributed as dist

    return f"cuda:{world.local_rank}" if dist.get_backend() == "nccl" else "cpu"


class _LossStep(nn.Module):
    """The loss of one local batch as a module's ``forward``, so that DDP sees (and syncs) the step."""

    def __init__(self, model: nn.Module, loss: Callable[..., torch.Tensor], collective: bool = False) -> None:
        super().__init__()
        self.model = model
        self._loss = loss
        self._collective = collective

    def forward(self, data: Any, batch: np.ndarray) -> torch.Tensor:
        # a rank with no rows in a short last batch still joins the gradient all-reduce, and a loss that
        # gathers from the other ranks runs (on no rows: it must return 0) so that it joins their gathers
        if len(batch) == 0:
            zero = sum(p.sum() for p in self.model.parameters()) * 0.0
            return self._loss(data, batch) + zero if self._collective else zero
        return self._loss(data, batch)


class DataParallel:
    """What one training process does about its peers; with a world of one, nothing at all.

    ``loss_fn(data, local_batch) -> mean loss`` and ``terms_fn(data, local_batch) -> number of loss
    terms`` come from the trainer; :meth:`step_loss` returns the loss to back-propagate on this rank
    and the global batch's mean loss (equal on every rank) for logging.
    """

    def __init__(self, world: WorldInfo, owns_group: bool = False, comm_device: str = "cpu") -> None:
        self.world, self.owns_group = world, owns_group
        self._comm = torch.device(comm_device)  # where collective tensors live (nccl: this rank's GPU)
        self._ddp: nn.Module | None = None
        self._shares: list[int] = [0] * world.world_size  # rows of the current global batch on each rank

    @classmethod
    def from_env(cls, device: torch.device, timeout_s: float = 1800.0) -> DataParallel:
        """Join the ``torchrun`` process group (gloo on CPU, nccl on CUDA) if there is more than one process."""
        world = world_from_env()
        if world.world_size == 1:
            return cls(world)
        import torch.distributed as dist

        if not dist.is_available():
            raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed; "
                              "install a torch wheel with distributed support or run one process")
        if dist.is_initialized():
            if dist.get_world_size() != world.world_size:
                raise ConfigError(f"process group has {dist.get_world_size()} ranks but WORLD_SIZE is "
                                  f"{world.world_size}")
            return cls(world, comm_device=_comm_device(world))
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        return cls(world, owns_group=True, comm_device=_comm_device(world))

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def size(self) -> int:
        return self.world.world_size

    @property
    def main(self) -> bool:
        """Whether this process validates, runs callbacks and writes files (rank 0)."""
        return self.world.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: its own GPU (``LOCAL_RANK``) under CUDA, else ``device``."""
        return torch.device("cuda", self.world.local_rank) if self.size > 1 and device.type == "cuda" else device

    def seed(self, seed: int) -> int:
        """Torch seed of this rank: ``seed`` on rank 0 (as one process), a distinct one on the others."""
        return seed if self.rank == 0 else int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def wrap(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor],
             terms_fn: Callable[..., int], collective: bool = False) -> None:
        """Wrap the model for gradient all-reduce (parameters are broadcast from rank 0 here).

        ``collective``: ``loss_fn`` calls :meth:`gather_rows`, so every rank runs it on every step, also
        on no rows (it must then return a zero that still depends on what it gathered)."""
        self._loss_fn, self._terms_fn = loss_fn, terms_fn
        if self.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            dev = next(model.parameters()).device
            ids = [dev.index] if dev.type == "cuda" else None
            # unused parameters (e.g. a feature table a task never touches) must not stall the reducer
            self._ddp = DistributedDataParallel(_LossStep(model, loss_fn, collective), device_ids=ids,
                                                find_unused_parameters=True)

    def step_loss(self, data: Any, batch: np.ndarray) -> tuple[torch.Tensor, float]:
        """(loss to back-propagate on this rank, mean loss of the whole global batch)."""
        if self._ddp is None:
            loss = self._loss_fn(data, batch)
            return loss, float(loss.detach())
        local = rank_share(batch, self.rank, self.size)
        self._shares = [len(rank_share(batch, r, self.size)) for r in range(self.size)]
        n = float(self._terms_fn(data, local)) if len(local) else 0.0
        loss = self._ddp(data, local if n > 0 else local[:0])  # no loss terms: a zero loss, same all-reduce
        total_n, total_loss = self.all_sum([n, float(loss.detach()) * n])
        # DDP averages gradients over ranks; weighting by n * W / N turns that into the global batch mean
        return loss * (n * self.size / max(total_n, 1e-12)), total_loss / max(total_n, 1e-12)

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's ``rows`` for the current global batch (one row per local batch row), concatenated
        in rank order; ``rows`` itself with one process.

        Differentiable when ``rows`` requires grad: each rank's rows get back the sum of the gradients
        that every rank's loss put on them (``torch.distributed.nn.functional.all_gather``), so with
        DDP's gradient average and :meth:`step_loss`'s weights the step equals one process's.
        """
        if self.size == 1:
            return rows
        import torch.distributed as dist

        shares = self._shares
        if rows.shape[0] != shares[self.rank]:
            raise ValueError(f"gather_rows: this rank has {shares[self.rank]} rows in the batch, got {rows.shape[0]}")
        pad = max(shares) - rows.shape[0]  # all_gather needs one shape on every rank
        if pad:
            rows = torch.cat([rows, rows.new_zeros((pad, *rows.shape[1:]))])
        if rows.requires_grad:
            from torch.distributed.nn.functional import all_gather

            parts = list(all_gather(rows))
        else:
            parts = [torch.empty_like(rows) for _ in range(self.size)]
            dist.all_gather(parts, rows)
        return torch.cat([p[:n] for p, n in zip(parts, shares, strict=True)])

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        if self.size == 1:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._comm)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def from_main(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (JSON-able) on every rank; other ranks pass anything (e.g. ``None``)."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        raw = json.dumps(obj).encode() if self.main else b""
        size = torch.tensor([len(raw)], dtype=torch.int64, device=self._comm)
        dist.broadcast(size, src=0)
        buf = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(self._comm) if self.main else \
            torch.empty(int(size.item()), dtype=torch.uint8, device=self._comm)
        dist.broadcast(buf, src=0)
        return json.loads(buf.cpu().numpy().tobytes().decode()) if not self.main else obj

    def rng_states(self) -> list[torch.Tensor]:
        """Every rank's torch RNG state (index = rank), gathered on all ranks for the checkpoint."""
        state = torch.get_rng_state()
        if self.size == 1:
            return [state]
        import torch.distributed as dist

        out = [torch.empty_like(state, device=self._comm) for _ in range(self.size)]
        dist.all_gather(out, state.to(self._comm))
        return [t.cpu() for t in out]

    def close(self, clean: bool = True) -> None:
        """Release the DDP wrapper; leave the process group if this object joined it.

        The wrapper's reducer holds the group: destroyed only at interpreter exit, its gloo threads
        could abort the process (``terminate called without an active exception``), so it goes first.
        ``clean``: every rank got here (they leave together after a barrier); after an error, leave at
        once so that the error ends this process and torchrun stops the others.
        """
        self._ddp = None
        if self.owns_group:
            import gc

            import torch.distributed as dist

            gc.collect()
            if dist.is_initialized():
                if clean:
                    dist.barrier()
                dist.destroy_process_group()
            self.owns_group = False
