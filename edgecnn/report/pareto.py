"""The accuracy-vs-latency Pareto front: the configurations worth choosing between.

A configuration is on the front when no other one on the same device is at least as fast and at least as accurate
and strictly better in one of the two. Everything off the front is beaten outright, so a reader can ignore it.
Devices are never mixed: a float model on a desktop CPU does not make an int8 model on a Pi obsolete.
"""

from __future__ import annotations


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (latency, accuracy) points, fastest first. Lower latency and higher accuracy
    are better; equal points are all kept (neither beats the other)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_acc = float("-inf")
    best_at_lat: tuple[float, float] | None = None  # the point that set best_acc
    for i in order:
        lat, acc = points[i]
        if acc > best_acc:
            front.append(i)
            best_acc, best_at_lat = acc, (lat, acc)
        elif (lat, acc) == best_at_lat:  # an exact duplicate of a front point
            front.append(i)
    return front


def front_rows(rows: list[dict]) -> set[int]:
    """Indices into `rows` (ok, with a metric `value` (top-1, mAP@.5...) and p50) on their device's front."""
    on_front: set[int] = set()
    for device in dict.fromkeys(r["device"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["device"] == device and r["status"] == "ok"
               and r.get("value") is not None and r.get("p50_ms") is not None]
        pts = [(rows[i]["p50_ms"], rows[i]["value"]) for i in idx]
        on_front.update(idx[j] for j in pareto_front(pts))
    return on_front
