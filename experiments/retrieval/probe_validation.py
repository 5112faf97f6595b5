"""Validation-only probe: train a benchmark config on the fit split, print validation R@20 per epoch
for several popularity-prior weights (``r<beta>``), never touching test.

    python experiments/retrieval/probe_validation.py DATA_DIR EPOCHS JSON_OVERRIDES [THREADS]

JSON_OVERRIDES: TwoTowerSettings keys, plus ``_betas`` (prior weights to score), ``_ccl``
(``{"margin": m, "weight": w}``: the cosine contrastive loss with *every* non-interacted item as a
negative, on user batches, instead of the config's task), ``_plateau`` (``{"factor": f, "patience":
p}``: lr multiplied by f after p epochs in a row without a new best served recall) and ``_decay``
(``{"start": e, "gamma": g}``: lr multiplied by g after each epoch >= e), ``_ema`` (a decay d: validation scores an exponential moving
average of the weights, updated after every step) and ``_au`` (``{"gamma": g}``: DirectAU's alignment +
g * uniformity loss instead of the config's task), ``_teacher`` (``{"filter": {"kind": "chebycf", ...}, "k": K,
"weight": w, "tau": t}``: distillation from a training-free filter fitted on the fit split, each user's top-K unseen
items joining the batch's positives of the full softmax with weight w each, or with ``tau`` ``w * K *
softmax(score / tau)`` over those K, the real positives weighing 1); ``_train_prior`` is the config key
``train_prior``.
Used for the probes in README.md, e.g.
``'{"use_user_id": true, "_betas": [0.0, 0.01, 0.02, 0.04, 0.08]}'``.
"""
import json
import sys
import time

import numpy as np
import torch

import recsys.fit.trainer as T
from recsys.datasets.lightgcn import load_lightgcn
from recsys.evaluation import EmbeddingScorer, evaluate_topk
from recsys.fit.callbacks import Callback
from recsys.fit.settings import TwoTowerSettings
from recsys.fit.trainer import RetrievalData, Trainer, TrainerSettings, encode_all
from recsys.fit.two_tower import build_task, two_tower_model
from recsys.fit.validation import carve_validation
from recsys.models.tasks import FullSoftmaxTask

data_dir, epochs, over = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
betas = over.pop("_betas", [0.0, 0.01, 0.02, 0.04, 0.08])
ccl = over.pop("_ccl", None)
decay = over.pop("_decay", None)  # {"start": epoch, "gamma": g}: lr *= g after each epoch >= start
plateau = over.pop("_plateau", None)  # {"factor": f, "patience": p}: lr *= f after p epochs without a new best
ema = over.pop("_ema", None)  # EMA decay per step; validation scores the averaged weights
au = over.pop("_au", None)  # {"gamma": g}: DirectAU alignment + uniformity
teacher = over.pop("_teacher", None)  # a graph filter's top items as extra positives (docstring)
if "_train_prior" in over:  # the first probes' name of the config key train_prior
    over["train_prior"] = over.pop("_train_prior")
cfg = TwoTowerSettings.from_dict(over)
ds = load_lightgcn(data_dir)
train = ds.train_matrix()
fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
pop = np.log1p(np.bincount(fit.indices, minlength=fit.shape[1])).astype(np.float32)


class FullCCL(FullSoftmaxTask):
    def __init__(self, margin, weight):
        super().__init__(temperature=1.0)
        self.margin, self.weight = margin, weight

    def __call__(self, user, items, batch):
        rows, cols = batch.rows, batch.cols
        s = user @ items.T
        pos = s[rows, cols]
        r = torch.relu(s - self.margin)
        r = r.index_put((rows, cols), torch.zeros_like(pos))
        n_pos = torch.bincount(rows, minlength=user.shape[0]).to(s.dtype)
        neg_mean = r.sum(1) / (items.shape[0] - n_pos)
        return ((1 - pos).sum() + self.weight * (n_pos * neg_mean).sum()) / rows.numel()


class AlignUniform(FullSoftmaxTask):
    """DirectAU (Wang et al., KDD 2022): ||u - i||^2 over positives + gamma/2 * (uniformity(users) +
    uniformity(items)), uniformity = log mean exp(-2 ||x - y||^2) over distinct pairs of the batch's users /
    of its positive items (at most 4096 of them)."""

    def __init__(self, gamma):
        super().__init__(temperature=1.0)
        self.gamma = gamma

    @staticmethod
    def _uniform(x):
        return torch.pdist(x).pow(2).mul(-2).exp().mean().log()

    def __call__(self, user, items, batch):
        rows, cols = batch.rows, batch.cols
        align = (user[rows] - items[cols]).pow(2).sum(1).mean()
        pos = torch.unique(cols)
        if pos.numel() > 4096:
            pos = pos[torch.randperm(pos.numel())[:4096]]
        return align + self.gamma / 2 * (self._uniform(user) + self._uniform(items[pos]))


data = RetrievalData(fit)
model = two_tower_model(cfg, {"num_users": fit.shape[0], "num_items": fit.shape[1]})


