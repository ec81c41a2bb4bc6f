"""Bench one model on several devices at once (`edgecnn bench MODEL --device A --device B ...`).

Each device runs in its own thread (boards over SSH, the local CPU as a subprocess); every result, ok or failed,
is handed to `on_result` (the CLI records it) in the calling thread as soon as it arrives. Ctrl-C stops every run
still going (the runner on each board is interrupted), records each as a failed "interrupted" run, and re-raises.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable



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
