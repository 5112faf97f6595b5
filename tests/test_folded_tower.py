"""The NumPy user tower equals the torch forward, and serving falls back when it cannot fold."""

import numpy as np
import pytest
import torch

from recsys.models.folded_tower import FoldedUserTower
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel


def _model(**kw) -> TwoTowerModel:
    torch.manual_seed(0)
    cfg = dict(num_users=30, num_items=40, dim=8, use_user_id=True, user_features={"age": 4, "media_id": 3},
               history="mean", gate_init=0.3)
    cfg.update(kw)
    m = TwoTowerModel(TwoTowerConfig(**cfg))
    with torch.no_grad():  # a gate away from its initial constant, so each dimension blends differently
        if hasattr(m.user_tower, "gate"):
            m.user_tower.gate.copy_(torch.linspace(-2, 2, m.config.dim))
        if hasattr(m.user_tower, "history_proj"):
            m.user_tower.history_proj.weight.add_(0.1 * torch.randn_like(m.user_tower.history_proj.weight))
    return m.eval()


def _inputs(model: TwoTowerModel, lens=(3, 0, 1, 5)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    n = len(lens)
    feats = {"user_id": rng.integers(0, 30, n)}
    for k, size in (model.config.user_features or {}).items():
        feats[k] = rng.integers(0, size, n)
    feats["history"] = rng.integers(0, 40, int(sum(lens)))
    feats["history_offsets"] = np.r_[0, np.cumsum(lens)[:-1]].astype(np.int64)
    return {k: np.asarray(v, np.int64) for k, v in feats.items()}


def _torch(model: TwoTowerModel, feats: dict) -> np.ndarray:
    with torch.inference_mode():
        return model.user_embeddings({k: torch.from_numpy(v) for k, v in feats.items()}).numpy()


@pytest.mark.parametrize("kw", [
    {},  # id + profile/context + mean history, gated
    {"use_user_id": False, "user_features": {}},  # history only: no gate
    {"history": "none"},  # static only: no gate
    {"item_bias": True},  # one extra coordinate, 1 on the user side
    {"normalize": False},
    {"share_history_embeddings": False},  # a separate history table
])
def test_folded_tower_equals_torch(kw):
    model = _model(**kw)
    feats = _inputs(model)
    want = _torch(model, feats)
    got = FoldedUserTower(model)(feats)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    # one user at a time (the serving path) gives the rows of the batch
    for i, (start, end) in enumerate(zip(feats["history_offsets"], [*feats["history_offsets"][1:],
                                                                    len(feats["history"])], strict=True)):
        one = {k: v[i:i + 1] for k, v in feats.items() if k not in ("history", "history_offsets")}
        one.update(history=feats["history"][start:end], history_offsets=np.zeros(1, np.int64))
        np.testing.assert_allclose(FoldedUserTower(model)(one), want[i:i + 1], rtol=0, atol=2e-6)


def test_empty_history_pools_to_zero():
    model = _model(use_user_id=False, user_features={}, normalize=False)
    feats = _inputs(model, lens=(0, 2))
    out = FoldedUserTower(model)(feats)
    assert np.all(out[0] == 0) and np.abs(out[1]).sum() > 0


def test_unfoldable_towers_are_refused():
    assert not FoldedUserTower.supports(_model(history="mean+attention"))
    assert "attention" in FoldedUserTower.unsupported(_model(history="attention"))
    training = _model().train()
    assert "training mode" in FoldedUserTower.unsupported(training)
    with pytest.raises(ValueError, match="cannot fold"):
        FoldedUserTower(training)
    feats = _inputs(_model())
    feats["history_weights"] = np.ones(len(feats["history"]), np.float32)
    with pytest.raises(ValueError, match="weighted histories"):
        FoldedUserTower(_model())(feats)


def test_folded_tower_reads_live_weights():
    model = _model()
    folded = FoldedUserTower(model)
    feats = _inputs(model)
    before = folded(feats)
    with torch.no_grad():
        model.user_tower.id_embedding.weight.mul_(2.0)
    after = folded(feats)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _torch(model, feats), rtol=0, atol=2e-6)


def test_serving_uses_the_folded_tower_and_gives_the_torch_feeds(monkeypatch):
    from dataclasses import replace

    import pandas as pd

    from recsys.feed.engine import Request, run_batch
    from tests.test_recommender import fitted

    state = replace(fitted()._state, filters_cache={})
    assert isinstance(state.folded, FoldedUserTower)  # built with the state, not on the first request
    assert state.folded_tower() is state.folded

    def requests():
        return [Request(0, "guide-0", 12), Request(42, None, 20), Request(299, "kol-2", 15, context={"segment": "vip"}),
                Request("new", "app-1", 5)]

    folded = run_batch(state, requests())
    torch_state = replace(state, filters_cache={}, folded=False)  # the torch forward
    assert torch_state.folded_tower() is None
    pd.testing.assert_frame_equal(run_batch(torch_state, requests()), folded, check_exact=False, rtol=1e-5)
    # a fold that disagrees with the torch forward is refused with a warning, and torch serves
    monkeypatch.setattr(FoldedUserTower, "__call__", lambda self, feats: _torch(self.model, feats) + 1e-3)
    broken = replace(state, filters_cache={}, folded=None)
    with pytest.warns(RuntimeWarning, match="differs from the torch forward"):
        assert broken.folded_tower() is None
    pd.testing.assert_frame_equal(run_batch(broken, requests()), folded, check_exact=False, rtol=1e-5)
    # a check that cannot even run (here: the inputs fail) warns and leaves serving to torch
    monkeypatch.setattr(FoldedUserTower, "__call__", lambda self, feats: 1 / 0)
    failing = replace(state, filters_cache={}, folded=None)
    with pytest.warns(RuntimeWarning, match="could not be checked .ZeroDivisionError"):
        assert failing.folded_tower() is None


def test_the_fold_carries_over_updates_that_keep_the_model():

    from recsys.feed.updates import set_in_stock
    from tests.test_recommender import fitted

    state = fitted()._state
    fold = state.folded_tower()
    assert fold is not None
    updated = set_in_stock(state, (int(state.catalogue.ids[0]),), False)
    assert updated.folded is fold  # a stock update: no second check against torch
    assert state.evolve(model=state.model).folded is None  # a new model is folded and checked again

