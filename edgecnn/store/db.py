"""The results database: every bench, ok or failed, is one row in SQLite.

Where: `--db PATH`, else `$EDGECNN_DB`, else `platformdirs.user_data_dir("edgecnn")/results.sqlite`.

Why it is safe to share: WAL journal, a 30 s busy timeout, and each insert in its own `BEGIN IMMEDIATE`
transaction retried on "database is locked", so benches writing at once (several terminals, an SSH board and the
local CPU) all land. Only inserts are ever made: nothing already stored is changed or deleted. A file that is not
SQLite, or is read-only, is refused before a bench starts, so the user learns it before waiting for a run.

Columns hold what `history` filters and compares on; `result_json` holds the whole runner document.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

from edgecnn.errors import EdgecnnError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
WRITE_ATTEMPTS = 20

_COLUMNS = {  # name -> SQL type; the order is the table's
    "created_at": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "model_path": "TEXT",
    "model_sha256": "TEXT",
    "model_size": "INTEGER",
    "device": "TEXT",
    "emulated": "INTEGER NOT NULL DEFAULT 0",
    "threads": "INTEGER",
    "xnnpack": "INTEGER",
    "warmup": "INTEGER",
    "runs_requested": "INTEGER",
    "min_secs": "REAL",
    "data": "TEXT",
    "n_runs": "INTEGER",
    "mean_ms": "REAL",
    "std_ms": "REAL",
    "min_ms": "REAL",
    "p50_ms": "REAL",
    "p90_ms": "REAL",
    "p99_ms": "REAL",
    "max_ms": "REAL",
    "init_ms": "REAL",
    "first_ms": "REAL",
    "peak_rss_mb": "REAL",
    "top1": "REAL",
    "partitions": "INTEGER",
    "runtime": "TEXT",
    "runtime_version": "TEXT",
    "edgecnn_version": "TEXT",
    "cpu_model": "TEXT",
    "arch": "TEXT",
    "result_json": "TEXT",
    # added later: _migrate adds them to older databases (ALTER TABLE ... ADD COLUMN), old rows keep NULL
    "postprocess_head": "TEXT",
    "postprocess_p50_ms": "REAL",
    "accuracy_metric": "TEXT",  # what the run's accuracy is: "top-1" (column top1) or "mAP@.5" (a detector: map50)
    "map50": "REAL",
    "map": "REAL",  # mAP@[.5:.95]
    "miou": "REAL",  # a segmenter's mIoU (accuracy_metric "mIoU")
}
_ADDED_COLUMNS = ("postprocess_head", "postprocess_p50_ms", "accuracy_metric", "map50", "map", "miou")

_DEPLOY_COLUMNS = {  # one row per `edgecnn flash` / `flash --rollback`, ok or failed (edgecnn.deploy.flash)
    "created_at": "TEXT NOT NULL",
    "action": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "device": "TEXT",
    "name": "TEXT",
    "model_path": "TEXT",
    "model_sha256": "TEXT",
    "model_size": "INTEGER",
    "previous_sha256": "TEXT",
    "smoke": "INTEGER",
    "emulated": "INTEGER NOT NULL DEFAULT 0",
    "result_json": "TEXT",
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{k} {v}" for k, v in _COLUMNS.items())}
);
CREATE INDEX IF NOT EXISTS runs_model_device ON runs (model_sha256, device);
CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{k} {v}" for k, v in _DEPLOY_COLUMNS.items())}
);
"""


def default_db_path() -> Path:
    """`$EDGECNN_DB`, else results.sqlite in the user's data directory."""
    env = os.environ.get("EDGECNN_DB")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("edgecnn")) / "results.sqlite"


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class ResultsDB:
    """An open results database. Use `open_db()`; close with `.close()` or a `with` block."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self._conn = conn

    def __enter__(self) -> "ResultsDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _write(self, sql: str, params=()) -> int:
        """Run one write in its own BEGIN IMMEDIATE transaction, retrying while another writer holds the lock."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    cur = self._conn.execute(sql, params)
                    self._conn.execute("COMMIT")
                    return int(cur.lastrowid or 0)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if _is_locked(exc) and attempt < WRITE_ATTEMPTS - 1:
                    time.sleep(0.05 + random.random() * 0.1 * (attempt + 1))
                    continue
                raise EdgecnnError(f"{self.path}: cannot write results: {exc}") from None
        raise AssertionError("unreachable")

    def record(self, doc: dict) -> int:
        """Insert one bench document (see `row_from_doc`) and return its row id."""
        row = row_from_doc(doc)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        return self._write(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))

    def record_deployment(self, doc: dict) -> int:
        """Insert one flash/rollback document (keys as `_DEPLOY_COLUMNS`, the whole doc kept as JSON)."""
        row = {k: doc.get(k) for k in _DEPLOY_COLUMNS if k != "result_json"}
        row["created_at"] = row["created_at"] or datetime.now(timezone.utc).isoformat(timespec="seconds")
        row["emulated"] = int(bool(row["emulated"]))
        row["smoke"] = None if row["smoke"] is None else int(bool(row["smoke"]))
        row["result_json"] = json.dumps(doc, default=str)
        marks = ", ".join("?" for _ in row)
        return self._write(f"INSERT INTO deployments ({', '.join(row)}) VALUES ({marks})", tuple(row.values()))

    def deployments(self, device: str | None = None, name: str | None = None) -> list[dict]:
        """Stored flash/rollback rows, oldest first, optionally for one device and model name."""
        where, params = [], []
        for col, val in (("device", device), ("name", name)):
            if val:
                where.append(f"{col} = ?")
                params.append(val)
        sql = "SELECT * FROM deployments" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        try:
            cur = self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise EdgecnnError(f"{self.path}: cannot read deployments: {exc}") from None
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def runs(self, model_sha256: str | None = None, model_like: str | None = None, device: str | None = None,
             limit: int | None = None) -> list[dict]:
        """Stored runs, oldest first, optionally filtered by model hash (prefix), model path text and device."""
        where, params = [], []
        if model_sha256:
            where.append("model_sha256 LIKE ?")
            params.append(model_sha256.lower() + "%")
        if model_like:
            where.append("model_path LIKE ?")
            params.append(f"%{model_like}%")
        if device:
            where.append("device = ?")
            params.append(device)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        try:
            cur = self._conn.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise EdgecnnError(f"{self.path}: cannot read results: {exc}") from None
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        return rows[-limit:] if limit else rows


