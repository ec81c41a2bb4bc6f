"""The report table as text cells, shared by the HTML and Markdown renderers so both say the same thing.

A failed bench (a device that was down) keeps its size and accuracy cells, which do not depend on the device, and
its measurement cells become one `failed: <error>` cell: the reader sees which device failed and why, and every
other row is unaffected.
"""

from __future__ import annotations

from edgecnn import tasks
from edgecnn.report.load import ReportData

MEASURED = ("p50 ms", "p90 ms", "peak RSS MB", "partitions")  # the cells a failed bench cannot fill


def columns(data: ReportData) -> list[str]:
    cols = ["model", "precision", "device", "size", "× f32"]
    if data.has_accuracy:
        cols += [data.metric, "drop (pts)"]
    return cols + list(MEASURED) + (["post-proc p50 ms"] if data.has_postprocess else [])


def cells(row: dict, data: ReportData) -> list[str] | tuple[list[str], str]:
    """The row's cells; for a failed bench, (the cells before the measurements, the error text)."""
    device = row["device"] + (" (emulated)" if row.get("emulated") else "")
    out = [row["model"], row["precision"], device, _size(row.get("size_bytes")), _num(row.get("size_ratio"), "{:.2f}×")]
    if data.has_accuracy:
        drop = "ref" if row["precision"] == "float32" else _num(row.get("drop_points"), "{:+.2f}")
        out += [metric_cell(row), drop]
    if row["status"] != "ok":
        return out, f"failed: {row.get('error') or 'unknown error'}"
    return out + [_num(row.get("p50_ms"), "{:.3f}"), _num(row.get("p90_ms"), "{:.3f}"),
                  _num(row.get("peak_rss_mb"), "{:.1f}"), _num(row.get("partitions"), "{}")] + \
        ([_num(row.get("postprocess_p50_ms"), "{:.3f}")] if data.has_postprocess else [])


def metric_cell(row: dict) -> str:
    """The row's metric value as its task writes it (`Task.cell`: top-1 98.12%, mAP@.5 0.512)."""
    return "–" if row.get("value") is None else tasks.get(row["task"]).cell(row["value"])


def _num(v, fmt: str) -> str:
    return "–" if v is None else fmt.format(v)


def _size(n) -> str:
    if n is None:
        return "–"
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.2f} MiB"
