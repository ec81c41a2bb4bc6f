"""Bench one model on several devices at once (`edgecnn bench MODEL --device A --device B ...`).

Each device runs in its own thread (boards over SSH, the local CPU as a subprocess); every result, ok or failed,
is handed to `on_result` (the CLI records it) in the calling thread as soon as it arrives. Ctrl-C stops every run
still going (the runner on each board is interrupted), records each as a failed "interrupted" run, and re-raises.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

from rich.table import Table


def bench_devices(model: str, profiles: list, settings_for: Callable, data: str | None, limit: int,
                  on_result: Callable[[dict], None]) -> list[dict]:
    """`bench_model` on every profile in parallel; returns the documents in the order of `profiles`."""
    from edgecnn.bench import remote
    from edgecnn.bench.protocol import failed_doc
    from edgecnn.bench.run import bench_model

    remote.CANCEL_ALL.clear()
    docs: list[dict | None] = [None] * len(profiles)
    pool = ThreadPoolExecutor(max_workers=len(profiles), thread_name_prefix="edgecnn-bench")
    futures = {pool.submit(bench_model, model, p, settings_for(p), data, limit): i for i, p in enumerate(profiles)}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                i = futures[f]
                docs[i] = f.result()
                on_result(docs[i])
    except KeyboardInterrupt:
        remote.cancel_all()
        wait(pending, timeout=60)
        for f in pending:
            i = futures[f]
            if f.done() and f.exception() is None:
                docs[i] = f.result()
            else:
                docs[i] = failed_doc("interrupted", model, settings_for(profiles[i]))
                docs[i]["device"] = {"name": profiles[i].name, "kind": profiles[i].kind,
                                     "emulated": profiles[i].emulated}
            docs[i]["interrupted"] = True
            on_result(docs[i])
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return docs


def devices_table(docs: list[dict]) -> Table:
    """One row per device: status, latency, top-1, runtime, CPU; emulated boards say so in the device column."""
    from edgecnn.bench.table import device_label

    t = Table(title=f"bench {(docs[0].get('model') or {}).get('path', '')}" if docs else "bench")
    for col in ("device", "status", "p50 ms", "mean ms", "top-1", "runtime", "cpu / error"):
        t.add_column(col, justify="right" if "ms" in col or col == "top-1" else "left")
    for d in docs:
        dev = d.get("device") or {}
        steady = (d.get("timing") or {}).get("steady") or {}
        acc = (d.get("accuracy") or {}).get("top1")
        rt = d.get("runtime") or {}
        ok = d.get("status") == "ok"
        t.add_row(device_label(dev.get("name"), dev.get("emulated")),
                  "ok" if ok else "FAILED",
                  f"{steady['p50_ms']:.3f}" if ok and steady.get("p50_ms") is not None else "-",
                  f"{steady['mean_ms']:.3f}" if ok and steady.get("mean_ms") is not None else "-",
                  "-" if acc is None else f"{acc:.4f}",
                  f"{rt.get('name', '')} {rt.get('version', '')}".strip() or "-",
                  ((d.get("machine") or {}).get("cpu_model", "") + f" ({(d.get('machine') or {}).get('arch', '')})")
                  if ok else str(d.get("error", ""))[:120])
    return t
