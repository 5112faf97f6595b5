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


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative), sorted."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    group.append(m)
                    if m == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return sorted(found)


def test_no_module_imports_itself_through_others():
    """No import cycle between modules, inside a package too (the layers contract sees only cycles across layers).
    Imports under ``if TYPE_CHECKING:`` count as well."""
    import grimp

    cycles = _cycles(grimp.build_graph("recsys", cache_dir=None))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
