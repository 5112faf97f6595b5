"""Data-parallel two-tower training: two gloo processes under torchrun match one process.

The full-softmax task forms its gradient inside a custom autograd function; the run below checks
that DDP still all-reduces it (weights equal on both ranks after every step) and that the global
batch split over two ranks gives the one-process weights. Run 1 is stopped by a callback on rank 0
after epoch 2 (rank 1 must stop too, or the job hangs); run 2 resumes from rank 0's checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.errors import ConfigError
from recsys.fit.distributed import DataParallel, WorldInfo, rank_share, world_from_env

WORKER = Path(__file__).with_name("ddp_worker.py")
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "TORCHELASTIC_RUN_ID", "GROUP_RANK")


def _launch(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV} | {"OMP_NUM_THREADS": "1", "CI": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _torchrun(out: Path, *args: str) -> list[dict]:
    proc = _launch(out, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


needs_gloo = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no gloo backend")


@pytest.fixture
def outside_torchrun(monkeypatch):
    """This process is the one-process reference: no torchrun variables, one thread like each rank."""
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    torch.set_num_threads(1)


def _assert_same_weights(saved: Path, model) -> None:
    from recsys.models.two_tower import TwoTowerModel

    two = TwoTowerModel.load(saved)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(two.state_dict()[name].numpy(), value.numpy(), atol=1e-5, err_msg=name)


@needs_gloo
def test_two_processes_match_one_process_with_stop_and_resume(tmp_path, outside_torchrun):
    from tests.ddp_worker import train

    ckpt = tmp_path / "ckpt"
    first = _torchrun(tmp_path / "first", "--epochs", "4", "--stop-after", "2", "--ckpt", str(ckpt))
    second = _torchrun(tmp_path / "second", "--epochs", "4", "--ckpt", str(ckpt))

    for run, last_epoch in ((first, 2), (second, 4)):
        r0, r1 = run
        assert len(r0["step_max_diff"]) > 0 and max(r0["step_max_diff"]) == 0.0  # identical after every step
        assert r0["epochs_run"] == r1["epochs_run"] == last_epoch  # rank 1 followed rank 0's stop
        assert r0["history"] == r1["history"]  # same losses and validation metrics on both ranks
        assert r0["callback_epochs"][-1] == last_epoch and r1["callback_epochs"] == []  # hooks on rank 0 only
        assert r0["train_end_calls"] == 1 and r1["train_end_calls"] == 0
        assert r0["group_left"] and r1["group_left"]
    from safetensors.torch import load_file

    from recsys.fit.checkpoint import latest_checkpoint

    assert "torch.rank1" in load_file(str(latest_checkpoint(ckpt) / "rng.safetensors"))  # rank 1's RNG saved for resume

    model, summary, _ = train(epochs=4)  # one process, same global batch, never interrupted
    _assert_same_weights(tmp_path / "second" / "model", model)
    history = second[0]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for mine, ref in zip(history, summary["history"], strict=True):
        # the weights agree to ~1e-5, not bit for bit (all-reduce sums the gradients in another order), so a
        # near-tie between the 5th and 6th item may flip one of the 49 users: at most 1/49 apart
        assert mine["recall@5"] == pytest.approx(ref["recall@5"], abs=1 / 49 + 1e-9)
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    # exact: the best epoch's recall leads the next best by 3/49 (.918 vs .857), more than a flip or two can move
    assert second[0]["best_epoch"] == summary["best_epoch"]
    assert summary["best_metrics"]["recall@5"] > 0.5  # the reference learns (random: 5 of 26 unseen ~ 0.19)


@needs_gloo
def test_sampled_softmax_in_batch_negatives_span_the_global_batch(tmp_path, outside_torchrun):
    # each rank's rows are scored against the positives of *both* ranks' rows (gathered, with gradients
    # flowing back to their owners), so two ranks give one process's weights, including the last global
    # batch of one row, where rank 1 has none but must still join the gathers
    from tests.ddp_worker import train

    r0, r1 = _torchrun(tmp_path / "run", "--epochs", "2", "--task", "sampled")
    assert len(r0["step_max_diff"]) == 2 * 14 and max(r0["step_max_diff"]) == 0.0  # 196 pairs / 15: 14 steps
    assert r0["history"] == r1["history"]
    model, summary, _ = train(epochs=2, task="sampled")
    _assert_same_weights(tmp_path / "run" / "model", model)
    for mine, ref in zip(r0["history"], summary["history"], strict=True):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    # mixed and impression negatives: each rank draws its own uniform / shown items (so no exact parity)
    # beside the gathered batch; the ranks must agree, and rank 1 must get through its empty last step
    for task in ("mixed", "impressions"):
        r0, r1 = _torchrun(tmp_path / task, "--epochs", "2", "--task", task)
        assert len(r0["step_max_diff"]) == 2 * 14 and max(r0["step_max_diff"]) == 0.0, task
        assert r0["history"] == r1["history"] and all(np.isfinite(h["loss"]) for h in r0["history"]), task
        assert r0["history"][1]["loss"] < r0["history"][0]["loss"], task


@needs_gloo
def test_an_error_on_rank_0_ends_the_job_instead_of_hanging(tmp_path):
    proc = _launch(tmp_path, "--epochs", "3", "--fail-at", "2")  # rank 1 waits for rank 0's metrics meanwhile
    assert proc.returncode != 0 and "validation failed on purpose" in proc.stderr
    assert not (tmp_path / "rank1.json").exists()


def test_rank_shares_partition_each_global_batch():
    batch = np.arange(17)
    shares = [rank_share(batch, r, 3) for r in range(3)]
    assert sorted(np.concatenate(shares).tolist()) == batch.tolist()
    assert [len(s) for s in shares] == [6, 6, 5]


def test_environment_is_read_and_checked(monkeypatch):
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    assert world_from_env() == WorldInfo(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2, WORLD_SIZE=2"):
        world_from_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match="RANK='one' is not an integer"):
        world_from_env()


def test_one_process_is_a_no_op(monkeypatch):
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    dp = DataParallel.from_env(torch.device("cpu"))
    assert dp.main and dp.size == 1 and not dp.owns_group and not torch.distributed.is_initialized()
    assert dp.all_sum([1.0, 2.0]) == [1.0, 2.0] and dp.from_main({"a": 1}) == {"a": 1}
    dp.wrap(torch.nn.Linear(2, 1), lambda data, batch: torch.tensor(float(len(batch))), lambda data, batch: 1)
    loss, value = dp.step_loss(None, np.arange(3))
    assert float(loss) == value == 3.0


@pytest.mark.slow
@needs_gloo
def test_recsys_train_under_torchrun_tracks_and_saves_once(tmp_path):
    """Every stage under torchrun: one MLflow run, one registered model, one summary printed (rank 0 only)."""
    from tests.test_tracking import SMALL

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"name: tiny\ndata:\n  n_events: 8000\noutput:\n  dir: {tmp_path / 'out'}\n"
                   f"tracking:\n  tracking_uri: sqlite:///{tmp_path / 'mlflow.db'}\n")
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV and k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "recsys",
           "train", "-c", str(cfg), *[x for s in SMALL for x in ("--set", s)], "--set", "retrieval.validation_fraction=0.1"]
    proc = subprocess.run(cmd, env=env | {"OMP_NUM_THREADS": "1", "CI": "true"}, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("retrieval.recall_at_20:") == 1 and proc.stdout.count("== done (all)") == 1
    assert proc.stdout.count("   epoch loss") == 2  # the per-epoch console hook ran on rank 0 only
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].data.metrics["retrieval.recall_at_20"] > 0
    assert len(client.get_metric_history(runs[0].info.run_id, "retrieval.train_loss")) == 2
    assert client.get_model_version_by_alias("guess-you-like", "champion").version in (1, "1")
    assert (tmp_path / "out" / "tiny" / "bundle").is_dir()
