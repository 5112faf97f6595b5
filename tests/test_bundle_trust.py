"""Signed bundles refuse tampering that reseals the checksums; malformed manifests are ArtifactErrors, never
ValueError/KeyError or a huge allocation (issue 16 item 5)."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest

from recsys.errors import ArtifactError, ConfigError
from recsys.loading import load_bundle, save_bundle

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bundles" / "v1"
KEY = "k" * 16 + "-test-signing-key"


def _bundle(tmp_path: Path, name: str = "b") -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURE, dst)
    return dst


def _reseal(path: Path, *names: str) -> None:
    """What an attacker who can write the directory does: record the edited files' new size and sha256."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in names:
        data = (path / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))


def _edit_json(path: Path, name: str, edit) -> None:
    obj = json.loads((path / name).read_text())
    edit(obj)
    (path / name).write_text(json.dumps(obj))


def test_a_signed_bundle_refuses_a_resealed_change_that_checksums_alone_accept(tmp_path, monkeypatch):
    monkeypatch.delenv("RECSYS_BUNDLE_KEY", raising=False)
    path = tmp_path / "signed"
    save_bundle(load_bundle(FIXTURE), path, key=KEY)
    assert json.loads((path / "signature.json").read_text())["algorithm"] == "HMAC-SHA256"
    assert load_bundle(path, key=KEY).n_candidates == load_bundle(FIXTURE).n_candidates
    _edit_json(path, "recommender.json", lambda m: m["settings"].update(n_candidates=7))  # e.g. widen, reprice
    _reseal(path, "recommender.json")
    assert load_bundle(path).n_candidates == 7  # without a key the checksums only catch corruption
    with pytest.raises(ArtifactError, match="signature.json does not match the manifest"):
        load_bundle(path, key=KEY)
    monkeypatch.setenv("RECSYS_BUNDLE_KEY", KEY)  # the operator's key from the environment
    with pytest.raises(ArtifactError, match="signed with another key"):
        load_bundle(path)


def test_with_a_key_unsigned_or_wrongly_signed_bundles_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_BUNDLE_KEY", KEY)
    with pytest.raises(ArtifactError, match="is not signed"):
        load_bundle(FIXTURE)
    path = tmp_path / "b"
    monkeypatch.delenv("RECSYS_BUNDLE_KEY")
    save_bundle(load_bundle(FIXTURE), path, key=KEY)
    with pytest.raises(ArtifactError, match="signed with another key"):
        load_bundle(path, key="another-key-of-16-bytes")
    (path / "signature.json").write_text("not json")
    with pytest.raises(ArtifactError, match="does not match"):
        load_bundle(path, key=KEY)
    with pytest.raises(ConfigError, match="at least 16"):
        load_bundle(path, key="short")


MANIFEST_CASES = {
    "bytes is a word": lambda m: m["files"]["pipeline.json"].update(bytes="lots"),
    "bytes is a float": lambda m: m["files"]["pipeline.json"].update(bytes=1e12),
    "bytes is negative": lambda m: m["files"]["pipeline.json"].update(bytes=-1),
    "bytes is huge": lambda m: m["files"]["pipeline.json"].update(bytes=10**30),
    "bytes is a bool": lambda m: m["files"]["pipeline.json"].update(bytes=True),
    "entry is a string": lambda m: m["files"].update({"pipeline.json": "abc"}),
    "sha256 is a number": lambda m: m["files"]["pipeline.json"].update(sha256=5),
    "files is a list": lambda m: m.update(files=["pipeline.json"]),
    "no events.parquet": lambda m: m["files"].pop("tables/events.parquet"),
    "dim 1e12": lambda m: m["components"].update(dim=1e12),
    "components is a string": lambda m: m.update(components="x"),
    "format_version is text": lambda m: m.update(format_version="1"),
    "absolute path": lambda m: m["files"].update({"/etc/passwd": {"bytes": 1, "sha256": "0" * 64}}),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_malformed_bundle_manifests_are_artifact_errors(tmp_path, case):
    path = _bundle(tmp_path)
    if case == "no events.parquet":
        (path / "tables" / "events.parquet").unlink()
    _edit_json(path, "manifest.json", MANIFEST_CASES[case])
    with pytest.raises(ArtifactError):
        load_bundle(path)


INNER_CASES = {  # resealed inner files: these pass the checksums and must still be refused before use
    ("index/manifest.json", "dim 1e12"): lambda m: m.update(dim=1e12),
    ("index/manifest.json", "dim 10**12"): lambda m: m.update(dim=10**12),
    ("index/manifest.json", "stored is text"): lambda m: m.update(stored="many"),
    ("index/manifest.json", "count above stored"): lambda m: m.update(count=m["stored"] + 1),
    ("index/manifest.json", "entry is a string"): lambda m: m["files"].update({"ids.npy": "abc"}),
    ("index/manifest.json", "unknown filter setting"): lambda m: m.update(filter_config={"bogus": 1}),
    ("index/manifest.json", "kind is a number"): lambda m: m.update(kind=5),
    ("model/config.json", "dim 10**12"): lambda m: m["config"].update(dim=10**12),
    ("model/config.json", "a billion items"): lambda m: m["config"].update(num_items=10**9),
    ("model/config.json", "dim is text"): lambda m: m["config"].update(dim="8"),
}


@pytest.mark.parametrize("target, case", sorted(INNER_CASES))
def test_malformed_inner_manifests_are_artifact_errors_even_when_resealed(tmp_path, target, case):
    path = _bundle(tmp_path)
    _edit_json(path, target, INNER_CASES[(target, case)])
    _reseal(path, target)
    with pytest.raises(ArtifactError):
        load_bundle(path)


def _garbage(rng: random.Random):
    return rng.choice([None, True, -1, 0, 1e12, 10**15, "", "lots", "../x", [], [1, "a"], {}, {"bytes": "x"}])


def test_fuzzed_manifest_fields_load_or_raise_artifact_error(tmp_path):
    """Seeded fuzz: replace one field anywhere in the manifest with garbage; the only allowed outcomes are a
    successful load (a field nothing depends on) or ArtifactError."""
    rng = random.Random(16)
    base = json.loads((FIXTURE / "manifest.json").read_text())
    paths = []

    def walk(node, trail):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append(trail + (k,))
                walk(v, trail + (k,))

    walk(base, ())
    path = _bundle(tmp_path)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(30):
        trail = rng.choice(paths)
        m = copy.deepcopy(base)
        node = m
        for k in trail[:-1]:
            node = node[k]
        node[trail[-1]] = _garbage(rng)
        (path / "manifest.json").write_text(json.dumps(m))
        try:
            load_bundle(path)
            outcomes["loaded"] += 1
        except ArtifactError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0, outcomes


def test_recommender_save_and_load_take_the_key(tmp_path, monkeypatch):
    """The Recommender's own save/load forward ``key=``: what it signs, a load with another key refuses."""
    from recsys.recommender import Recommender

    monkeypatch.delenv("RECSYS_BUNDLE_KEY", raising=False)
    rec = Recommender.load(FIXTURE)
    path = rec.save(tmp_path / "signed", key=KEY)
    assert (path / "signature.json").is_file()
    assert Recommender.load(path, key=KEY).n_candidates == rec.n_candidates
    with pytest.raises(ArtifactError):
        Recommender.load(path, key="another-key-of-16-bytes")
    unsigned = rec.save(tmp_path / "unsigned")
    with pytest.raises(ArtifactError):
        Recommender.load(unsigned, key=KEY)
