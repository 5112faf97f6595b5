"""The layering contract (pyproject.toml [tool.importlinter], docs/ARCHITECTURE.md) holds, and would catch a back-edge."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_layers_hold():
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in out.stdout


def test_a_back_edge_breaks_the_contract(tmp_path):
    """A copy of the tree with one upward import (features -> pipeline): the same command must fail and name it."""
    for name in ("recsys", "training", "serving"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    vocab = tmp_path / "recsys" / "features" / "vocab.py"
    vocab.write_text(vocab.read_text() + "\n\ndef _back_edge():\n    from recsys.pipeline.train import run_training\n\n"
                     "    return run_training\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "recsys.features is not allowed to import recsys.pipeline" in out.stdout, out.stdout[-3000:]
    assert "recsys.features.vocab -> recsys.pipeline.train" in out.stdout
