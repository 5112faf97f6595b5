"""Two-tower model: save/load round trip, ids-only and feature towers, history pooling, config errors."""

import json

import pytest
import torch

from recsys.errors import ArtifactError, ConfigError
from recsys.models.towers import last_n_padded
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel


def _rich_config(**kw) -> TwoTowerConfig:
    return TwoTowerConfig(num_users=7, num_items=9, dim=8, user_features={"media_id": 3, "gender": 3},
                          item_features={"category": 4, "price_bucket": 5}, title_buckets=50,
                          history="mean+attention", history_len=3, item_id_dropout=0.2, item_oov_index=8, **kw)


def _inputs():
    items = {"item_id": torch.arange(9), "category": torch.arange(9) % 4, "price_bucket": torch.arange(9) % 5,
             "title_tokens": torch.randint(0, 50, (9, 4))}
    users = {"user_id": torch.tensor([0, 3, 6]), "media_id": torch.tensor([0, 1, 2]), "gender": torch.tensor([1, 2, 0]),
             "history": torch.tensor([1, 2, 3, 4, 5, 6, 7]), "history_offsets": torch.tensor([0, 5, 5])}
    return users, items


def test_save_load_round_trip_gives_identical_embeddings(tmp_path):
    torch.manual_seed(0)
    model = TwoTowerModel(_rich_config()).eval()
    users, items = _inputs()
    with torch.no_grad():
        u0, i0 = model.user_embeddings(users), model.item_embeddings(items)
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["config"]["history"] == "mean+attention" and meta["format_version"] == 1
    loaded = TwoTowerModel.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded.user_embeddings(users), u0)
        assert torch.equal(loaded.item_embeddings(items), i0)
    assert loaded.config == model.config


def test_embeddings_are_unit_norm_and_user_without_history_works():
    torch.manual_seed(0)
    model = TwoTowerModel(_rich_config()).eval()
    users, items = _inputs()
    with torch.no_grad():
        u, i = model.user_embeddings(users), model.item_embeddings(items)
    assert torch.allclose(u.norm(dim=1), torch.ones(3)) and torch.allclose(i.norm(dim=1), torch.ones(9))
    assert torch.isfinite(u[1]).all()  # user 1 has an empty history slice


def test_ids_only_model_without_history():
    torch.manual_seed(0)
    model = TwoTowerModel(TwoTowerConfig(num_users=4, num_items=5, dim=4, history="none", normalize=False))
    u = model.user_embeddings({"user_id": torch.tensor([0, 3])})
    i = model.item_embeddings({"item_id": torch.arange(5)})
    assert u.shape == (2, 4) and i.shape == (5, 4)
    assert torch.equal(u, model.user_tower.id_embedding.weight[[0, 3]])


def test_history_only_user_tower_is_mean_of_item_embeddings_at_init():
    torch.manual_seed(0)
    model = TwoTowerModel(TwoTowerConfig(num_users=2, num_items=4, dim=4, history="mean", use_user_id=False,
                                         normalize=False))
    u = model.user_embeddings({"user_id": torch.tensor([0]), "history": torch.tensor([1, 3]),
                               "history_offsets": torch.tensor([0])})
    table = model.item_tower.id_embedding.weight
    assert torch.allclose(u[0], (table[1] + table[3]) / 2)  # projection starts as the identity


def test_last_n_padded_takes_the_newest_items():
    flat = torch.tensor([10, 11, 12, 13, 20, 30, 31])
    idx, mask = last_n_padded(flat, torch.tensor([0, 4, 5, 7]), 3)
    assert idx.tolist() == [[11, 12, 13], [0, 0, 20], [0, 30, 31], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [False, False, True], [False, True, True], [False] * 3]


def test_config_and_artifact_errors(tmp_path):
    with pytest.raises(ConfigError, match="history"):
        TwoTowerConfig(num_users=1, num_items=1, history="max")
    with pytest.raises(ConfigError, match="unknown two-tower config keys"):
        TwoTowerConfig.from_dict({"num_users": 1, "num_items": 1, "dimm": 3})
    with pytest.raises(ArtifactError, match="config.json"):
        TwoTowerModel.load(tmp_path)
    TwoTowerModel(TwoTowerConfig(num_users=2, num_items=2, dim=2)).save(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps({"kind": "two_tower", "format_version": 1, "config": {
        "num_users": 3, "num_items": 2, "dim": 2}}))
    with pytest.raises(ArtifactError, match="does not match"):
        TwoTowerModel.load(tmp_path / "a")


def test_item_bias_is_an_extra_coordinate_scored_by_a_constant_user_one():
    torch.manual_seed(0)
    model = TwoTowerModel(TwoTowerConfig(num_users=3, num_items=4, dim=4, history="none", item_bias=True))
    with torch.no_grad():
        model.item_bias.weight[:, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    u = model.user_embeddings({"user_id": torch.tensor([0])})
    i = model.item_embeddings({"item_id": torch.arange(4)})
    assert u.shape == (1, 5) and i.shape == (4, 5)
    cos = u[0, :4] @ i[:, :4].T
    assert torch.allclose(u[0] @ i.T, cos + torch.tensor([0.0, 1.0, 2.0, 3.0]))


def test_item_prior_adds_a_fixed_offset_and_survives_save_load(tmp_path):
    torch.manual_seed(0)
    model = TwoTowerModel(_rich_config()).eval()
    users, items = _inputs()
    prior = torch.linspace(0.0, 0.8, 9)
    with_prior = model.with_item_prior(prior)
    with torch.no_grad():
        base = model.user_embeddings(users) @ model.item_embeddings(items).T
        scored = with_prior.user_embeddings(users) @ with_prior.item_embeddings(items).T
        assert torch.allclose(scored, base + prior[None, :], atol=1e-6)
        assert not model.config.item_bias  # the original is untouched
        with_prior.save(tmp_path / "p")
        loaded = TwoTowerModel.load(tmp_path / "p")
        assert torch.equal(loaded.item_embeddings(items), with_prior.item_embeddings(items))
    with pytest.raises(ConfigError, match="one offset per item"):
        model.with_item_prior(torch.zeros(3))


def test_output_dropout_acts_in_training_only_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = TwoTowerModel(_rich_config(user_dropout=0.5, item_dropout=0.5))
    users, items = _inputs()
    model.train()
    with torch.no_grad():
        u1, u2 = model.user_embeddings(users), model.user_embeddings(users)
        i1, i2 = model.item_embeddings(items), model.item_embeddings(items)
    assert not torch.equal(u1, u2) and not torch.equal(i1, i2)  # a fresh mask each call
    # p = 0.5 on 8 coordinates: some are zeroed, the vector is still unit length
    assert (u1 == 0).any() and torch.allclose(u1.norm(dim=1), torch.ones(3))
    model.eval()
    with torch.no_grad():
        e1, e2 = model.user_embeddings(users), model.user_embeddings(users)
        f1, f2 = model.item_embeddings(items), model.item_embeddings(items)
    assert torch.equal(e1, e2) and torch.equal(f1, f2)
    plain = TwoTowerModel(_rich_config()).eval()
    plain.load_state_dict(model.state_dict())  # no parameters of its own: eval output is the undropped model's
    with torch.no_grad():
        assert torch.equal(plain.user_embeddings(users), e1)
    model.save(tmp_path / "m")
    assert TwoTowerModel.load(tmp_path / "m").config.user_dropout == 0.5
    with pytest.raises(ConfigError, match="user_dropout"):
        _rich_config(user_dropout=1.0)
