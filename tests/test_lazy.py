"""Lazy package exports (recsys.lazy.lazy_exports): names resolve on first use, are cached, and unknown ones fail."""

from __future__ import annotations

import ast
import subprocess
import sys
import types

import pytest

import recsys
import recsys.evaluation
import recsys.models.rankers
import recsys.tracking
from recsys.lazy import lazy_exports


def test_top_level_names_resolve_and_stay_the_only_public_ones():
    from recsys.recommender import Recommender

    assert recsys.Recommender is Recommender
    assert callable(recsys.load)
    assert recsys.__all__ == ["__version__", "load", "Recommender"]
    assert {"load", "Recommender", "__version__"} <= set(dir(recsys))
    assert not hasattr(recsys, "lazy_exports")


@pytest.mark.parametrize("package", [recsys, recsys.evaluation, recsys.tracking, recsys.models.rankers])
def test_unknown_name_raises_the_standard_attribute_error(package):
    with pytest.raises(AttributeError, match=rf"module '{package.__name__}' has no attribute 'nope'"):
        package.nope  # noqa: B018


def test_every_listed_name_resolves():
    for package in (recsys.evaluation, recsys.tracking, recsys.models.rankers):
        for name in package.__all__:
            assert getattr(package, name) is not None
        assert set(package.__all__) <= set(dir(package))


def test_a_loaded_name_is_cached_in_the_package(monkeypatch):
    pkg = types.ModuleType("lazy_demo_pkg")
    monkeypatch.setitem(sys.modules, "lazy_demo_pkg", pkg)
    pkg.__getattr__, pkg.__dir__ = lazy_exports("lazy_demo_pkg", {"dumps": "json"})
    assert "dumps" not in vars(pkg) and "dumps" in dir(pkg)
    import json

    assert pkg.dumps is json.dumps
    assert vars(pkg)["dumps"] is json.dumps


def test_importing_a_lazy_package_leaves_its_lazy_modules_unloaded():
    code = "import sys, recsys.evaluation, recsys.tracking, recsys.models.rankers; print(sorted(m for m in " \
           "sys.modules if m.startswith(('recsys.evaluation.', 'recsys.tracking.', 'recsys.models.rankers.'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    loaded = ast.literal_eval(out)
    assert not [m for m in loaded if m.startswith(("recsys.evaluation.", "recsys.tracking."))]
    assert "recsys.models.rankers.gbdt" not in loaded and "recsys.models.rankers.esmm" not in loaded