_ema = {}


def validate(m):
    if ema:
        import copy

        m = copy.deepcopy(m)
        m.load_state_dict({**m.state_dict(), **_ema})
    users, items = encode_all(m, data)
    out = {}
    for b in betas:
        u = np.hstack([users, np.ones((len(users), 1), np.float32)])
        it = np.hstack([items, b * pop[:, None]])
        r = evaluate_topk(EmbeddingScorer(u, it), fit, valid, (20,), metrics=("recall", "ndcg"), check_leakage=False)
        if b == 0:
            out.update(r)
        out[f"r{b}"] = r["recall@20"]
    return out


_opts = []
_base = T.OPTIMIZERS[cfg.optimizer]


def _opt(*a, **k):
    o = _base(*a, **k)
    _opts.append(o)
    if ema:
        def _after(opt, args, kwargs):
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name not in _ema:
                        _ema[name] = p.detach().clone()
                    else:
                        _ema[name].mul_(ema).add_(p.detach(), alpha=1 - ema)
        o.register_step_post_hook(_after)
    return o


T.OPTIMIZERS[cfg.optimizer] = _opt


_plat = {"best": -1.0, "bad": 0}


class Log(Callback):
    def on_epoch_end(self, epoch, metrics):
        if plateau:  # on the served recall: the best prior weight's
            served = max(metrics[f"r{b}"] for b in betas)
            if served > _plat["best"]:
                _plat.update(best=served, bad=0)
            else:
                _plat["bad"] += 1
                if _plat["bad"] >= plateau["patience"]:
                    _plat["bad"] = 0
                    for g in _opts[-1].param_groups:
                        g["lr"] *= plateau["factor"]
            metrics["next_lr"] = _opts[-1].param_groups[0]["lr"]
        if decay and epoch >= decay["start"]:
            for g in _opts[-1].param_groups:
                g["lr"] *= decay["gamma"]
            metrics["next_lr"] = _opts[-1].param_groups[0]["lr"]
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}), flush=True)


if teacher:
    import scipy.sparse as sp

    from recsys.bench.pipeline_settings import make_filter
    from recsys.features.sequences import row_slices
    from recsys.models.full_softmax import full_softmax_loss

    t1 = time.time()
    filt = make_filter(teacher["filter"]).fit(fit)
    K, lam, tau = teacher["k"], teacher["weight"], teacher.get("tau")
    ids, vals = filt.top_k(np.arange(fit.shape[0]), K)
    if tau:
        w = np.exp((vals - vals[:, :1]) / tau)
        w = w / w.sum(1, keepdims=True) * K * lam
    else:
        w = np.full(vals.shape, lam, np.float32)
    ok = ids >= 0
    S = sp.csr_matrix((w[ok].astype(np.float32), (np.repeat(np.arange(fit.shape[0]), ok.sum(1)), ids[ok])),
                      shape=fit.shape)
    print("teacher", teacher["filter"].get("kind"), round(time.time() - t1, 1), "s", flush=True)

    def _catalogue_loss(self, data, batch):
        """The trainer's catalogue loss with the teacher's items appended to the positives, weighted."""
        rows, cols = row_slices(data.positives, batch)
        r2, c2 = row_slices(S, batch)
        wt = np.concatenate([S.data[S.indptr[u]:S.indptr[u + 1]] for u in batch]) if len(r2) else np.zeros(0, np.float32)
        user = self.model.user_embeddings(self._user_feats(data, batch))
        items = self.model.item_embeddings(self._item_feats(data, None))
        R = torch.from_numpy(np.concatenate([rows, r2]).astype(np.int64))
        C = torch.from_numpy(np.concatenate([cols, c2]).astype(np.int64))
        W = torch.from_numpy(np.concatenate([np.ones(len(rows), np.float32), wt]))
        tk = self.task
        ui, it, bounded = user, items, tk.bounded
        if tk.item_prior is not None:  # as FullSoftmaxTask: one more coordinate, user 1, item its prior
            ui = torch.cat([user, user.new_ones(user.shape[0], 1)], 1)
            it = torch.cat([items, tk.item_prior.to(items)[:, None]], 1)
            bounded = bounded and (1.0 + tk._prior_bound) / tk.temperature < 50.0
        return full_softmax_loss(ui, it, R, C, tk.temperature, tk.exclude_other_positives, bounded, None, W)

    T.Trainer._catalogue_loss = _catalogue_loss

task = FullCCL(ccl["margin"], ccl["weight"]) if ccl else AlignUniform(au["gamma"]) if au else build_task(cfg, fit)
t0 = time.time()
tr = Trainer(model, task, TrainerSettings(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                          weight_decay=cfg.weight_decay, optimizer=cfg.optimizer,
                                          history_dropout=cfg.history_dropout, history_holdout=cfg.history_holdout,
                                          seed=cfg.seed, patience=99), validate=validate, callbacks=[Log()], progress=False)
s = tr.fit(data)
print("done", time.time() - t0, "best", s["best_epoch"], flush=True)
