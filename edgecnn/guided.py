"""Accuracy-guided int8 (an orchestrator over convert, evaluate and bench, so it sits on top like pipeline.py):

After OpenVINO NNCF's `quantize_with_accuracy_control` (max_drop), which has no TFLite counterpart:
1. calibrate once; quantize everything; measure float and int8 top-1 on the evaluation data;
2. rank the quantized layers by how much they depart from float (relative RMSE of the dequantized activation
   against the float one, on a few samples — see evaluate/layer_error.py);
3. re-quantize (no recalibration: the MLIR quantize pass is re-run with those nodes denylisted) with the worst
   1, 2, 4, 8, ... layers in float, until the drop is within the limit;
4. report the layers kept, every step tried, and what keeping them costs in size and latency.
If even every ranked layer in float does not bring the drop within the limit, it says so (and writes nothing).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError


def _top1(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from edgecnn.evaluate.predict import predict_tflite

    return float(np.mean(predict_tflite(model, x).argmax(1) == y))


def _latency_ms(model: bytes, runs: int = 30) -> float | None:
    """Median latency (1 thread, XNNPACK) by the same board runner `edgecnn bench` uses; None if unavailable."""
    import tempfile

    from edgecnn.bench.local import run_local
    from edgecnn.bench.protocol import BenchSettings

    with tempfile.NamedTemporaryFile(suffix=".tflite") as fh:
        fh.write(model)
        fh.flush()
        doc = run_local(fh.name, BenchSettings(threads=1, warmup=5, runs=runs))
    return doc["timing"]["steady"]["p50_ms"] if doc.get("status") == "ok" else None


def guided_convert(model_path: str | Path, out_path: str | Path, req: ConversionRequest, max_drop_points: float,
                   eval_data: str, eval_limit: int | None = 2000, verbose: bool = False,
                   log: Callable[[str], None] = lambda s: None, max_steps: int = 8) -> dict:
    from edgecnn.convert.converter import Prepared, check_output
    from edgecnn.evaluate.accuracy import eval_arrays
    from edgecnn.evaluate.layer_error import layer_errors

    if req.mode != "int8":
        raise EdgecnnError("--max-accuracy-drop works with --quant int8")
    if max_drop_points < 0:
        raise EdgecnnError(f"--max-accuracy-drop must be >= 0 points, got {max_drop_points}")
    out_path = check_output(out_path)
    prep = Prepared(model_path, req, verbose)
    prep.calibrate()
    x, y, _ = eval_arrays(eval_data, prep.spec, eval_limit, "--max-accuracy-drop")
    f1 = _top1(prep.f32, x, y)
    full = prep.quantized()
    q1 = _top1(full, x, y)
    steps = [{"kept": 0, "nodes": [], "top1": q1, "drop_points": 100 * (f1 - q1), "size_bytes": len(full)}]
    log(f"float top-1 {f1:.4f}; int8 top-1 {q1:.4f} (drop {100 * (f1 - q1):.2f} pts, limit {max_drop_points})")
    best, best_nodes = full, []
    if 100 * (f1 - q1) > max_drop_points:
        ranked = [r for r in layer_errors(prep.f32, full, x, max_samples=32)
                  if r["op"] not in ("SOFTMAX", "RESHAPE", "LOGISTIC") and r["index"] not in
                  {o for op in prep.f32_info.ops for o in op.outputs if op.op == "SOFTMAX"}]
        ranked.sort(key=lambda r: -r["relative_rmse"])
        names = [r["tensor"] for r in ranked]
        k = 1
        while True:
            nodes = names[:k]
            data = prep.quantized(nodes=nodes)
            top1 = _top1(data, x, y)
            steps.append({"kept": len(nodes), "nodes": nodes, "top1": top1, "drop_points": 100 * (f1 - top1),
                          "size_bytes": len(data)})
            log(f"  {len(nodes)} layer(s) in float: top-1 {top1:.4f} (drop {100 * (f1 - top1):.2f} pts)")
            if 100 * (f1 - top1) <= max_drop_points:
                best, best_nodes = data, nodes
                break
            if k >= len(names) or len(steps) > max_steps:
                closest = min(steps, key=lambda s: s["drop_points"])
                raise EdgecnnError(
                    f"{model_path}: cannot reach a drop of {max_drop_points} pts: the best was "
                    f"{closest['drop_points']:.2f} pts with {closest['kept']} layer(s) in float "
                    f"(of {len(names)} ranked); the loss is spread over many layers — try more/better calibration "
                    "data, per-channel weights, or a quantization-friendly architecture (e.g. minimalistic V3)")
            k = min(2 * k, len(names))
    report = prep.finish(best, out_path, extra_nodes=best_nodes)
    t = time.perf_counter()
    lat_int8, lat_best, lat_f32 = _latency_ms(full), _latency_ms(best), _latency_ms(prep.f32)
    report["guided"] = {
        "max_drop_points": max_drop_points, "eval_data": eval_data, "eval_n": int(len(y)),
        "float_top1": f1, "int8_top1": q1, "final_top1": steps[-1]["top1"] if best_nodes else q1,
        "final_drop_points": 100 * (f1 - (steps[-1]["top1"] if best_nodes else q1)),
        "kept_in_float": best_nodes, "steps": steps,
        "cost": {"size_bytes_full_int8": len(full), "size_bytes_guided": len(best),
                 "size_increase_bytes": len(best) - len(full),
                 "p50_ms_float32": lat_f32, "p50_ms_full_int8": lat_int8, "p50_ms_guided": lat_best,
                 "latency_measured_by": "edgecnn board runner, 1 thread, XNNPACK, 30 runs"},
    }
    report["timings_s"]["latency_cost_s"] = round(time.perf_counter() - t, 3)
    return report
