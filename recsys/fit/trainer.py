"""Training loop for two-tower retrieval: deterministic, resumable, validated on data carved from training.

The loop reads top to bottom: for each epoch, batches in a seeded order -> model embeds -> task
scores -> optimizer step; then validation (a callable the caller builds from *training* data,
never test), early stopping, best-weights selection, checkpoint, callbacks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.errors import ConfigError
from recsys.features.retrieval_data import RetrievalData
from recsys.features.sequences import row_slices
from recsys.fit.callbacks import (
    Callback,
    StopTraining,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from recsys.fit.distributed import DataParallel, WorldInfo
from recsys.fit.trainer_settings import NEGATIVES, OPTIMIZERS, TrainerSettings
from recsys.models.encode import encode_all, user_inputs
from recsys.models.task_interface import Candidates, RetrievalTask, TaskBatch
from recsys.models.two_tower import TwoTowerModel
from recsys.progress import show_progress

# TrainerSettings (trainer_settings.py), encode_all and user_inputs (encoding.py) are re-exported here
__all__ = ["RetrievalData", "Trainer", "TrainerSettings", "NEGATIVES", "encode_all", "user_inputs"]


class Trainer:
    """Fits a :class:`TwoTowerModel` with a task from :mod:`recsys.models.tasks`.

    The trainer reads what the task declares (``task.needs``: catalogue or pairs, in-batch, shared or
    per-row negatives) and calls every task the same way, ``task(query, candidates, TaskBatch(...))``.

    ``validate(model) -> metrics`` is called after each epoch; ``monitor`` names the metric that
    selects the best epoch (higher is better) and drives early stopping after ``patience``
    epochs without improvement. Data order comes from ``(seed, epoch)`` and torch's RNG is saved in
    each checkpoint, so a run resumed from ``checkpoint_dir`` ends with the same weights as one
    that never stopped. Under ``torchrun`` the same loop trains data-parallel (DDP, see
    :mod:`recsys.fit.distributed`): ``batch_size`` is the global batch, rank 0 validates, calls
    the callbacks and writes the checkpoints, and every rank stops at the same epoch. A model with
    ``item_audience`` gets its item audiences from ``data.positives`` when ``fit`` starts.
    """

    def __init__(self, model: TwoTowerModel, task: RetrievalTask, settings: TrainerSettings | None = None, *,
                 validate: Callable[[TwoTowerModel], dict[str, float]] | None = None,
                 callbacks: Sequence[Callback] = (), progress: bool | None = None,
                 checkpoint_dir: str | Path | None = None) -> None:
        self.model, self.task = model, task
        self.settings = settings or TrainerSettings()
        self.validate, self.callbacks = validate, list(callbacks or ())
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        device = self.settings.device
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.progress = show_progress(progress)
        self._dp = DataParallel(WorldInfo())  # fit() joins the torchrun group when there is one
        self.resumed_from: dict[str, int] | None = None  # set by fit(): the epoch and step it resumed at

    # ----- batches -------------------------------------------------------------------------------
    def _user_feats(self, data: RetrievalData, users: np.ndarray) -> dict[str, torch.Tensor]:
        dropout = self.settings.history_dropout if self.model.training else 0.0
        return user_inputs(self.model, data, users, self.device, history_dropout=dropout)

    def _item_feats(self, data: RetrievalData, items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if getattr(self, "_items_on_device", (None,))[0] is not data:  # copy item features to the device once
            self._items_on_device = (data, {k: v.to(self.device) for k, v in data.item_features.items()})
        feats = self._items_on_device[1]
        return feats if items is None else {k: v[items.to(self.device)] for k, v in feats.items()}

    def _batches(self, data: RetrievalData, epoch: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.settings.seed, epoch])
        if self.task.needs.catalogue:  # batches of users
            order = rng.permutation(data.positives.shape[0])
        else:  # batches of (user, item) pairs
            order = rng.permutation(data.positives.nnz)
        for start in range(0, len(order), self.settings.batch_size):
            yield order[start:start + self.settings.batch_size]

    def _terms(self, data: RetrievalData, batch: np.ndarray) -> int:
        """How many terms the batch's mean loss averages (positives for a catalogue task, else rows)."""
        if self.task.needs.catalogue:  # (with history_holdout: the expected share of them)
            return int((data.positives.indptr[batch + 1] - data.positives.indptr[batch]).sum())
        return len(batch)

    def _loss(self, data: RetrievalData, batch: np.ndarray) -> torch.Tensor:
        model, task, needs = self.model, self.task, self.task.needs
        if needs.catalogue:
            return self._catalogue_loss(data, batch)
        users, items = data.pair_users[batch], torch.from_numpy(data.pair_items[batch])
        user = model.user_embeddings(self._user_feats(data, users))
        pos_emb = model.item_embeddings(self._item_feats(data, items))
        n_items = data.positives.shape[1]
        if needs.pairwise:
            neg = torch.randint(n_items, (len(batch),))
            neg_emb = model.item_embeddings(self._item_feats(data, neg))
            return task(user, pos_emb, TaskBatch(row_negatives=neg_emb[:, None, :]))
        if self.settings.negatives == "impressions":
            return self._impression_loss(data, users, user, pos_emb, items)
        extra = None
        if needs.requires_shared_negatives or (needs.shared_negatives and self.settings.negatives in ("uniform", "mixed")):
            neg = torch.randint(n_items, (self.settings.num_negatives,))
            log_q = torch.full((self.settings.num_negatives,), float(np.log(self.settings.num_negatives / n_items)))
            extra = Candidates(model.item_embeddings(self._item_feats(data, neg)), neg.to(self.device),
                               log_q.to(self.device))
        ids = items.to(self.device)
        return task(user, pos_emb, self._in_batch(data, pos_emb, ids, len(batch), negatives=extra))

    def _in_batch(self, data: RetrievalData, pos_emb: torch.Tensor, ids: torch.Tensor, n: int,
                  **fields: Any) -> TaskBatch:
        """The batch of a row-aligned task: the positives' ids with their logQ as in-batch negatives, or under
        data-parallel training the whole global batch (and equal row weights)."""
        in_batch = self.settings.negatives != "uniform"
        if self._gathers_batch():
            return TaskBatch(ids=ids, in_batch=in_batch, weights=self._row_weights(n),
                             global_batch=self._global_batch(data, pos_emb, ids), **fields)
        log_q = None
        if self.task.needs.in_batch:
            log_q = (data.item_log_freq[ids.cpu()] + float(np.log(n))).to(self.device)
        return TaskBatch(ids=ids, log_q=log_q, in_batch=in_batch, **fields)

    def _gathers_batch(self) -> bool:
        """Whether in-batch negatives come from the whole global batch of a data-parallel run."""
        needs = self.task.needs
        return self._dp.size > 1 and needs.in_batch and not needs.catalogue and not needs.pairwise and \
            self.settings.negatives != "uniform"

    def _row_weights(self, n: int) -> torch.Tensor:
        """Equal weights: the mean loss, and 0 (not NaN) for a rank with no rows in a short last batch."""
        return torch.ones(n, device=self.device)

    def _global_batch(self, data: RetrievalData, pos_emb: torch.Tensor, items: torch.Tensor) -> Candidates:
        """The positives of every rank's rows, with their logQ for the global batch's size."""
        emb, ids = self._dp.gather_rows(pos_emb), self._dp.gather_rows(items)
        log_q = data.item_log_freq[ids.cpu()] + float(np.log(max(len(ids), 1)))
        return Candidates(emb, ids, log_q.to(self.device))

    def _catalogue_loss(self, data: RetrievalData, batch: np.ndarray) -> torch.Tensor:
        """A batch of users scored against the whole catalogue, every training item of theirs a positive."""
        rows, cols = row_slices(data.positives, batch)
        if self.settings.history_holdout > 0:
            return self._holdout_loss(data, batch, rows, cols)
        user = self.model.user_embeddings(self._user_feats(data, batch))
        items = self.model.item_embeddings(self._item_feats(data, None))
        return self.task(user, items, TaskBatch(rows=torch.from_numpy(rows).to(self.device),
                                                cols=torch.from_numpy(cols).to(self.device)))

    def _holdout_loss(self, data: RetrievalData, batch: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        """Hide a random share of each user's items from the history and predict exactly those.

        The user tower then learns what evaluation asks of it: items *not* in the history. The
        visible history items are known positives, removed from the softmax (not negatives).
        """
        if data.history is not None:
            raise ConfigError("history_holdout needs the history to be the positives (RetrievalData.history=None)")
        hide = (torch.rand(len(rows)) < self.settings.history_holdout).numpy()
        offsets = np.searchsorted(rows[~hide], np.arange(len(batch))).astype(np.int64)
        feats = {k: v[torch.from_numpy(batch)].to(self.device) for k, v in data.user_features.items()}
        feats["history"] = torch.from_numpy(cols[~hide].astype(np.int64)).to(self.device)
        feats["history_offsets"] = torch.from_numpy(offsets).to(self.device)
        user = self.model.user_embeddings(feats)
        items = self.model.item_embeddings(self._item_feats(data, None))
        dev = lambda a: torch.from_numpy(a.astype(np.int64)).to(self.device)  # noqa: E731
        return self.task(user, items, TaskBatch(rows=dev(rows[hide]), cols=dev(cols[hide]),
                                                known=(dev(rows[~hide]), dev(cols[~hide]))))

    def _impression_loss(self, data, users, user, pos_emb, items) -> torch.Tensor:
        if not self.task.needs.impressions:
            raise ConfigError(f"{type(self.task).__name__} takes no impression negatives; choose negatives "
                              f"'in_batch', 'uniform' or 'mixed'")
        if data.impressions is None:
            raise ConfigError("negatives='impressions' needs RetrievalData.impressions (shown, not clicked)")
        k = self.settings.num_negatives
        imp = data.impressions
        lens = np.diff(imp.indptr)[users]
        pick = (torch.rand(len(users), k).numpy() * np.maximum(lens, 1)[:, None]).astype(np.int64)
        neg = imp.indices[np.minimum(imp.indptr[users][:, None] + pick, max(imp.nnz - 1, 0))]
        mask = torch.from_numpy(lens > 0)[:, None].expand(-1, k).to(self.device)
        neg_emb = self.model.item_embeddings(self._item_feats(data, torch.from_numpy(neg.reshape(-1))))
        neg_emb = neg_emb.view(len(users), k, neg_emb.shape[-1])
        return self.task(user, pos_emb, self._in_batch(data, pos_emb, items.to(self.device), len(users),
                                                       row_negatives=neg_emb, row_negative_mask=mask))

    # ----- loop ----------------------------------------------------------------------------------
    def fit(self, data: RetrievalData, *, resume: bool = True) -> dict[str, Any]:
        """Train; returns a summary with ``best_epoch``, ``best_metrics``, ``history`` and ``train_seconds``."""
        self._dp = DataParallel.from_env(self.device)  # one process unless started by torchrun
        try:
            summary = self._fit(data, resume)
        except BaseException:
            self._dp.close(clean=False)
            raise
        self._dp.close()
        return summary

    def _fit(self, data: RetrievalData, resume: bool) -> dict[str, Any]:
        dp = self._dp
        self.device = dp.device(self.device)
        torch.manual_seed(dp.seed(self.settings.seed))
        self.model.to(self.device)
        self.model.set_item_audience(data.positives)  # item_audience: the audience is the data being fitted
        # the fused kernel is ~10x faster than the per-tensor loop on CPU (and exists on CUDA)
        fused = self.device.type in ("cpu", "cuda")
        opt = OPTIMIZERS[self.settings.optimizer](self.model.parameters(), lr=self.settings.lr, weight_decay=self.settings.weight_decay,
                                              fused=fused)
        st = {"epoch": 0, "step": 0, "best_metric": None, "best_epoch": 0, "bad_epochs": 0, "history": [],
              "seconds": 0.0, "epoch_loss": 0.0}
        best, self.resumed_from = None, None
        ckpt = latest_checkpoint(self.checkpoint_dir) if resume and self.checkpoint_dir is not None else None
        if ckpt is not None:
            st, best = load_checkpoint(self.checkpoint_dir, model=self.model, optimizer=opt, rank=dp.rank,
                                       checkpoint=ckpt)
            self.resumed_from = {"epoch": st["epoch"], "step": st["step"]}
        dp.wrap(self.model, self._loss, self._terms, collective=self._gathers_batch())
        t_start = time.perf_counter() - st["seconds"]
        while st["epoch"] < self.settings.epochs and not self._early_stopped(st):  # a resumed run may have stopped early
            self.model.train()
            batches = list(self._batches(data, st["epoch"]))
            bar = self._bar(len(batches), st) if dp.main else None
            for i, batch in enumerate(batches):
                if i < st["step"]:
                    continue
                opt.zero_grad(set_to_none=True)
                loss, batch_loss = dp.step_loss(data, batch)
                loss.backward()
                opt.step()
                st["epoch_loss"] += batch_loss
                st["step"] = i + 1
                if bar is not None:
                    bar.update(len(batch))
                    bar.set_postfix(loss=f"{st['epoch_loss'] / st['step']:.4f}")
                if self.settings.checkpoint_every and st["step"] % self.settings.checkpoint_every == 0 and i + 1 < len(batches):
                    self._checkpoint(opt, best, st, t_start)
            if bar is not None:
                bar.close()
            best = self._end_epoch(st, len(batches), best, t_start)
            stop = dp.from_main(self._notify(st) if dp.main else None)  # a callback's stop holds for all ranks
            # after the hooks: a kill between them and the save redoes the epoch (logged twice at one step)
            # instead of resuming past an epoch that was never logged
            self._checkpoint(opt, best, st, t_start)
            if stop:
                break
        return self._finish(st, best, t_start)

    def _early_stopped(self, st: dict) -> bool:
        return self.validate is not None and st["bad_epochs"] >= self.settings.patience

    def _bar(self, n_batches: int, st: dict):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=None, desc=f"epoch {st['epoch'] + 1}/{self.settings.epochs}", unit="row", unit_scale=True,
                    leave=False)

    def _end_epoch(self, st: dict, n_batches: int, best, t_start: float):
        metrics = {"epoch": st["epoch"] + 1, "loss": st["epoch_loss"] / max(n_batches, 1)}
        if self.validate is not None:
            metrics.update(self._dp.from_main(self._validation() if self._dp.main else None))
            if self.settings.monitor not in metrics:
                raise ConfigError(f"monitor {self.settings.monitor!r} is not among the validation metrics {sorted(metrics)}")
            if st["best_metric"] is None or metrics[self.settings.monitor] > st["best_metric"]:
                st.update(best_metric=metrics[self.settings.monitor], best_epoch=st["epoch"] + 1, bad_epochs=0)
                best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                st["bad_epochs"] += 1
        metrics["seconds"] = time.perf_counter() - t_start
        st["history"].append(metrics)
        st.update(epoch=st["epoch"] + 1, step=0, epoch_loss=0.0)
        return best

    def _validation(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            metrics = self.validate(self.model)
        return metrics if self._dp.size == 1 else {k: float(v) for k, v in metrics.items()}

    def _checkpoint(self, opt, best, st: dict, t_start: float) -> None:
        st["seconds"] = time.perf_counter() - t_start
        if self.checkpoint_dir is not None:
            rng = self._dp.rng_states() if self._dp.size > 1 else None  # collective: every rank calls it
            if self._dp.main:
                save_checkpoint(self.checkpoint_dir, model=self.model, optimizer=opt, best_state=best,
                                trainer_state=st, rank_rng_states=rng)

    def _notify(self, st: dict) -> bool:
        try:
            for cb in self.callbacks:
                cb.on_epoch_end(st["epoch"], copy.deepcopy(st["history"][-1]))
        except StopTraining:
            return True
        return False

    def _finish(self, st: dict, best, t_start: float) -> dict[str, Any]:
        if best is not None:
            self.model.load_state_dict(best)
        self.model.eval()
        summary = {"best_epoch": st["best_epoch"] or st["epoch"], "epochs_run": st["epoch"],
                   "best_metrics": next((h for h in st["history"] if h["epoch"] == st["best_epoch"]),
                                        st["history"][-1] if st["history"] else {}),
                   "history": st["history"], "train_seconds": time.perf_counter() - t_start}
        for cb in self.callbacks if self._dp.main else []:
            cb.on_train_end(summary)
        return summary
