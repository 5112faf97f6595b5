"""Fuzz the public API: every input is answered with a feed (perhaps a fallback) or a typed error.

Hypothesis (derandomized, so every run tries the same inputs) throws arbitrary ids, k, partners, exclusions,
contexts and tables at ``Recommender.recommend / recommend_batch / recommend_ids / similar_items`` (an
integer-id and a string-id model) and at the ``validate_*`` data contracts. Each input is counted as
``ok``, ``fallback`` (a feed on a fallback path), ``typed`` (a :class:`~recsys.errors.RecsysError`),
``crash`` (any other exception) or ``wrong`` (a feed longer than k, a repeated item, an excluded item, an item
outside the partner's pool or the catalogue; a validated table that breaks its own contract). Crashes and
wrong answers must be 0. ``RECSYS_FUZZ_EXAMPLES`` scales the run (``experiments/reliability/fuzz.py``), and
``RECSYS_FUZZ_JSON`` names a file for the totals (they also go to ``counts.json`` under the pytest tmp dir).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import traceback

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.errors import RecsysError
from recsys.ids import coerce_id, coerce_media, id_kind
from tests.fuzz_strategies import CELLS, DTYPES, TEXTS, draw_args
from tests.test_recommender import fitted, world

EXAMPLES = int(os.environ.get("RECSYS_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
MODEL = st.sampled_from(["int", "str"])
COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
FAILURES: dict[str, list[str]] = collections.defaultdict(list)  # crashes and wrong answers, with their inputs


@functools.cache
def models() -> dict:
    """The shared integer-id model and a string-id twin ('u5', 'i7') fitted on the same world."""
    import torch

    from recsys.recommender import Recommender
    from tests.test_recommender import SETTINGS

    w = world()
    u, i = (lambda s: "u" + s.astype(str)), (lambda s: "i" + s.astype(str))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from recsys.fit.components import TrainSettings

        # no_partner="catalogue" as fitted(): the fuzzed calls without a partner reach the serving path
        twin = Recommender(max_per_category=2, train=TrainSettings(**SETTINGS), no_partner="catalogue").fit(
            w.events.assign(user_id=u(w.events["user_id"]), item_id=i(w.events["item_id"])),
            w.items.assign(item_id=i(w.items["item_id"])), users=w.users.assign(user_id=u(w.users["user_id"])),
            media=w.media, media_pools=w.media_pools.assign(item_id=i(w.media_pools["item_id"])), progress=False)
    finally:
        torch.set_num_threads(threads)
    pools = w.media_pools.groupby("media_id")["item_id"].agg(set).to_dict()
    return {"int": (fitted(), pools), "str": (twin, {m: {f"i{x}" for x in s} for m, s in pools.items()})}


# ----- running and checking one call ---------------------------------------------------------------
def run(kind: str, call, check, inputs: dict) -> None:
    """Make one call, classify the outcome in COUNTS[kind] and keep the failures with their inputs."""
    COUNTS[kind]["tried"] += 1
    try:
        out = call()
    except RecsysError as e:
        COUNTS[kind]["typed"] += 1
        if os.environ.get("RECSYS_FUZZ_SHOW_TYPED"):
            print(f"typed {kind}: {str(e).splitlines()[0][:150]}")
        return
    except Exception as e:  # noqa: BLE001 - any other exception is the crash being counted
        COUNTS[kind]["crash"] += 1
        COUNTS[kind][f"crash {type(e).__module__}.{type(e).__name__}"] += 1  # what kind of crash, for the record
        FAILURES[kind].append(f"crash {inputs!r}: {''.join(traceback.format_exception_only(e)).strip()}")
        return
    problems = check(out)
    if problems:
        COUNTS[kind]["wrong"] += 1
        FAILURES[kind].append(f"wrong {inputs!r}: {problems}")
    else:
        COUNTS[kind]["fallback" if _fell_back(out) else "ok"] += 1


def _fell_back(out) -> bool:
    if isinstance(out, pd.DataFrame) and "fallback" in out.columns:  # recommend_batch
        return bool(out["fallback"].notna().any())
    return getattr(out, "fallback", None) is not None  # a Feed


def _excluded(rec, exclude) -> set:
    kind = id_kind(rec._state.catalogue.index)
    return {coerce_id(e, kind, "e", "")[0] for e in exclude or ()}


def feed_problems(rec, pools: dict, ids: list, k: int, media, excluded: set) -> list[str]:
    """What is wrong with one feed: its length, repeats, exclusions, pool and catalogue membership."""
    out = []
    if len(ids) > k:
        out.append(f"{len(ids)} items for k={k}")
    if len(set(ids)) != len(ids):
        out.append(f"repeated items {ids}")
    if set(ids) & excluded:
        out.append(f"excluded items served: {set(ids) & excluded}")
    pool = pools.get(coerce_media(media)[0])
    if pool is not None and not set(ids) <= pool:
        out.append(f"items outside {media!r}'s pool: {set(ids) - pool}")
    if not set(ids) <= set(rec._state.catalogue.ids):
        out.append(f"items not in the catalogue: {set(ids) - set(rec._state.catalogue.ids)}")
    return out


@FUZZ
@given(model=MODEL, data=st.data())
def fuzz_recommend(model, data):
    rec, pools = models()[model]
    a = draw_args(data, ["user", "k", "media", "exclude", "context"])
    run("recommend", lambda: rec.recommend(a["user"], k=a["k"], media_id=a["media"], exclude=a["exclude"],
                                           context=a["context"]),
        lambda f: feed_problems(rec, pools, f.item_ids, a["k"], a["media"], _excluded(rec, a["exclude"])),
        dict(model=model, **a))


@FUZZ
@given(model=MODEL, data=st.data())
def fuzz_similar_items(model, data):
    rec, pools = models()[model]
    a = draw_args(data, ["item", "k", "media"])
    run("similar_items", lambda: rec.similar_items(a["item"], k=a["k"], media_id=a["media"]),
        lambda f: feed_problems(rec, pools, f.item_ids, a["k"], a["media"], set()), dict(model=model, **a))


def _rows(users, media) -> tuple[list, list]:
    if isinstance(users, pd.DataFrame):
        return users["user_id"].tolist(), users["media_id"].tolist()
    return list(users), [media] * len(users)


def _batch_problems(rec, pools, frame: pd.DataFrame, a: dict) -> list[str]:
    raw, medias = _rows(a["users"], a["media"])
    uid = [coerce_id(u, id_kind(rec._state.users.ids), "u", "")[0] for u in raw]
    per_user = isinstance(a["exclude"], dict)
    out = []
    for r, u, m in zip(raw, uid, medias, strict=True):
        if uid.count(u) == 1:  # a user asked for twice has two feeds under one id
            excluded = _excluded(rec, a["exclude"].get(r, a["exclude"].get(u)) if per_user else a["exclude"])
            out += feed_problems(rec, pools, frame.loc[frame["user_id"] == u, "item_id"].tolist(), a["k"], m,
                                 excluded)
    return out


@FUZZ
@given(model=MODEL, data=st.data())
def fuzz_recommend_batch(model, data):
    rec, pools = models()[model]
    a = draw_args(data, ["users", "k", "media", "exclude", "context", "chunk"])
    run("recommend_batch", lambda: rec.recommend_batch(a["users"], k=a["k"], media_id=a["media"],
                                                       exclude=a["exclude"], context=a["context"],
                                                       chunk_size=a["chunk"]),
        lambda f: _batch_problems(rec, pools, f, a), dict(model=model, **a))


@FUZZ
@given(model=MODEL, data=st.data())
def fuzz_recommend_ids(model, data):
    rec, pools = models()[model]
    a = draw_args(data, ["users", "k", "media", "exclude", "chunk"])

    def check(out: np.ndarray) -> list[str]:
        raw, medias = _rows(a["users"], a["media"])
        if out.shape != (len(raw), a["k"]):
            return [f"shape {out.shape} for {len(raw)} users and k={a['k']}"]
        per_user = isinstance(a["exclude"], dict)
        problems = []
        for r, m, row in zip(raw, medias, out.tolist(), strict=True):
            excl = a["exclude"].get(r, ()) if per_user else a["exclude"]
            ids = [i for i in row if i is not None and i != -1]
            problems += feed_problems(rec, pools, ids, a["k"], m, _excluded(rec, excl))
        return problems

    run("recommend_ids", lambda: rec.recommend_ids(a["users"], k=a["k"], media_id=a["media"], exclude=a["exclude"],
                                                   chunk_size=a["chunk"]), check, dict(model=model, **a))


# ----- validators ------------------------------------------------------------------------------------
TABLES = ("events", "items", "users", "social", "media", "media_pools")
REQUIRED_OUT = {"events": ["user_id", "item_id", "timestamp", "event_type"], "items": ["item_id", "price"],
                "users": ["user_id"], "social": ["user_id", "friend_id"], "media": ["media_id"],
                "media_pools": ["media_id", "item_id"]}


@functools.cache
def base_tables() -> dict[str, pd.DataFrame]:
    w = world()
    return {"events": w.events.head(12), "items": w.items.head(12), "users": w.users.head(12),
            "social": w.social.head(12), "media": w.media, "media_pools": w.media_pools.head(12)}


def mutate(data, table: str) -> pd.DataFrame:
    """A small valid table with one or two columns replaced, retyped, dropped, duplicated or renamed."""
    df = base_tables()[table].copy()
    df.columns = pd.Index(list(df.columns), dtype=object)  # names as given: a lone surrogate stays out of pyarrow
    for _ in range(data.draw(st.integers(1, 2))):
        column = data.draw(st.sampled_from([*df.columns, "extra"]))
        action = data.draw(st.sampled_from(["values", "values", "dtype", "drop", "dup", "rename", "empty"]))
        keep = [c != column for c in df.columns]
        try:  # building the input: a change pandas itself refuses leaves the table as it was
            if action == "values" or action == "dtype" and not all(keep):  # the column replaced, moved last
                new = (pd.Series(data.draw(st.lists(CELLS, min_size=len(df), max_size=len(df))), dtype=object,
                                 index=df.index) if action == "values"
                       else df.iloc[:, keep.index(False)].astype(data.draw(DTYPES)))
                df = pd.concat([df.loc[:, keep], new.rename("_new")], axis=1)
                df.columns = pd.Index([*df.columns[:-1], column], dtype=object)
            elif action == "drop":
                df = df.loc[:, keep]
            elif action == "dup" and not all(keep):
                df = df.iloc[:, [*range(df.shape[1]), keep.index(False)]]
            elif action == "rename":
                df.columns = pd.Index([data.draw(TEXTS) if not k else c for c, k in zip(df.columns, keep,
                                                                                         strict=True)], dtype=object)
            elif action == "empty":
                df = df.head(0)
        except Exception:  # noqa: BLE001 - not the code under test
            pass
    return df


def table_problems(table: str, out: pd.DataFrame, given_rows: int) -> list[str]:
    """A validated table keeps its contract: its columns, no null keys, ns timestamps, sane numbers."""
    from recsys.features import schema

    problems = [f"missing {c}" for c in REQUIRED_OUT[table] if c not in out.columns]
    keys = {"events": schema.EVENTS, "items": schema.ITEMS, "users": schema.USERS, "social": schema.SOCIAL,
            "media": schema.MEDIA, "media_pools": schema.MEDIA_POOLS}[table].keys
    problems += [f"nulls in key {c}" for c in keys if c in out.columns and out[c].isna().any()]
    if len(out) > given_rows:
        problems.append(f"{len(out)} rows out of {given_rows}")
    if table == "events" and out["timestamp"].dtype != "datetime64[ns]":
        problems.append(f"timestamp dtype {out['timestamp'].dtype}")
    if table == "items" and not (np.isfinite(out["price"]).all() and (out["price"] >= 0).all()):
        problems.append("price not finite and >= 0")
    return problems


@FUZZ
@given(table=st.sampled_from(TABLES), data=st.data())
def fuzz_validators(table, data):
    from recsys.features import schema

    df = mutate(data, table)
    run("validate", lambda: getattr(schema, f"validate_{table}")(df), lambda out: table_problems(table, out, len(df)),
        dict(table=table, frame=df.head(3).to_dict("list")))


@FUZZ
@given(suffix=st.sampled_from([".csv", ".parquet", ".tsv"]), table=st.sampled_from(TABLES),
       body=st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"PAR1", b"user_id\n", b'a,b\n1,"2\n',
                                                             b"user_id,item_id\n1,\xff\n"])),
       keep=st.integers(0, 400))
def fuzz_table_files(suffix, table, body, keep):
    import tempfile
    from pathlib import Path

    from recsys.features import schema

    path = Path(tempfile.mkdtemp(dir=TMP[0])) / f"t{suffix}"
    good = base_tables()[table]
    if keep:  # a real file of the table, cut after `keep` bytes (a truncated copy) or kept whole
        good.to_parquet(path) if suffix == ".parquet" else good.to_csv(path, index=False, sep=suffix == ".tsv"
                                                                        and "\t" or ",")
        raw = path.read_bytes()
        path.write_bytes(raw[:keep] + body if keep < 300 else raw)
    else:
        path.write_bytes(body)
    run("validate_file", lambda: getattr(schema, f"validate_{table}")(path),
        lambda out: table_problems(table, out, 10**9), dict(table=table, suffix=suffix, body=body, keep=keep))


TMP: list = []


@pytest.fixture(scope="module", autouse=True)
def report(tmp_path_factory):
    """Around the fuzz tests: a folder for their files; after them, the counts printed and written as JSON."""
    TMP[:] = [tmp_path_factory.mktemp("fuzz")]
    yield
    total = sum(COUNTS.values(), collections.Counter())
    result = {"examples_per_test": EXAMPLES, "total": dict(total), **{k: dict(v) for k, v in COUNTS.items()}}
    text = json.dumps(result, indent=1, sort_keys=True)
    (TMP[0] / "counts.json").write_text(text)
    if os.environ.get("RECSYS_FUZZ_JSON"):
        with open(os.environ["RECSYS_FUZZ_JSON"], "w") as fh:
            fh.write(text + "\n")
    print(f"\nfuzz counts: {json.dumps(result['total'], sort_keys=True)} ({TMP[0] / 'counts.json'})")


@pytest.mark.parametrize("fuzz", [fuzz_recommend, fuzz_recommend_batch, fuzz_recommend_ids, fuzz_similar_items,
                                  fuzz_validators, fuzz_table_files], ids=lambda f: f.__name__)
def test_fuzz(fuzz):
    """Every input gets a feed or a typed error: no crash, no wrong answer (the first ones listed, with inputs)."""
    kind = {"fuzz_validators": "validate", "fuzz_table_files": "validate_file"}.get(fuzz.__name__,
                                                                                  fuzz.__name__[5:])
    fuzz()
    print(f"\n{kind}: {dict(COUNTS[kind])}")
    assert COUNTS[kind]["tried"] >= EXAMPLES // 2
    found = FAILURES[kind]
    assert not found, f"{len(found)} crashes / wrong answers, the first ones:\n" + "\n".join(found[:8])
