"""Trainer: known-answer checkerboard for every task, determinism under a seed, resume after a kill."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import ConfigError
from recsys.fit.callbacks import Callback, StopTraining
from recsys.fit.trainer import RetrievalData, Trainer, TrainerSettings, encode_all
from recsys.models.tasks import BPRTask, CosineContrastiveTask, FullSoftmaxTask, SampledSoftmaxTask, TaskNeeds
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel


def checkerboard(n_blocks: int = 3, users_per_block: int = 6, items_per_block: int = 5):
    """Users of block b interact with items of block b; each user's held-out item is one of their block's."""
    rows, cols, held = [], [], []
    for b in range(n_blocks):
        items = np.arange(b * items_per_block, (b + 1) * items_per_block)
        for k in range(users_per_block):
            u = b * users_per_block + k
            out = items[k % items_per_block]
            held.append(out)
            for i in items:
                if i != out:
                    rows.append(u)
                    cols.append(i)
    shape = (n_blocks * users_per_block, n_blocks * items_per_block)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape), np.array(held)


def _model(shape, history="mean", seed=0, **kw):
    torch.manual_seed(seed)
    return TwoTowerModel(TwoTowerConfig(num_users=shape[0], num_items=shape[1], dim=8, history=history, **kw))


TASKS = {
    "full_softmax": (lambda: FullSoftmaxTask(temperature=0.2, bounded=True), "in_batch"),
    "full_softmax_excl": (lambda: FullSoftmaxTask(temperature=0.2, exclude_other_positives=True), "in_batch"),
    "sampled_softmax_mixed": (lambda: SampledSoftmaxTask(temperature=0.2), "mixed"),
    "sampled_softmax_uniform": (lambda: SampledSoftmaxTask(temperature=0.2), "uniform"),
    "ccl": (lambda: CosineContrastiveTask(margin=0.5, negative_weight=1.0), "uniform"),
    "bpr": (lambda: BPRTask(temperature=0.2), "uniform"),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_checkerboard_held_out_item_ranks_first(name):
    train, held = checkerboard()
    make_task, negatives = TASKS[name]
    model = _model(train.shape, history="none" if name == "bpr" else "mean")
    Trainer(model, make_task(), TrainerSettings(epochs=20, batch_size=16, lr=0.05, negatives=negatives,
                                                num_negatives=8, seed=0), progress=False).fit(RetrievalData(train))
    users, items = encode_all(model, RetrievalData(train))
    scores = users @ items.T
    scores[train.nonzero()] = -np.inf
    assert (scores.argmax(1) == held).all()


def _fit(tmp_path=None, epochs=4, callbacks=None, checkpoint_every=0, validate=True, seed=0):
    train, held = checkerboard()
    valid = sp.csr_matrix((np.ones(len(held), np.float32), (np.arange(len(held)), held)), shape=train.shape)
    data = RetrievalData(train)

    def val(m):
        u, i = encode_all(m, data)
        s = u @ i.T
        s[train.nonzero()] = -np.inf
        return {"hit@1": float((s.argmax(1) == held).mean()), "score": float(s[valid.nonzero()].mean())}

    model = _model(train.shape, history="mean", seed=seed)
    settings = TrainerSettings(epochs=epochs, batch_size=8, lr=0.02, negatives="mixed", num_negatives=4,
                               history_dropout=0.3, seed=seed, patience=10, monitor="score",
                               checkpoint_every=checkpoint_every)
    trainer = Trainer(model, SampledSoftmaxTask(temperature=0.5), settings, validate=val if validate else None,
                      callbacks=callbacks or (), checkpoint_dir=tmp_path, progress=False)
    return model, trainer, data


def _same(a: TwoTowerModel, b: TwoTowerModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_identical_weights_and_other_seed_does_not():
    runs = []
    for seed in (0, 0, 1):
        model, trainer, data = _fit(seed=seed, epochs=2)
        trainer.fit(data)
        runs.append(model)
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_resume_after_stop_at_epoch_end_matches_uninterrupted(tmp_path):
    ref, trainer, data = _fit(epochs=4)
    ref_summary = trainer.fit(data)

    class Kill(Callback):
        def on_epoch_end(self, epoch, metrics):
            if epoch == 2:
                raise StopTraining

    model, trainer, data = _fit(tmp_path / "ck", epochs=4, callbacks=[Kill()])
    assert trainer.fit(data)["epochs_run"] == 2
    resumed, trainer, data = _fit(tmp_path / "ck", epochs=4, seed=0)
    summary = trainer.fit(data)
    assert summary["epochs_run"] == 4 and summary["best_epoch"] == ref_summary["best_epoch"]
    assert _same(ref, resumed)


def test_resume_after_kill_mid_epoch_matches_uninterrupted(tmp_path, monkeypatch):
    ref, trainer, data = _fit(epochs=3, validate=False)
    trainer.fit(data)
    model, trainer, data = _fit(tmp_path / "ck", epochs=3, checkpoint_every=3, validate=False)
    calls = {"n": 0}
    real = Trainer._loss

    def dying(self, *a):
        calls["n"] += 1
        if calls["n"] == 20:  # epoch 2, step 8 of 12 (the last checkpoint is at step 6)
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(Trainer, "_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(data)
    monkeypatch.setattr(Trainer, "_loss", real)
    resumed, trainer, data = _fit(tmp_path / "ck", epochs=3, checkpoint_every=3, validate=False)
    trainer.fit(data)
    assert _same(ref, resumed)


def test_early_stopping_restores_best_epoch_and_calls_hooks():
    seen = {"epochs": [], "end": None}

    class Rec(Callback):
        def on_epoch_end(self, epoch, metrics):
            seen["epochs"].append((epoch, metrics["loss"]))

        def on_train_end(self, summary):
            seen["end"] = summary

    model, trainer, data = _fit(epochs=3, callbacks=[Rec()])
    summary = trainer.fit(data)
    assert [e for e, _ in seen["epochs"]] == [1, 2, 3]
    assert seen["end"]["best_epoch"] == summary["best_epoch"]
    best = summary["best_metrics"]["score"]
    assert best == max(h["score"] for h in summary["history"])


def test_unknown_choices_are_config_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainerSettings(optimizer="adamax")
    with pytest.raises(ConfigError, match="negatives"):
        TrainerSettings(negatives="hard")


def test_impression_negatives_push_shown_but_unclicked_items_down():
    train, held = checkerboard()
    # every user was shown their held-out item and did not click it: impression negatives must lower
    # its score compared with the same training without them
    shown = sp.csr_matrix((np.ones(len(held), np.float32), (np.arange(len(held)), held)), shape=train.shape)
    margins = []
    for negatives in ("in_batch", "impressions"):
        data = RetrievalData(train, impressions=shown)
        model = _model(train.shape, history="mean")
        Trainer(model, SampledSoftmaxTask(temperature=0.2), TrainerSettings(
            epochs=10, batch_size=16, lr=0.05, negatives=negatives, num_negatives=2, seed=0), progress=False).fit(data)
        users, items = encode_all(model, data)
        scores = users @ items.T
        margins.append(float(np.mean(scores[np.arange(len(held)), held] - scores.mean(1))))
    assert margins[1] < margins[0] - 0.1
    with pytest.raises(ConfigError, match="impressions"):
        Trainer(model, SampledSoftmaxTask(), TrainerSettings(negatives="impressions"), progress=False).fit(
            RetrievalData(train))


def test_trainer_reads_the_declared_needs_and_leaves_the_task_alone():
    # a task is its declared needs and its one call: no base class, no isinstance in the trainer
    class Align:
        needs = TaskNeeds(catalogue=True)

        def __call__(self, query, candidates, batch=None):
            return -(query[batch.rows] * candidates[batch.cols]).sum(-1).mean() + candidates.pow(2).sum(-1).mean()

    train, _ = checkerboard()
    summary = Trainer(_model(train.shape), Align(), TrainerSettings(epochs=1, batch_size=16), progress=False).fit(
        RetrievalData(train))
    assert np.isfinite(summary["history"][0]["loss"])
    task = SampledSoftmaxTask(temperature=0.2)
    before = dict(vars(task))
    for negatives in ("uniform", "mixed"):
        Trainer(_model(train.shape), task, TrainerSettings(epochs=1, batch_size=16, negatives=negatives,
                                                           num_negatives=4), progress=False).fit(RetrievalData(train))
    assert vars(task) == before
    with pytest.raises(ConfigError, match="impression"):
        Trainer(_model(train.shape), CosineContrastiveTask(), TrainerSettings(negatives="impressions"),
                progress=False).fit(
            RetrievalData(train, impressions=train))