def _check_writable(path: Path) -> None:
    """Refuse read-only files and folders up front (also for root, who sqlite would let write anyway)."""
    if path.exists():
        if path.is_dir():
            raise EdgecnnError(f"{path}: is a directory, expected a database file")
        if not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
            raise EdgecnnError(f"{path}: database file is read-only")
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head and head != b"SQLite format 3\x00":
            raise EdgecnnError(f"{path}: not an SQLite database (refusing to touch it)")
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgecnnError(f"{path}: cannot create its folder: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise EdgecnnError(f"{path}: folder {parent} is read-only (SQLite needs it for its journal)")


def open_db(path: str | os.PathLike | None = None, write: bool = True) -> ResultsDB:
    """Open (creating if needed) the results database at `path` (default: `default_db_path()`)."""
    p = Path(path) if path else default_db_path()
    if write:
        _check_writable(p)
    elif not p.exists():
        raise EdgecnnError(f"{p}: no results database yet (run `edgecnn bench` first)")
    elif p.is_dir():
        raise EdgecnnError(f"{p}: is a directory, expected a database file")
    try:
        conn = sqlite3.connect(str(p), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT_S * 1000))
        if write:
            conn.execute("PRAGMA journal_mode = WAL")
            _migrate(conn, p)
        else:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise EdgecnnError(f"{p}: not a usable SQLite database ({exc})") from None
    return ResultsDB(p, conn)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    for attempt in range(WRITE_ATTEMPTS):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 + random.random() * 0.1)
    try:
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        for name in _ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {_COLUMNS[name]}")
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        if not rows:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif rows[0][0] > SCHEMA_VERSION:
            raise EdgecnnError(f"{path}: database schema v{rows[0][0]} is newer than this edgecnn (v{SCHEMA_VERSION})")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _get(d: dict | None, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def accuracy_metric(doc: dict) -> str | None:
    """The name of the number a bench measured for accuracy: "mAP@.5" for a detector, "top-1" for a classifier,
    None when it measured none (no --data, unlabeled data, a detector without true boxes)."""
    from edgecnn import tasks

    acc = doc.get("accuracy") if isinstance(doc.get("accuracy"), dict) else {}
    task = tasks.known(acc.get("task"))
    return task.metric if acc.get(task.metric_key) is not None else None


def row_from_doc(doc: dict) -> dict:
    """The column values for one bench document (runner JSON plus the `device`/`edgecnn` keys bench adds)."""
    steady = _get(doc, "timing", "steady") or {}
    settings = doc.get("settings") or {}
    xnn = settings.get("xnnpack")
    row = {
        "created_at": doc.get("created_at") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": doc.get("status", "failed"),
        "error": doc.get("error"),
        "model_path": _get(doc, "model", "path"),
        "model_sha256": _get(doc, "model", "sha256"),
        "model_size": _get(doc, "model", "size_bytes"),
        "device": _get(doc, "device", "name"),
        "emulated": int(bool(_get(doc, "device", "emulated"))),
        "threads": settings.get("threads"),
        "xnnpack": None if xnn is None else int(bool(xnn)),
        "warmup": settings.get("warmup"),
        "runs_requested": settings.get("runs"),
        "min_secs": settings.get("min_secs"),
        "data": settings.get("data") or settings.get("samples"),
        "n_runs": steady.get("n"),
        "init_ms": _get(doc, "timing", "init_ms"),
        "first_ms": _get(doc, "timing", "first_ms"),
        "peak_rss_mb": doc.get("peak_rss_mb"),
        "top1": _get(doc, "accuracy", "top1"),
        "partitions": _get(doc, "delegation", "partitions"),
        "runtime": _get(doc, "runtime", "name"),
        "runtime_version": _get(doc, "runtime", "version"),
        "edgecnn_version": doc.get("edgecnn_version"),
        "cpu_model": _get(doc, "machine", "cpu_model"),
        "arch": _get(doc, "machine", "arch"),
        "result_json": json.dumps(doc, default=str),
        "postprocess_head": _get(doc, "postprocess", "head"),
        "postprocess_p50_ms": _get(doc, "postprocess", "p50_ms"),
        "accuracy_metric": accuracy_metric(doc),
        "map50": _get(doc, "accuracy", "map50"),
        "miou": _get(doc, "accuracy", "miou"),
        "map": _get(doc, "accuracy", "map"),
    }
    for k in ("mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"):
        row[k] = steady.get(k)
    return row
