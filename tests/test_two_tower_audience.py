"""Item-side audience pooling: known-answer pooling, save/load, determinism, cold items, config errors."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import ConfigError
from recsys.fit.trainer import RetrievalData, Trainer, TrainerSettings, encode_all
from recsys.models.tasks import FullSoftmaxTask
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel

# users x items: item 0 <- users 0, 1, 2; item 2 <- users 0, 3; items 1, 3, 4 have no audience
POSITIVES = sp.csr_matrix((np.ones(5, np.float32), ([0, 1, 2, 0, 3], [0, 0, 0, 2, 2])), shape=(4, 5))


def _model(seed=0, **kw) -> TwoTowerModel:
    torch.manual_seed(seed)
    cfg = dict(num_users=4, num_items=6, dim=4, item_audience="mean", normalize=False, history="none")
    return TwoTowerModel(TwoTowerConfig(**{**cfg, **kw})).eval()


def test_pooled_audience_is_the_mean_of_its_users_embeddings():
    model = _model().set_item_audience(POSITIVES)
    users, items = model.user_tower.id_embedding.weight, model.item_tower.id_embedding.weight
    with torch.no_grad():
        out = model.item_embeddings({"item_id": torch.arange(6)})
        pooled, sizes = model.audience.pooled(torch.arange(6), users)
    # gate starts at 0.5 and the projection at the identity: item = (id + mean of audience) / 2
    assert torch.allclose(pooled[0], (users[0] + users[1] + users[2]) / 3)
    assert torch.allclose(out[0], 0.5 * items[0] + 0.5 * (users[0] + users[1] + users[2]) / 3)
    assert torch.allclose(out[2], 0.5 * items[2] + 0.5 * (users[0] + users[3]) / 2)
    assert sizes.tolist() == [3, 0, 2, 0, 0, 0]
    # no audience (item 1, and row 5 beyond the graph's columns, e.g. out-of-vocabulary): the id vector alone
    assert torch.equal(out[1], items[1]) and torch.equal(out[5], items[5])
    with torch.no_grad():  # a subset in any order scores the same as the whole catalogue
        assert torch.allclose(model.item_embeddings({"item_id": torch.tensor([2, 5, 0])}), out[[2, 5, 0]])


def test_degree_pooling_is_the_lightgcn_normalised_sum():
    model = _model(item_audience="degree").set_item_audience(POSITIVES)
    users = model.user_tower.id_embedding.weight
    with torch.no_grad():
        pooled, _ = model.audience.pooled(torch.arange(6), users)
    # deg(user 0) = 2, users 1-3 have 1; deg(item 0) = 3, deg(item 2) = 2
    want0 = users[0] / np.sqrt(2 * 3) + (users[1] + users[2]) / np.sqrt(3)
    want2 = users[0] / np.sqrt(2 * 2) + users[3] / np.sqrt(2)
    assert torch.allclose(pooled[0], want0) and torch.allclose(pooled[2], want2)
    model.set_item_audience(POSITIVES[:, :1])  # a new graph: the user degrees are counted again
    with torch.no_grad():
        pooled, _ = model.audience.pooled(torch.arange(6), users)
    assert torch.allclose(pooled[0], (users[0] + users[1] + users[2]) / np.sqrt(3))  # deg(user 0) is now 1


def test_history_audience_is_a_second_hop():
    model = _model(history="mean", history_audience=True, gate_init=0.5).set_item_audience(POSITIVES)
    users, items = model.user_tower.id_embedding.weight, model.item_tower.id_embedding.weight
    with torch.no_grad():
        u = model.user_embeddings({"user_id": torch.tensor([1]), "history": torch.tensor([0, 1]),
                                   "history_offsets": torch.tensor([0])})
    item0 = 0.5 * items[0] + 0.5 * (users[0] + users[1] + users[2]) / 3  # item 0 blended with its audience
    hist = (item0 + items[1]) / 2  # item 1 has no audience: its id vector
    assert torch.allclose(u[0], 0.5 * users[1] + 0.5 * hist, atol=1e-6)
    with pytest.raises(ConfigError, match="history_audience"):
        TwoTowerConfig(num_users=2, num_items=2, history_audience=True)


def test_own_audience_table_when_not_shared():
    model = _model(use_user_id=False, history="mean", share_audience_embeddings=False).set_item_audience(POSITIVES)
    table = model.audience.table.weight
    with torch.no_grad():
        pooled, _ = model.audience.pooled(torch.tensor([2]))
    assert torch.allclose(pooled[0], (table[0] + table[3]) / 2)


def test_save_load_round_trip_keeps_the_audience_and_identical_embeddings(tmp_path):
    model = _model(normalize=True).set_item_audience(POSITIVES)
    with torch.no_grad():
        before = model.item_embeddings({"item_id": torch.arange(6)})
    model.save(tmp_path / "m")
    loaded = TwoTowerModel.load(tmp_path / "m")
    assert torch.equal(loaded.audience.indices, model.audience.indices)
    with torch.no_grad():
        assert torch.equal(loaded.item_embeddings({"item_id": torch.arange(6)}), before)
        prior = loaded.with_item_prior(torch.zeros(6))  # the prior copy keeps the audience too
        assert torch.allclose(prior.item_embeddings({"item_id": torch.arange(6)})[:, :4], before)


def test_bad_graph_and_config_are_clear_errors():
    with pytest.raises(ConfigError, match="use_user_id"):
        TwoTowerConfig(num_users=2, num_items=2, item_audience="mean", use_user_id=False)
    with pytest.raises(ConfigError, match="item_audience"):
        TwoTowerConfig(num_users=2, num_items=2, item_audience="max")
    with pytest.raises(ConfigError, match="item columns"):
        _model(num_items=3).set_item_audience(POSITIVES)


def _fit(seed=0) -> TwoTowerModel:
    rng = np.random.default_rng(0)
    dense = rng.random((12, 9)) < 0.35
    train = sp.csr_matrix(dense.astype(np.float32))
    torch.manual_seed(seed)
    model = TwoTowerModel(TwoTowerConfig(num_users=12, num_items=9, dim=8, item_audience="mean"))
    Trainer(model, FullSoftmaxTask(temperature=0.2, exclude_other_positives=True),
            TrainerSettings(epochs=3, batch_size=4, lr=0.05, seed=seed), progress=False).fit(RetrievalData(train))
    return model, train


def test_trainer_sets_the_audience_and_training_is_deterministic():
    a, train = _fit()
    b, _ = _fit()
    assert a.audience.indices.numel() == train.nnz  # the audience is the data being fitted
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    users, items = encode_all(a, RetrievalData(train))
    assert np.isfinite(users).all() and np.isfinite(items).all()


def test_recsys_train_serves_a_model_whose_audience_is_all_training_data(tmp_path):
    import json

    from recsys.fit.settings import config_from_dict
    from recsys.pipeline.train import run_training
    from tests.test_two_tower_bench import _write_lightgcn

    bench = tmp_path / "bench.yaml"
    bench.write_text("dim: 8\nepochs: 2\nbatch_size: 64\nuse_user_id: true\nitem_audience: mean\n"
                     "validation_users: 1.0\n")
    cfg = config_from_dict({"name": "aud", "data": {"source": "lightgcn", "path": str(_write_lightgcn(tmp_path / "b"))},
                            "split": {"method": "published"}, "retrieval": {"bench_config": str(bench)},
                            "index": {"kind": "exact"}, "ranker": {"kind": "none"},
                            "output": {"dir": str(tmp_path / "runs")}})
    result = run_training(cfg, tracking=False, progress=False, log=None)
    saved = TwoTowerModel.load(result.bundle_dir / "model")
    assert json.loads((result.bundle_dir / "model" / "config.json").read_text())["config"]["item_audience"] == "mean"
    # selection ran on the fit split, but the served model's audience is every training interaction
    assert saved.audience.indices.numel() == 4 * 12 * 6
    assert len(result.recommender.recommend(0, k=3)) == 3
