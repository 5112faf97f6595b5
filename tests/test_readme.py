"""The README's code runs: every ```python block, the ```yaml files it names, and the ```bash blocks
marked ``<!-- readme-test: run -->``, in order, in a fresh directory (its own ./mlflow.db).

Bash blocks left unmarked are not run here, each for a reason: ``make demo`` / ``make test`` (this suite
is what ``make test`` runs; ``tests/test_demo.py`` covers the demo), the ``pip install`` lines (they would
reinstall the environment under test), ``torchrun`` (``tests/test_distributed.py`` runs DDP) and the
``recsys data validate`` example, which names a file of the reader's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(<!-- readme-test: run -->\s*\n)?```(\w+)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str, bool]]:
    """(language, code, marked to run) for every fenced block of the README, in order."""
    return [(lang, code, bool(mark)) for mark, lang, code in _BLOCK.findall(README.read_text(encoding="utf-8"))]


def test_readme_blocks_are_found() -> None:
    """The parser sees the blocks this test is meant to run (a renamed fence would silently skip them)."""
    langs = [lang for lang, _, _ in blocks()]
    assert langs.count("python") >= 2
    assert any(lang == "bash" and run for lang, _, run in blocks())
    assert any(lang == "yaml" and code.startswith("# file: ") for lang, code, _ in blocks())


def test_readme_code_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["CI"] = "true"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for n, (lang, code, run) in enumerate(blocks()):
        if lang == "python":
            exec(compile(code, f"README.md block {n}", "exec"), namespace)  # noqa: S102 - the README's own code
        elif lang == "yaml" and code.startswith("# file: "):
            name = code.splitlines()[0].removeprefix("# file: ").strip()
            (tmp_path / name).write_text(code, encoding="utf-8")
        elif lang == "bash" and run:
            assert shutil.which("recsys", path=env["PATH"]), "the recsys command is not installed beside python"
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"README block {n} failed:\n{code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        else:
            continue
        ran += 1
    assert ran >= 4
    # what the blocks promise: a bundle, a tracked run, a registered champion (the registry named too: a client
    # without one reads the process's registry URI, which an earlier test's MLflow run may have left set)
    assert (tmp_path / "runs" / "my-feed" / "bundle").is_dir()
    assert (tmp_path / "mlflow.db").is_file()
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    assert str(client.get_model_version_by_alias("guess-you-like", "champion").version) == "1"
