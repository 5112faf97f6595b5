"""Package-level promises: a fast light import, a complete CLI, and no library -> app imports."""

import re
import subprocess
import sys

from typer.testing import CliRunner

from tests.conftest import REPO


def test_import_is_fast_and_light():
    code = (
        "import time, sys; t = time.perf_counter(); import recsys; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('mlflow', 'fastapi', 'pyspark', 'torch', 'faiss') if m in sys.modules]; "
        "print(dt, ','.join(heavy))"
    )
    # best of three: the first run may pay for a cold disk cache
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(3)]
    best = min(float(r[0]) for r in runs)
    assert best < 1.0, f"import recsys took {best:.2f} s"
    assert all(len(r) == 1 for r in runs), f"import recsys pulled in heavy modules: {runs[0][1:]}"


def test_cli_help_lists_every_command():
    from recsys.cli import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("demo", "data", "evaluate", "benchmark", "train", "version"):
        assert cmd in result.output
    sub = CliRunner().invoke(app, ["benchmark", "--help"])
    for cmd in ("retrieval", "index", "ranker", "synthetic", "recommend", "evaluation"):
        assert cmd in sub.output


def test_library_never_imports_the_apps():
    pattern = re.compile(r"^\s*(from|import)\s+(training|serving|experiments)\b", re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "recsys").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_cli_validate_reports_clear_error(tmp_path):
    import pandas as pd

    from recsys.cli import app

    path = tmp_path / "events.csv"
    pd.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [0], "event_type": ["view"]}).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 2
    assert "event_type" in result.output and "view" in result.output
