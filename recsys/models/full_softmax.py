"""The full-softmax retrieval task: every item of the catalogue scored, with its gradient formed in forward."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from recsys.errors import ConfigError
from recsys.models.task_interface import TaskBatch, TaskNeeds, _check_temperature

__all__ = ["FullSoftmaxTask", "full_softmax_loss"]


class _FullSoftmax(torch.autograd.Function):
    """Multi-positive softmax over the whole catalogue; the gradient is formed in forward.

    Works on one [B, N] buffer in place (a few memory passes instead of autograd's dozen), which
    is what makes a full softmax over ~40k items affordable on a CPU.
    """

    @staticmethod
    def forward(ctx, user: torch.Tensor, items: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                exclude_other_positives: bool, bounded: bool, known: tuple[torch.Tensor, torch.Tensor] | None,
                weights: torch.Tensor | None = None):
        logits = user @ items.T  # user is pre-scaled by 1/temperature
        pos_logit = (user[rows] * items[cols]).sum(-1)
        shift = None
        if not bounded:
            shift = logits.max(dim=1, keepdim=True).values
            logits.sub_(shift)
        exp = logits.exp_()
        n_pos = torch.bincount(rows, minlength=user.shape[0]).to(user.dtype)
        if exclude_other_positives:
            exp[rows, cols] = 0.0
        if known is not None:  # the user's other known positives (e.g. the history) are never negatives
            exp[known[0], known[1]] = 0.0
        z = exp.sum(dim=1)
        log_z = z.log() if shift is None else z.log() + shift.squeeze(1)
        total = rows.numel() if weights is None else weights.sum()  # a weighted mean over positives
        if exclude_other_positives:
            # each positive against negatives only: softplus(logZ_neg - s_i)
            miss = torch.sigmoid(log_z[rows] - pos_logit)  # 1 - p(positive beats the negatives)
            if weights is None:
                loss = F.softplus(log_z[rows] - pos_logit).sum() / total
            else:
                loss = (weights * F.softplus(log_z[rows] - pos_logit)).sum() / total
                miss = miss * weights
            coef = torch.zeros_like(z).index_add_(0, rows, miss)
            grad = exp.mul_((coef / (z * total))[:, None])
            grad[rows, cols] = -miss / total
        else:
            if weights is None:
                loss = ((n_pos * log_z).sum() - pos_logit.sum()) / total
                step = torch.full_like(pos_logit, -1.0 / total)
            else:
                n_pos = torch.zeros_like(n_pos).index_add_(0, rows, weights)
                loss = ((n_pos * log_z).sum() - (weights * pos_logit).sum()) / total
                step = -weights / total
            grad = exp.mul_((n_pos / (z * total))[:, None])
            grad.index_put_((rows, cols), step, accumulate=True)
        ctx.save_for_backward(user, items, grad)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        user, items, grad = ctx.saved_tensors
        g_user = (grad @ items) * grad_out if ctx.needs_input_grad[0] else None
        g_items = (grad.T @ user) * grad_out if ctx.needs_input_grad[1] else None
        return g_user, g_items, None, None, None, None, None, None


def full_softmax_loss(user_emb: torch.Tensor, item_emb: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                      temperature: float, exclude_other_positives: bool = False, bounded: bool = False,
                      known: tuple[torch.Tensor, torch.Tensor] | None = None,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positives (rows[k], cols[k]) of -log softmax over all items; see :class:`FullSoftmaxTask`.

    ``known`` (rows, cols): further positives of the same users that are neither targets nor negatives.
    ``weights`` [len(rows)]: a weighted mean instead (``None``: every positive weighs 1).
    """
    return _FullSoftmax.apply(user_emb / temperature, item_emb, rows, cols, exclude_other_positives, bounded, known,
                              weights)


class FullSoftmaxTask:
    """Softmax over the *whole* catalogue for a batch of users, every training item a positive.

    No sampling, hence no sampling bias to correct (logQ is constant). With
    ``exclude_other_positives`` each positive competes with the user's non-interacted items only
    (the user's other positives are accidental hits and are removed). ``bounded`` states that
    embeddings are L2-normalised, so logits are at most 1/temperature and need no max shift.
    ``user_weight_power`` p weighs each positive by ``n_u ** -p`` (``n_u``: that user's positives in
    the batch): 0 counts every interaction once, 1 every user once (as the per-user metrics do).
    ``item_side_weight`` w adds ``w`` x the reverse softmax: each positive item picks its user among
    the batch's users (uniform in-batch negatives, so no logQ; the batch users who also hold that item
    are accidental hits and are removed), which spreads user vectors apart as the main term does items.
    ``item_prior`` [num_items]: a fixed per-item offset added to every score before the temperature
    (``softmax((u.i + prior_i) / T)``), e.g. ``b * log1p(training count)``, the same popularity prior the
    served scores get (:meth:`TwoTowerModel.with_item_prior`), so the vectors need not encode it.
    """

    needs: ClassVar[TaskNeeds] = TaskNeeds(catalogue=True)

    def __init__(self, *, temperature: float = 0.1, exclude_other_positives: bool = False,
                 bounded: bool = False, user_weight_power: float = 0.0, item_side_weight: float = 0.0,
                 item_prior: torch.Tensor | None = None) -> None:
        _check_temperature(temperature)
        if bounded and temperature < 0.02:
            raise ConfigError(f"bounded full softmax needs temperature >= 0.02 (exp overflow), got {temperature}")
        if not 0.0 <= user_weight_power <= 1.0:
            raise ConfigError(f"user_weight_power must lie in [0, 1], got {user_weight_power}")
        self.temperature = temperature
        self.exclude_other_positives = exclude_other_positives
        self.bounded = bounded
        self.user_weight_power = user_weight_power
        if item_side_weight < 0:
            raise ConfigError(f"item_side_weight must be >= 0, got {item_side_weight}")
        self.item_side_weight = item_side_weight
        self.item_prior = None
        if item_prior is not None:
            item_prior = torch.as_tensor(item_prior, dtype=torch.float32).reshape(-1)
            if not torch.isfinite(item_prior).all():
                raise ConfigError("item_prior must be finite (e.g. b * log1p(count), not log(count) of an unseen item)")
            self.item_prior = item_prior
            self._prior_bound = float(item_prior.abs().max()) if item_prior.numel() else 0.0

    def __call__(self, query: torch.Tensor, candidates: torch.Tensor, batch: TaskBatch | None = None) -> torch.Tensor:
        """Mean over the positives ``batch.rows``/``cols`` of -log softmax over ``candidates`` (the catalogue)."""
        user_emb, item_emb, rows, cols, known = query, candidates, batch.rows, batch.cols, batch.known
        weights = None
        if self.user_weight_power:
            n_pos = torch.bincount(rows, minlength=user_emb.shape[0]).to(user_emb.dtype)
            weights = n_pos.clamp_min(1.0).pow(-self.user_weight_power)[rows]
        user_in, item_in, bounded = user_emb, item_emb, self.bounded
        if self.item_prior is not None:  # one more coordinate: user 1, item its prior
            prior = self.item_prior.to(item_emb)
            if prior.numel() != item_emb.shape[0]:
                raise ConfigError(f"item_prior has {prior.numel()} offsets but the batch scores {item_emb.shape[0]} "
                                  f"items; build it from the data being fitted")
            user_in = torch.cat([user_emb, user_emb.new_ones(user_emb.shape[0], 1)], dim=1)
            item_in = torch.cat([item_emb, prior[:, None]], dim=1)
            bounded = bounded and (1.0 + self._prior_bound) / self.temperature < 50.0  # exp stays finite
        loss = full_softmax_loss(user_in, item_in, rows, cols, self.temperature,
                                 self.exclude_other_positives, bounded, known, weights)
        if self.item_side_weight:
            loss = loss + self.item_side_weight * self._item_side(user_emb, item_emb, rows, cols)
        return loss

    def _item_side(self, user_emb: torch.Tensor, item_emb: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor) -> torch.Tensor:
        """Mean over positives of -log softmax over the batch's users (other holders of the item masked)."""
        logits = item_emb[cols] @ user_emb.T / self.temperature  # [P, B]
        holds = torch.zeros(user_emb.shape[0], item_emb.shape[0], dtype=torch.bool, device=rows.device)
        holds[rows, cols] = True
        hit = holds[:, cols].T  # [P, B]: batch users who hold positive k's item
        hit[torch.arange(len(rows), device=rows.device), rows] = False  # the positive itself stays
        logits = logits.masked_fill(hit, float("-inf"))
        return (torch.logsumexp(logits, dim=1) - logits[torch.arange(len(rows), device=rows.device), rows]).mean()
