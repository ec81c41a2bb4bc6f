"""Read what a report is made from: a run directory (`summary.json` + its `results.sqlite`) or a results database.

Both become one `ReportData`: rows (one per model x precision x device, the same keys either way) and the bench
history. Every row says its `task`, `metric` and `value` (the metric's value, e.g. top-1 or mAP@.5), as eval's results
do; rows written before results carried them (older summaries and databases) get them through the task table
(`edgecnn.tasks`) from the keys they have. The loader is where bad input is judged, so the renderers never have to:

| input                                   | what happens                                                        |
|-----------------------------------------|---------------------------------------------------------------------|
| run dir with `summary.json` (run/1)     | table from the summary, history from the run's `results.sqlite`     |
| a summary row of an unknown task        | one error naming the file, the row and the known tasks              |
| `summary.json` of another schema        | one error naming the file and the schema found                      |
| run dir without `summary.json` but a db | report from the db's bench rows, with a note saying so              |
| a device that was down                  | its rows keep `status: failed` and the error; everything else made  |
| database with no runs                   | one error naming the file                                           |
| unreadable history                      | a note; the table and the other plots are still made                |

Nothing is ever written here: the inputs are opened read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn import tasks
from edgecnn.errors import EdgecnnError

RUN_SCHEMA = "edgecnn.run/1"  # = edgecnn.pipeline.SUMMARY_SCHEMA; copied so reading a report never imports the pipeline
PRECISIONS = ("float32", "float16", "dynamic", "int16x8", "int8")  # widest first: the order of every table and plot
ROW_KEYS = ("model", "precision", "device", "path", "size_bytes", "size_ratio", "task", "metric", "value",
            "float_value", "drop_points", "p50_ms", "p90_ms", "peak_rss_mb", "partitions", "ops_outside", "emulated",
            "status", "error", "run_id", "per_class", "timing", "created_at", "postprocess_p50_ms")
# ... and the row's task's `details` keys and their `float_` twins (a detector's map50, map, examples...)
_TIMING_KEYS = ("mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")


@dataclass
class ReportData:
    """Everything a renderer needs; `rows` are plain dicts with `ROW_KEYS` (and their task's details)."""

    title: str
    kind: str  # "run" or "db"
    source: str
    created_at: str | None
    rows: list[dict]
    history: list[dict] = field(default_factory=list)  # db runs, oldest first, with history.compare's fields
    notes: list[str] = field(default_factory=list)
    data_source: str | None = None  # the run's --data (a run directory's summary), for pictures of its images

    @property
    def has_accuracy(self) -> bool:
        return any(r.get("value") is not None for r in self.rows)

    @property
    def metric(self) -> str:
        """What the `value` column is: each measured task's metric, in the task table's order (`top-1 / mAP@.5`
        when classifiers and detectors are mixed)."""
        order = tasks.names()
        measured = sorted((r for r in self.rows if r.get("value") is not None), key=lambda r: order.index(r["task"]))
        return " / ".join(dict.fromkeys(r["metric"] for r in measured)) or tasks.get(tasks.DEFAULT).metric

    @property
    def has_postprocess(self) -> bool:
        """Some row is a detector whose post-processing was timed apart from invoke."""
        return any(r.get("postprocess_p50_ms") is not None for r in self.rows)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]


def load(source: str | Path | None) -> ReportData:
    """A run directory, or a results database file (None: the default database)."""
    if source is None:
        from edgecnn.store.db import default_db_path

        return load_db(default_db_path())
    p = Path(source)
    if not p.exists():
        raise EdgecnnError(f"{p}: no such run directory or database")
    return load_run_dir(p) if p.is_dir() else load_db(p)


def load_run_dir(run_dir: Path) -> ReportData:
    summary_path = run_dir / "summary.json"
    db_path = run_dir / "results.sqlite"
    if not summary_path.exists():
        if db_path.exists():  # a run that stopped early, or an edgecnn that wrote no summary: keep what there is
            data = load_db(db_path)
            data.notes.insert(0, f"{summary_path} not found (the run did not finish, or an older edgecnn made it): "
                                 "latency from the database only, no accuracy. Re-run `edgecnn run` for the rest.")
            return data
        raise EdgecnnError(f"{run_dir}: not a run directory (no summary.json; `edgecnn run RECIPE -o DIR` makes one)")
    summary = _read_summary(summary_path)
    rows = [_row_from_summary(r, summary_path, i) for i, r in enumerate(summary["rows"])]
    if not rows:
        raise EdgecnnError(f"{summary_path}: the run has no rows (no models, precisions or devices in its recipe?)")
    data = ReportData(title=f"{summary.get('recipe') or run_dir.name} on {summary.get('data') or '?'}", kind="run",
                      source=str(run_dir), created_at=summary.get("created_at"), rows=_sorted(rows),
                      data_source=summary.get("data"))
    if db_path.exists():
        try:
            data.history = _history(db_path)
        except EdgecnnError as exc:
            data.notes.append(f"latency history not shown: {exc}")
    _device_names(data)
    data.notes.extend(slow_int8_notes(data.rows))
    return data


