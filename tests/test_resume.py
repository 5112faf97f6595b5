"""Checkpoints survive kills: one atomic unit per save, `recsys train` resumes after a real SIGKILL, and a
killed run is continued (same MLflow run id) or marked FAILED, never left RUNNING.

The subprocess tests run `recsys train retrieval` on a tiny synthetic world (3 epochs, one checkpoint per
epoch). ``RECSYS_CHECKPOINT_TEST_PAUSE`` slows each step of a checkpoint save and
``RECSYS_CHECKPOINT_TEST_TRACE`` records the steps, so the test can SIGKILL inside the write window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recsys.errors import ArtifactError
from recsys.fit import checkpoint as ck

REPO = Path(__file__).resolve().parents[1]
# the same computation resumed on the same machine: bit-equal in practice; the tolerance only absorbs a BLAS
# reduction order that could differ between processes, and is far below what a mixed checkpoint gives (~0.1)
ATOL = 1e-6


def _tiny(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt


def _save(root: Path, model, opt, step: int) -> None:
    ck.save_checkpoint(root, model=model, optimizer=opt, best_state=None, trainer_state={"epoch": step, "step": 0})


class _Killed(BaseException):
    pass


@pytest.mark.parametrize("kill_after", ["model.safetensors", "optimizer.safetensors", "rng.safetensors",
                                        "state.json", "MANIFEST.json", "renamed", "LATEST"])
def test_a_save_interrupted_at_any_step_loads_one_whole_checkpoint(tmp_path, monkeypatch, kill_after):
    first, opt1 = _tiny(0)
    _save(tmp_path, first, opt1, step=1)
    second, opt2 = _tiny(1)

    def die(name):
        if name.endswith(" " + kill_after):
            raise _Killed

    monkeypatch.setattr(ck, "_test_step", die)
    with pytest.raises(_Killed):
        _save(tmp_path, second, opt2, step=2)
    monkeypatch.undo()
    done = kill_after in ("renamed", "LATEST")  # the rename is the commit point
    expect = second if done else first
    model, opt = _tiny(5)
    state, _ = ck.load_checkpoint(tmp_path, model=model, optimizer=opt)
    assert state["epoch"] == (2 if done else 1)
    # exact on purpose: no arithmetic between them, the loaded tensors are the saved ones read back from safetensors
    # (a bit-exact format); a mixed checkpoint differs by whole steps of training (~0.1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expect.state_dict().values(), strict=True))
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())  # the interrupted write is gone


def test_a_corrupted_checkpoint_is_refused_not_loaded(tmp_path):
    model, opt = _tiny(0)
    _save(tmp_path, model, opt, step=1)
    weights = next(tmp_path.glob("ckpt-*")) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert ck.latest_checkpoint(tmp_path) is None
    with pytest.raises(ArtifactError, match="no complete checkpoint"):
        ck.load_checkpoint(tmp_path, model=model, optimizer=opt)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite MLflow store for the module (creating one costs seconds); each test has its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


def test_runs_left_running_by_a_dead_process_are_marked_failed(tmp_path, store):
    import mlflow

    from recsys.fit.settings import TrackingConfig
    from recsys.pipeline.resume import process_tag, settle_stale_runs

    cfg = TrackingConfig(tracking_uri=store, experiment="e")
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = process_tag().rsplit(":", 2)[0]
    ids = {}
    for name, proc in {"dead": f"{host}:{dead.pid}:", "alive": process_tag(), "other": "elsewhere:1:1"}.items():
        ids[name] = client.create_run(exp, tags={"recsys.config": "tiny", "recsys.process": proc}).info.run_id
    assert settle_stale_runs(cfg, "tiny") == [ids["dead"]]
    status = {n: client.get_run(i).info.status for n, i in ids.items()}
    assert status == {"dead": "FAILED", "alive": "RUNNING", "other": "RUNNING"}


# ----- real SIGKILLs of `recsys train` -------------------------------------------------------------------
def _config(root: Path, store: str | None) -> Path:
    cfg = root / "tiny.yaml"
    cfg.write_text(f"name: tiny\nseed: 0\ndata:\n  n_events: 4000\nfeatures:\n  title_buckets: 64\n"
                   f"retrieval:\n  epochs: 3\n  dim: 8\noutput:\n  dir: {root / 'out'}\n"
                   f"tracking:\n  enabled: {store is not None}\n  experiment: {root.name}\n"
                   f"  tracking_uri: {store}\n  artifact_location: {root / 'art'}\n")
    return cfg


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RECSYS_CHECKPOINT_TEST"))}
    return env | {"CI": "true", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"} | extra


def _train(root: Path, store: str | None, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "recsys", "train", "retrieval", "-c", str(_config(root, store)), *args],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _kill_at(root: Path, store: str, step: str) -> None:
    """Start `recsys train`, SIGKILL it once the checkpoint save has finished ``step`` (a trace line)."""
    trace = root / "trace.txt"
    proc = subprocess.Popen([sys.executable, "-m", "recsys", "train", "retrieval", "-c", str(_config(root, store))],
                            env=_env(RECSYS_CHECKPOINT_TEST_PAUSE="0.3", RECSYS_CHECKPOINT_TEST_TRACE=str(trace)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (trace.exists() and step in trace.read_text().splitlines()):
        assert proc.poll() is None and time.monotonic() < deadline, f"training ended before checkpoint step {step!r}"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _weights(root: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(root / "out" / "tiny" / "retrieval" / "model" / "model.safetensors"))


def _runs(root: Path, store: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    return client.search_runs([client.get_experiment_by_name(root.name).experiment_id])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    root = tmp_path_factory.mktemp("ref")
    _train(root, None)  # tracking off: the weights do not depend on it
    return _weights(root)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=ATOL) for k in a)


@pytest.mark.parametrize("kill_at, resumed_epoch", [
    ("ckpt-00000001 LATEST", 1),                  # after the first checkpoint is complete
    ("ckpt-00000002 optimizer.safetensors", 1),  # inside the second checkpoint's write window
])
def test_sigkilled_train_resumes_to_the_uninterrupted_weights_in_the_same_run(tmp_path, store, uninterrupted,
                                                                             kill_at, resumed_epoch):
    _kill_at(tmp_path, store, kill_at)
    [killed] = _runs(tmp_path, store)
    assert killed.info.status == "RUNNING"  # SIGKILL: nothing could end it
    ckpts = tmp_path / "out" / "tiny" / "checkpoints"
    assert any(p.name.startswith(".tmp-") for p in ckpts.rglob("*")) == kill_at.endswith("safetensors")
    out = _train(tmp_path, store)
    assert f"at epoch {resumed_epoch}, step 0" in out and f"continuing MLflow run {killed.info.run_id}" in out
    assert _same(_weights(tmp_path), uninterrupted)
    [run] = _runs(tmp_path, store)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["recsys.resumed_from"] == f"epoch {resumed_epoch} step 0"
    assert not ckpts.exists()  # a finished run leaves no checkpoint behind


def test_resume_needs_a_checkpoint_and_one_process_trains_a_config_at_a_time(tmp_path):
    from recsys.errors import ConfigError
    from recsys.fit.settings import load_config
    from recsys.fit.tables import data_digest, load_tables
    from recsys.pipeline.resume import ResumePoint
    from recsys.pipeline.train import run_training

    cfg = load_config(_config(tmp_path, None))
    with pytest.raises(ArtifactError, match="--resume: no checkpoint to resume"):
        run_training(cfg, stage="retrieval", log=None, resume=True)
    with pytest.raises(ConfigError, match="keeps no checkpoint"):
        run_training(cfg, stage="index", log=None, resume=True)
    digest = data_digest(load_tables(cfg.data, seed=cfg.seed))
    with ResumePoint(cfg, "retrieval", digest, mode=None):  # as if another process were training this config
        with pytest.raises(ConfigError, match="another recsys train is training this config"):
            run_training(cfg, stage="retrieval", log=None)


def test_a_resumed_run_continues_its_mlflow_run_only_with_the_same_params(tmp_path, store):
    import mlflow

    from recsys.fit.settings import load_config
    from recsys.pipeline.resume import ResumePoint

    cfg = load_config(_config(tmp_path, store))
    client = mlflow.MlflowClient(tracking_uri=store)
    exp = client.create_experiment(tmp_path.name, artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(exp).info.run_id
    client.log_param(run_id, "ranker.max_iter", "60")
    with ResumePoint(cfg, "retrieval", "sha256:0", mode=None) as point:
        assert point.run_to_continue(cfg.tracking, {"ranker.max_iter": "60"}) is None  # no checkpoint yet
        point.record_run(run_id)
        _save(point.dir / "fit", *_tiny(0), step=1)
        point.resuming = True
        assert point.run_to_continue(cfg.tracking, {"ranker.max_iter": "60"}) == run_id
        # MLflow refuses to change a logged param: another ranker setting trains on in a new run
        assert point.run_to_continue(cfg.tracking, {"ranker.max_iter": "20"}) is None
