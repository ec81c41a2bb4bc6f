"""Compare stored runs: each ok run against the previous comparable one, flagging latency regressions.

Comparable = same model hash, device, threads and XNNPACK setting (anything else changes the number on purpose).

The rule: a run's spread is `max(std_ms, p90_ms - p50_ms)` — how much the run disagrees with itself.
- p50 regression: `new.p50 - prev.p50 > max(spread(new), spread(prev))`.
- p90 regression: `new.p90 - prev.p90 > max(spread(prev), new.std)` — the new run's p90 - p50 is left out, since
  a wider tail is exactly what a p90 regression is (with it, p90 could only be flagged once p50 had moved too).
A slower number inside the runs' own noise is not flagged; one beyond it is. Failed runs are listed, never compared.
"""

from __future__ import annotations


def spread(row: dict) -> float:
    """How much a run disagrees with itself, in ms."""
    std = row.get("std_ms") or 0.0
    tail = (row.get("p90_ms") or 0.0) - (row.get("p50_ms") or 0.0)
    return max(std, tail, 0.0)


def comparable_key(row: dict) -> tuple:
    return (row.get("model_sha256"), row.get("device"), row.get("threads"), row.get("xnnpack"))


def compare(rows: list[dict]) -> list[dict]:
    """Return `rows` (oldest first) each with `prev_id`, `delta_p50_pct`, `delta_p90_pct` and `regressions`."""
    last_ok: dict[tuple, dict] = {}
    out = []
    for row in rows:
        row = dict(row, prev_id=None, delta_p50_pct=None, delta_p90_pct=None, regressions=[])
        if row.get("status") == "ok" and row.get("p50_ms") is not None:
            key = comparable_key(row)
            prev = last_ok.get(key)
            if prev is not None:
                row["prev_id"] = prev["id"]
                allowed = {"p50_ms": max(spread(row), spread(prev)),
                           "p90_ms": max(spread(prev), row.get("std_ms") or 0.0)}
                for metric in ("p50_ms", "p90_ms"):
                    new, old = row.get(metric), prev.get(metric)
                    if new is None or old is None:
                        continue
                    if old:
                        row[f"delta_{metric[:3]}_pct"] = round(100.0 * (new - old) / old, 2)
                    if new - old > allowed[metric]:
                        row["regressions"].append(metric[:3])
            last_ok[key] = row
        out.append(row)
    return out