def _device_names(data: ReportData) -> None:
    """A recipe may name a device by its profile's path (`boards/pi.yaml`): show the profile's own name, which the
    bench recorded, or else the file's stem."""
    names = {h.get("id"): h.get("device") for h in data.history}
    for r in data.rows:
        if r["device"].endswith((".yaml", ".yml")):
            r["device"] = names.get(r["run_id"]) or Path(r["device"]).stem


def _read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise EdgecnnError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); was the run interrupted?") \
            from None
    if not isinstance(summary, dict):
        raise EdgecnnError(f"{path}: expected a JSON object, found {type(summary).__name__}")
    schema = summary.get("schema")
    if schema != RUN_SCHEMA:
        found = "no schema field" if schema is None else f"schema {schema!r}"
        raise EdgecnnError(f"{path}: {found}, but this edgecnn reads {RUN_SCHEMA!r}: another version of edgecnn "
                           "wrote it; re-run `edgecnn run` on its recipe (cached steps make that quick)")
    if not isinstance(summary.get("rows"), list):
        raise EdgecnnError(f"{path}: 'rows' is missing or not a list")
    return summary


def _row_from_summary(r, path: Path, i: int) -> dict:
    if not isinstance(r, dict) or not all(r.get(k) for k in ("model", "precision", "device")):
        raise EdgecnnError(f"{path}: rows[{i}] lacks model, precision or device")
    row = {k: r.get(k) for k in ROW_KEYS}
    try:
        row.update(task_fields(r))
    except EdgecnnError as exc:
        raise EdgecnnError(f"{path}: rows[{i}]: {exc}") from None
    row["status"] = r.get("bench_status") or "failed"
    row["error"] = r.get("bench_error") or (None if row["status"] == "ok" else "no bench result")
    row["run_id"] = r.get("bench_run_id")
    row["emulated"] = bool(r.get("emulated"))
    if row["status"] != "ok":  # a failed bench measured nothing; keep no stale numbers beside the error
        for k in ("p50_ms", "p90_ms", "peak_rss_mb", "partitions", "ops_outside", "timing"):
            row[k] = None
    return row


def task_fields(r: dict, task=None) -> dict:
    """`task`, `metric`, `value`, `float_value` and the task's `details` keys (and their `float_` twins) of a result
    row. A row written before rows carried them has no `task` (the default task) and its metric under the task's own
    key (`top1`, `map50`): taken from there."""
    task = task or tasks.get(r.get("task"))
    out = {"task": task.name, "metric": r.get("metric") or task.metric,
           "value": r.get("value", r.get(task.metric_key)),
           "float_value": r.get("float_value", r.get(f"float_{task.metric_key}"))}
    for k in task.details:
        out[k], out[f"float_{k}"] = r.get(k), r.get(f"float_{k}")
    return out


def slow_int8_notes(rows: list[dict]) -> list[str]:
    """For each model and device where int8 is slower than float32: why, from the bench's delegation."""
    notes = []
    f32 = {(r["model"], r["device"]): r for r in rows if r["precision"] == "float32" and r.get("p50_ms")}
    for r in rows:
        base = f32.get((r["model"], r["device"]))
        if r["precision"] != "int8" or not r.get("p50_ms") or base is None or r["p50_ms"] <= base["p50_ms"]:
            continue
        head = (f"int8 is slower than float32 for {r['model']} on {r['device']} (p50 {r['p50_ms']:.3f} vs "
                f"{base['p50_ms']:.3f} ms): ")
        outside = r.get("ops_outside") or []
        if (r.get("partitions") or 0) > 1 and outside:
            why = "; ".join(f"{o['op']}x{o['count']} outside the CPU delegate ({o.get('reason', '?')}"
                            + (f"; `edgecnn convert` rewrites it: pass {o['rewrite']}" if o.get("rewrite") else "")
                            + ")" for o in outside)
            notes.append(head + f"{r['partitions']} delegate partitions: {why}")
        else:
            notes.append(head + f"it runs whole on the CPU delegate ({r.get('partitions')} partition"
                         + (f", {outside[0]['op']} last" if outside else "") + "), so the cost is the int8 "
                         "kernels themselves, not a fallback: on this CPU XNNPACK's float kernels beat its int8 ones "
                         "for this model (small layers, few channels); int8 pays off on ARM boards and integer "
                         "accelerators: bench it there")
    return notes


