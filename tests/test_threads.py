"""recsys.threads: every torch / OpenMP / BLAS pool capped, whatever was imported before; the batch job's scoring
processes all compute with the same number of threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# two threads by default in each child, so a cap that missed a pool would show
_ENV = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
_REPORT = ("import faiss, torch, threadpoolctl\n"
           "pools = sorted({p['num_threads'] for p in threadpoolctl.threadpool_info()})\n"
           "print(json.dumps([torch.get_num_threads(), faiss.omp_get_max_threads(), pools]))")


def _run(code: str) -> list:
    out = subprocess.run([sys.executable, "-c", "import json, os\n" + code + "\n" + _REPORT], env=_ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_limit_threads_caps_every_pool_after_the_libraries_are_loaded() -> None:
    assert _run("import faiss, torch\nfrom recsys.threads import limit_threads\nlimit_threads(1)") == [1, 1, [1]]


def test_limit_threads_caps_pools_loaded_by_the_call_itself() -> None:
    # nothing imported before: faiss's own BLAS loads inside the call and must be capped too (a cap set before
    # faiss was imported left faiss's BLAS on two threads in the batch job's worker processes)
    assert _run("from recsys.threads import limit_threads\nlimit_threads(1)") == [1, 1, [1]]


def test_batch_worker_processes_compute_with_the_scoring_threads() -> None:
    # the initializer of the local job's worker processes, in a fresh process that has imported nothing else
    got = _run("from recsys.batch.workers import _init\n"
               "_init(os.getppid(), 'unused', False)")
    assert got == [1, 1, [1]]


def test_math_threads_caps_inside_and_restores_after() -> None:
    got = _run("import faiss, torch\nfrom recsys.threads import math_threads\n"
               "with math_threads(1):\n"
               "    inside = [torch.get_num_threads(), faiss.omp_get_max_threads(),\n"
               "              sorted({p['num_threads'] for p in __import__('threadpoolctl').threadpool_info()})]\n"
               "assert inside == [1, 1, [1]], inside")
    assert got[:2] == [2, 2] and 2 in got[2]


def test_math_threads_refuses_a_count_below_one() -> None:
    import pytest

    from recsys.threads import math_threads

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="math_threads needs a whole number"), math_threads(bad):
            pass
