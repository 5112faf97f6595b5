"""One rank of the data-parallel test (tests/test_distributed.py starts two with torchrun).

    torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT [--epochs N] [--stop-after K] [--ckpt DIR] [--fail-at K]
        [--task full|sampled|mixed|impressions]

Trains the full-softmax two-tower model (``--task sampled``: sampled softmax with in-batch negatives over
the 196 training pairs, global batches of 15, so the last one has one row and rank 1 none) on a small
seeded block dataset (``--task mixed``: the same plus 8 uniform negatives a step; ``--task impressions``: plus
4 of each user's 6 shown-not-clicked items, from the other blocks); after every optimizer step
all ranks compare their weights (max |difference| recorded). Each rank writes ``rank<r>.json``
(step differences, callback calls, summary); rank 0 also saves the final model under ``model/``.
:func:`train` is also called in-process by the test as the one-process reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

if __name__ == "__main__":  # run as a script by torchrun: make `recsys` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.fit.callbacks import Callback, StopTraining  # noqa: E402
from recsys.fit.trainer import RetrievalData, Trainer, TrainerSettings, encode_all  # noqa: E402
from recsys.models.tasks import FullSoftmaxTask, SampledSoftmaxTask  # noqa: E402
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel  # noqa: E402

N_USERS, N_ITEMS, BLOCKS, BATCH = 49, 30, 3, 16  # 49 users: the last global batch has one row (rank 1 gets none)
PAIR_BATCH = 15  # sampled softmax: 196 pairs, the last global batch has one row


def block_data(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Users of block b like 4 random items of block b's 10; one more of the block is held out per user."""
    rng = np.random.default_rng(seed)
    rows, cols, held = [], [], []
    per = N_ITEMS // BLOCKS
    for u in range(N_USERS):
        b = u % BLOCKS
        picks = rng.choice(np.arange(b * per, (b + 1) * per), 5, replace=False)
        rows += [u] * 4
        cols += picks[:4].tolist()
        held.append(picks[4])
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))
    return train, np.array(held)


def shown_not_clicked(train: sp.csr_matrix, per_user: int = 6, seed: int = 1) -> sp.csr_matrix:
    """Each user was shown ``per_user`` items of the other blocks and clicked none of them."""
    rng = np.random.default_rng(seed)
    per = N_ITEMS // BLOCKS
    rows, cols = [], []
    for u in range(train.shape[0]):
        others = np.setdiff1d(np.arange(N_ITEMS), np.arange((u % BLOCKS) * per, (u % BLOCKS + 1) * per))
        rows += [u] * per_user
        cols += rng.choice(others, per_user, replace=False).tolist()
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=train.shape)


class Record(Callback):
    """Counts callback calls; raises StopTraining after epoch ``stop_after`` (0: never)."""

    def __init__(self, stop_after: int = 0) -> None:
        self.epochs, self.ended, self.stop_after = [], 0, stop_after

    def on_epoch_end(self, epoch, metrics):
        self.epochs.append(epoch)
        if self.stop_after and epoch >= self.stop_after:
            raise StopTraining

    def on_train_end(self, summary):
        self.ended += 1


def train(epochs: int = 4, stop_after: int = 0, ckpt: str | None = None,
          fail_at: int = 0, task: str = "full") -> tuple[TwoTowerModel, dict, Record]:
    """Train the reference configuration; returns (model, summary, callback record).

    ``fail_at`` > 0: validation (rank 0 only) raises at that epoch, to check that no rank hangs.
    """
    train_m, held = block_data()
    data = RetrievalData(train_m, impressions=shown_not_clicked(train_m) if task == "impressions" else None)
    calls = []

    def validate(m):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("validation failed on purpose")
        u, i = encode_all(m, data)
        s = u @ i.T
        s[train_m.nonzero()] = -np.inf
        top = np.argsort(-s, axis=1)[:, :5]
        return {"recall@5": float((top == held[:, None]).any(1).mean())}

    torch.manual_seed(0)
    model = TwoTowerModel(TwoTowerConfig(num_users=N_USERS, num_items=N_ITEMS, dim=8, history="mean"))
    record = Record(stop_after)
    loss, batch = (FullSoftmaxTask(temperature=0.2), BATCH) if task == "full" else \
        (SampledSoftmaxTask(temperature=0.2), PAIR_BATCH)
    negatives = task if task in ("mixed", "impressions") else "in_batch"
    settings = TrainerSettings(epochs=epochs, batch_size=batch, lr=0.02, seed=3,
                               num_negatives=4 if task == "impressions" else 8, negatives=negatives,
                               patience=10, monitor="recall@5", device="cpu")
    summary = Trainer(model, loss, settings, validate=validate, callbacks=[record], checkpoint_dir=ckpt,
                      progress=False).fit(data)
    return model, summary, record


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--stop-after", type=int, default=0)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--fail-at", type=int, default=0)
    p.add_argument("--task", choices=("full", "sampled", "mixed", "impressions"), default="full")
    a = p.parse_args()
    torch.set_num_threads(1)
    import torch.distributed as dist
    from torch.optim.optimizer import register_optimizer_step_post_hook

    diffs: list[float] = []

    def compare(opt, *_):  # after every step: gather every rank's weights and record the largest gap
        flat = torch.cat([p.detach().flatten() for g in opt.param_groups for p in g["params"]])
        out = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(out, flat)
        diffs.append(max(float((o - out[0]).abs().max()) for o in out))

    register_optimizer_step_post_hook(compare)
    model, summary, record = train(a.epochs, a.stop_after, a.ckpt, a.fail_at, a.task)
    rank = int(os.environ["RANK"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        model.save(out / "model")
    (out / f"rank{rank}.json").write_text(json.dumps({
        "step_max_diff": diffs, "callback_epochs": record.epochs, "train_end_calls": record.ended,
        "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
        "history": [{k: v for k, v in h.items() if k != "seconds"} for h in summary["history"]],
        "group_left": not dist.is_initialized()}))


if __name__ == "__main__":
    main()