def config_key(h: dict) -> tuple:
    """What makes two stored benches the same configuration: the model's file name and the device."""
    return Path(h.get("model_path") or "?").name, h.get("device")


def split_model_name(path: str | None) -> tuple[str, str]:
    """`runs/x/lenet5_int8.tflite` -> ("lenet5", "int8"): how `edgecnn run` names its files; else (stem, "?")."""
    stem = Path(path or "unknown").stem
    for p in PRECISIONS:
        if stem.endswith("_" + p):
            return stem[: -len(p) - 1], p
    return stem, "?"


def _history(db_path: Path) -> list[dict]:
    from edgecnn.store.db import open_db
    from edgecnn.store.history import compare

    with open_db(db_path, write=False) as db:
        try:
            runs = db.runs()
        except EdgecnnError as exc:
            if "no such table" in str(exc):
                return []
            raise
    return compare(runs)


def load_db(db_path: Path) -> ReportData:
    """The table from the newest bench of each model file name x device (a file re-made under the same name is the
    same configuration, measured again); accuracy only where a bench measured it (`bench --data`)."""
    history = _history(Path(db_path))
    if not history:
        raise EdgecnnError(f"{db_path}: no bench runs recorded yet (`edgecnn bench MODEL` or `edgecnn run` "
                           "records them)")
    latest: dict[tuple, dict] = {}
    for h in history:  # oldest first, so the newest bench of each file name on each device wins
        latest[config_key(h)] = h
    rows = [_row_from_db(h) for h in latest.values()]
    floats = {(r["model"], r["device"]): r for r in rows if r["precision"] == "float32"}
    for r in rows:  # size ratio and accuracy drop against the float32 file of the same model, when benched
        ref = floats.get((r["model"], r["device"]))
        if ref and ref["size_bytes"] and r["size_bytes"]:
            r["size_ratio"] = r["size_bytes"] / ref["size_bytes"]
        if ref and ref["task"] == r["task"] and ref["value"] is not None and r["value"] is not None:
            r.update(float_value=ref["value"], drop_points=100 * (ref["value"] - r["value"]),
                     **{f"float_{k}": ref.get(k) for k in tasks.get(r["task"]).details})
    return ReportData(title=f"results database {Path(db_path).name}", kind="db", source=str(db_path),
                      created_at=history[-1].get("created_at"), rows=_sorted(rows), history=history)


def stored_task(h: dict):
    """The task of a stored bench: the one whose metric its accuracy was measured in (`accuracy_metric`, e.g.
    "mAP@.5"); a bench that measured none (or one stored before that column existed): the default task."""
    for name in tasks.names():
        if tasks.get(name).metric == h.get("accuracy_metric"):
            return tasks.get(name)
    return tasks.get(h.get("task"))


def _row_from_db(h: dict) -> dict:
    """A report row from a stored bench, its value the task's metric column (`top1`, a detector's `map50`), as in a
    run directory's summary."""
    model, precision = split_model_name(h.get("model_path"))
    ok = h.get("status") == "ok"
    task = stored_task(h)
    timing = {k: h.get(k) for k in _TIMING_KEYS} if ok else None
    return {"model": model, "precision": precision, "device": h.get("device") or "?", "path": h.get("model_path"),
            "size_bytes": h.get("model_size"), "size_ratio": None, "drop_points": None,
            "p50_ms": h.get("p50_ms") if ok else None, "p90_ms": h.get("p90_ms") if ok else None,
            "peak_rss_mb": h.get("peak_rss_mb") if ok else None, "partitions": h.get("partitions") if ok else None,
            "emulated": bool(h.get("emulated")), "status": "ok" if ok else "failed",
            "error": None if ok else (h.get("error") or "unknown error"), "run_id": h.get("id"), "per_class": None,
            "timing": timing, "created_at": h.get("created_at"),
            "postprocess_p50_ms": h.get("postprocess_p50_ms") if ok else None,
            **task_fields(h, task)}


def _sorted(rows: list[dict]) -> list[dict]:
    """By model, then precision (widest first), then device in the order the recipe (or database) names them."""
    devices = list(dict.fromkeys(r["device"] for r in rows))

    def key(r):
        p = r["precision"]
        return (r["model"], PRECISIONS.index(p) if p in PRECISIONS else len(PRECISIONS), p, devices.index(r["device"]))

    return sorted(rows, key=key)


def config_label(r: dict) -> str:
    """One configuration in a plot or a table: `lenet5 · int8 · local-cpu`."""
    return f"{r['model']} · {r['precision']} · {r['device']}" + (" (emulated)" if r.get("emulated") else "")
