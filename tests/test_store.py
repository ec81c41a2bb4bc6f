"""The results database: rows in, rows out, concurrent writers, files it must refuse, the regression rule."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import stat

import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.store import db as store
from edgecnn.store.history import compare, spread


@pytest.fixture(autouse=True)
def _no_user_db(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_DB", str(tmp_path / "default.sqlite"))


def doc(p50=10.0, p90=11.0, std=0.5, sha="a" * 64, device="local-cpu", threads=1, xnnpack=True, status="ok",
        error=None, emulated=False):
    d = {
        "schema": "edgecnn.bench/1", "status": status, "error": error,
        "model": {"path": "/m/net.tflite", "size_bytes": 123, "sha256": sha},
        "settings": {"threads": threads, "warmup": 1, "runs": 10, "min_secs": 0.0, "xnnpack": xnnpack},
        "device": {"name": device, "kind": "local", "emulated": emulated},
        "runtime": {"name": "ai_edge_litert", "version": "2.3.0"},
        "machine": {"cpu_model": "cpu", "arch": "x86_64"},
        "edgecnn_version": "0.1.0",
    }
    if status == "ok":
        d["timing"] = {"init_ms": 1.0, "first_ms": 2.0, "steady": {
            "n": 10, "mean_ms": p50, "std_ms": std, "min_ms": p50 - 1, "p50_ms": p50, "p90_ms": p90,
            "p99_ms": p90 + 1, "max_ms": p90 + 2}}
    return d


def test_default_path_honours_env(tmp_path):
    assert store.default_db_path() == tmp_path / "default.sqlite"


def test_roundtrip_and_schema_version(tmp_path):
    path = tmp_path / "sub" / "r.sqlite"  # folder is created
    with store.open_db(path) as db:
        ok = db.record(doc())
        bad = db.record(doc(status="failed", error="x.tflite: no such file"))
    with store.open_db(path, write=False) as db:
        rows = db.runs()
    assert [r["id"] for r in rows] == [ok, bad]
    assert rows[0]["p50_ms"] == 10.0 and rows[0]["status"] == "ok" and rows[0]["device"] == "local-cpu"
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "x.tflite: no such file" and rows[1]["p50_ms"] is None
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(store.SCHEMA_VERSION,)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_filters(tmp_path):
    with store.open_db(tmp_path / "r.sqlite") as db:
        db.record(doc(sha="ab" * 32))
        db.record(doc(sha="cd" * 32, device="pi4"))
        assert len(db.runs(model_sha256="abab")) == 1
        assert len(db.runs(device="pi4")) == 1
        assert len(db.runs(model_like="net.tf")) == 2
        assert len(db.runs(limit=1)) == 1


def _writer(path: str, n: int, tag: int) -> None:
    with store.open_db(path) as db:
        for i in range(n):
            db.record(doc(p50=float(tag * 1000 + i)))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "r.sqlite")
    store.open_db(path).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, 25, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with store.open_db(path, write=False) as db:
        values = sorted(r["p50_ms"] for r in db.runs())
    assert values == sorted(float(k * 1000 + i) for k in range(4) for i in range(25))


def test_refuses_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("my precious notes\n" * 10)
    before = path.read_bytes()
    with pytest.raises(EdgecnnError, match="not an SQLite database"):
        store.open_db(path)
    with pytest.raises(EdgecnnError, match="not a usable SQLite database"):
        store.open_db(path, write=False)
    assert path.read_bytes() == before


def test_refuses_a_read_only_database_and_keeps_its_rows(tmp_path):
    path = tmp_path / "r.sqlite"
    with store.open_db(path) as db:
        db.record(doc())
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
    try:
        with pytest.raises(EdgecnnError, match="read-only"):
            store.open_db(path)
        with store.open_db(path, write=False) as db:
            assert len(db.runs()) == 1
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_missing_database_for_reading(tmp_path):
    with pytest.raises(EdgecnnError, match="no results database"):
        store.open_db(tmp_path / "none.sqlite", write=False)


def test_spread_rule():
    assert spread({"std_ms": 0.5, "p50_ms": 10, "p90_ms": 11}) == 1.0
    assert spread({"std_ms": 2.0, "p50_ms": 10, "p90_ms": 11}) == 2.0


def _rows(*docs):
    return [dict(store.row_from_doc(d), id=i + 1) for i, d in enumerate(docs)]


def test_regression_beyond_spread_is_flagged():
    rows = compare(_rows(doc(p50=10.0, p90=11.0), doc(p50=12.5, p90=13.5)))
    assert rows[1]["regressions"] == ["p50", "p90"] and rows[1]["prev_id"] == 1
    assert rows[1]["delta_p50_pct"] == 25.0


def test_slower_within_noise_is_not_flagged():
    rows = compare(_rows(doc(p50=10.0, p90=11.0), doc(p50=10.8, p90=11.5)))
    assert rows[1]["regressions"] == [] and rows[1]["delta_p50_pct"] == 8.0


def test_p90_only_regression():
    rows = compare(_rows(doc(p50=10.0, p90=10.5, std=0.1), doc(p50=10.2, p90=12.0, std=0.1)))
    assert rows[1]["regressions"] == ["p90"]


def test_only_comparable_runs_are_compared():
    rows = compare(_rows(
        doc(p50=10.0), doc(p50=20.0, threads=2), doc(p50=20.0, xnnpack=False), doc(p50=20.0, device="pi4"),
        doc(p50=20.0, sha="b" * 64), doc(status="failed", error="boom"), doc(p50=10.1)))
    assert all(r["prev_id"] is None for r in rows[:6])
    assert rows[6]["prev_id"] == 1 and rows[6]["regressions"] == []
