"""ESMM: entire-space multi-task model of pCTR and pCVR (Ma et al., SIGIR 2018), in PyTorch.

Shared embeddings of the id columns, concatenated with the standardised numeric features, feed two
towers: a CTR tower (logit of P(click | impression)) and a CVR tower (logit of P(purchase | click)).
pCTCVR = pCTR x pCVR. The loss is defined on impressions only::

    L = BCE(pCTR, click) + BCE(pCTCVR, purchase)                       (ESMM)
      + ips_weight * mean_impressions[ click * BCE(pCVR, purchase) / max(pCTR, floor) ]  (ESCM2-IPS, optional)

so with ``ips_weight=0`` the CVR tower learns only through pCTCVR, on the entire impression space,
which avoids the sample-selection bias of training CVR on clicks alone. The propensity in the
IPS term is detached (it reweights, it is not trained through that term).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import ArtifactError
from recsys.models.rankers.base import CalibratedRanker, current_param_names, numeric_matrix, resolve_columns
from recsys.progress import show_progress


@dataclass(frozen=True)
class ESMMConfig:
    """Architecture, stored inside the saved artifact: one vocabulary size per id column (slot 0 = unknown)."""

    vocab_sizes: tuple[int, ...]
    n_numeric: int
    dim: int = 16
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.0


def _tower(in_dim: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        in_dim = h
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


class ESMMNet(nn.Module):
    """Shared embeddings + CTR tower + CVR tower; ``forward`` returns (ctr_logit, cvr_logit)."""

    def __init__(self, config: ESMMConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleList(nn.Embedding(v, config.dim) for v in config.vocab_sizes)
        in_dim = len(config.vocab_sizes) * config.dim + config.n_numeric
        self.ctr_tower = _tower(in_dim, config.hidden, config.dropout)
        self.cvr_tower = _tower(in_dim, config.hidden, config.dropout)

    def init_output_bias(self, ctr: float, cvr: float) -> None:
        """Start each tower at the base rate's logit, so early steps learn ranking instead of the mean."""
        with torch.no_grad():
            for tower, rate in ((self.ctr_tower, ctr), (self.cvr_tower, cvr)):
                rate = min(max(rate, 1e-4), 1 - 1e-4)
                tower[-1].bias.fill_(float(np.log(rate / (1 - rate))))

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [emb(cat[:, j]) for j, emb in enumerate(self.embeddings)] + [num]
        h = torch.cat(parts, dim=1)
        return self.ctr_tower(h).squeeze(1), self.cvr_tower(h).squeeze(1)

    @staticmethod
    def probabilities(ctr_logit: torch.Tensor, cvr_logit: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(pctr, pcvr, pctcvr) with pctcvr = pctr * pcvr."""
        pctr, pcvr = torch.sigmoid(ctr_logit), torch.sigmoid(cvr_logit)
        return pctr, pcvr, pctr * pcvr


def esmm_loss(ctr_logit: torch.Tensor, cvr_logit: torch.Tensor, click: torch.Tensor, purchase: torch.Tensor,
              *, ips_weight: float = 0.0, propensity_floor: float = 0.05) -> torch.Tensor:
    """BCE(pCTR, click) + BCE(pCTCVR, purchase) over impressions (+ optional ESCM2-IPS CVR term).

    Computed in log space: log pCTCVR = logsigmoid(ctr) + logsigmoid(cvr) and
    log(1 - pCTCVR) = log(-expm1(log pCTCVR)), so tiny probabilities stay finite.
    """
    ctr_loss = F.binary_cross_entropy_with_logits(ctr_logit, click)
    log_p = F.logsigmoid(ctr_logit) + F.logsigmoid(cvr_logit)
    log_not_p = torch.log((-torch.expm1(log_p)).clamp_min(1e-12))
    ctcvr_loss = -(purchase * log_p + (1 - purchase) * log_not_p).mean()
    loss = ctr_loss + ctcvr_loss
    if ips_weight:
        propensity = torch.sigmoid(ctr_logit).detach().clamp_min(propensity_floor)
        cvr_bce = F.binary_cross_entropy_with_logits(cvr_logit, purchase, reduction="none")
        loss = loss + ips_weight * (click * cvr_bce / propensity).mean()
    return loss


@contextmanager
def _threads(n: int | None):
    """Temporarily limit torch's intra-op threads (1 is fastest on a busy shared 2-core machine)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(iterable, total: int, desc: str):
    if not show_progress():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


class ESMMRanker(CalibratedRanker):
    """ESMM multi-task ranker behind the :mod:`.base` interface; ids embedded, numeric columns standardised.

    ``ips_weight > 0`` adds the ESCM2-style inverse-propensity CVR term; ``num_threads`` limits torch's
    threads during fit and predict (None = torch's default). One epoch is the default: with id
    embeddings, later epochs overfit (the "one-epoch phenomenon" of CTR models; on a 30% sample of the
    1M-event synthetic world's training impressions 3 epochs lost 0.008 CTR AUC and 0.048 CVR AUC against
    1: experiments/ranker/esmm_epochs.py).
    """

    kind = "esmm"

    def __init__(self, *, dim: int = 16, hidden: Sequence[int] = (128, 64), dropout: float = 0.0,
                 epochs: int = 1, batch_size: int = 2048, lr: float = 2e-3, weight_decay: float = 0.0,
                 ips_weight: float = 0.0, propensity_floor: float = 0.05, min_count: int = 1,
                 categorical: Sequence[str] | None = None, exclude: Sequence[str] = (), calibration: str = "platt",
                 calibration_fraction: float = 0.2, check_leakage: bool = True, seed: int = 0,
                 num_threads: int | None = None) -> None:
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.ips_weight = ips_weight
        self.propensity_floor = propensity_floor
        self.min_count = min_count
        self.categorical = categorical
        self.exclude = exclude
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.check_leakage = check_leakage
        self.seed = seed
        self.num_threads = num_threads

    # ------------------------------------------------------------------ tensors
    def _tensors(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        cat = np.zeros((len(frame), len(self.cat_columns_)), dtype=np.int64)
        for j, (col, vocab) in enumerate(zip(self.cat_columns_, self.vocabs_, strict=True)):
            cat[:, j] = pd.Index(vocab).get_indexer(frame[col].to_numpy()) + 1  # unknown -> 0
        x = numeric_matrix(frame, self.num_columns_)
        x = (x - self.mean_) / self.std_
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), -8, 8).astype(np.float32)
        return torch.from_numpy(cat), torch.from_numpy(x)

    def _fit_raw(self, frame: pd.DataFrame, click: np.ndarray, purchase: np.ndarray) -> None:
        cats, numeric = resolve_columns(frame, self.categorical)
        drop = set(self.exclude)
        self.cat_columns_ = [c for c in cats if c not in drop]
        self.num_columns_ = [c for c in numeric if c not in drop]
        self.vocabs_ = []
        for col in self.cat_columns_:
            counts = frame[col].value_counts(sort=False, dropna=True)
            keep = set(counts.index[counts.to_numpy() >= self.min_count])
            self.vocabs_.append([v for v in pd.unique(frame[col].dropna()) if v in keep])
        x = numeric_matrix(frame, self.num_columns_)
        with np.errstate(all="ignore"):
            self.mean_ = np.nan_to_num(np.nanmean(x, axis=0)).astype(np.float32)
            self.std_ = np.nan_to_num(np.nanstd(x, axis=0), nan=1.0).astype(np.float32)
        self.std_[self.std_ < 1e-6] = 1.0
        torch.manual_seed(self.seed)
        self.config_ = ESMMConfig(tuple(len(v) + 1 for v in self.vocabs_), len(self.num_columns_),
                                  self.dim, tuple(self.hidden), self.dropout)
        self.net_ = ESMMNet(self.config_)
        self.net_.init_output_bias(float(click.mean()), float(purchase.sum() / max(click.sum(), 1.0)))
        with _threads(self.num_threads):
            self.history_ = self._train(*self._tensors(frame), torch.from_numpy(click), torch.from_numpy(purchase))

    def _train(self, cat, num, click, purchase) -> list[float]:
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        n, history = len(click), []
        self.net_.train()
        for epoch in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            total, batches = 0.0, range(0, n, self.batch_size)
            for start in _progress(batches, len(batches), f"ESMM epoch {epoch + 1}/{self.epochs}"):
                idx = order[start:start + self.batch_size]
                ctr_logit, cvr_logit = self.net_(cat[idx], num[idx])
                loss = esmm_loss(ctr_logit, cvr_logit, click[idx], purchase[idx], ips_weight=self.ips_weight,
                                 propensity_floor=self.propensity_floor)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / max(n, 1))
        self.net_.eval()
        return history

    def _predict_raw(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        cat, num = self._tensors(frame)
        pctr, pctcvr = [], []
        with torch.no_grad(), _threads(self.num_threads):
            for start in range(0, len(frame), 65536):
                p = ESMMNet.probabilities(*self.net_(cat[start:start + 65536], num[start:start + 65536]))
                pctr.append(p[0].double().numpy())
                pctcvr.append(p[2].double().numpy())
        if not pctr:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(pctr), np.concatenate(pctcvr)

    # ------------------------------------------------------------------ saved form
    def _save_model(self, path: Path) -> dict:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(path / "esmm.safetensors"))
        vocab = {"columns": self.cat_columns_, "values": [[_jsonable(v) for v in voc] for voc in self.vocabs_]}
        (path / "vocabularies.json").write_text(json.dumps(vocab))
        return {"config": asdict(self.config_), "numeric": self.num_columns_, "mean": self.mean_.tolist(),
                "std": self.std_.tolist(), "history": self.history_}

    def _load_model(self, path: Path, state: dict) -> None:
        from safetensors.torch import load_file

        try:
            cfg = current_param_names(state["config"])
            self.config_ = ESMMConfig(tuple(cfg["vocab_sizes"]), cfg["n_numeric"], cfg["dim"],
                                      tuple(cfg["hidden"]), cfg["dropout"])
            vocab = json.loads((path / "vocabularies.json").read_text())
            self.cat_columns_, self.vocabs_ = list(vocab["columns"]), vocab["values"]
            self.num_columns_ = list(state["numeric"])
            self.mean_ = np.asarray(state["mean"], dtype=np.float32)
            self.std_ = np.asarray(state["std"], dtype=np.float32)
            self.history_ = state.get("history", [])
            self.net_ = ESMMNet(self.config_)
            self.net_.load_state_dict(load_file(str(path / "esmm.safetensors")))
        except (KeyError, OSError, RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{path}: ESMM weights or config are missing, corrupt or mismatched ({exc}).") from exc
        self.net_.eval()


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else v
