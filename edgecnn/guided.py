"""Accuracy-guided int8 (an orchestrator over convert, evaluate and bench, so it sits on top like pipeline.py):

After OpenVINO NNCF's `quantize_with_accuracy_control` (max_drop), which has no TFLite counterpart. The accuracy is
the model's task metric (`edgecnn.tasks`: top-1 for a classifier, COCO mAP@.5 for a detector), in points:
1. calibrate once; quantize everything; measure the float and int8 metric on the evaluation data;
2. rank the quantized layers by how much they depart from float (relative RMSE of the dequantized activation
   against the float one, on a few samples — see evaluate/layer_error.py);
3. know what it cannot give back before searching: quantize once with *every* ranked layer in float. What that
   model still loses comes from what guided mode does not rank — the int8 input and output tensors (`--io int8`
   quantizes the softmax output to 256 levels, so close scores tie and top-1 can flip) and the ops left out of
   the ranking (SOFTMAX, RESHAPE, LOGISTIC), which stay integer. If that floor is above the limit, it stops there
   with one line giving the floor, the ops still integer, what the same model loses with float IO, and the way
   out (a limit >= the floor; `--io float32` when that alone is enough). Measured on MobileNetV3-Small trained 5
   epochs on digits: a 0.56-point floor, all of it from RESHAPEx3 + SOFTMAX (float IO changed nothing);
4. re-quantize (no recalibration: the MLIR quantize pass is re-run with those nodes denylisted) with the worst
   1, 2, 4, 8, ... layers in float, until the drop is within the limit;
5. report the layers kept, every step tried, the floor, and what keeping them costs in size and latency.
Nothing is written when the limit cannot be reached.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError


class UnreachableDrop(EdgecnnError):
    """The limit is below what int8 loses with every ranked layer in float; `floor_points` is the smallest limit
    known to be reachable."""

    def __init__(self, message: str, floor_points: float):
        super().__init__(message)
        self.floor_points = floor_points


class EvalSet:
    """The evaluation data of a guided conversion, as the model's task scores it."""

    def __init__(self, model_path, spec, src: str, limit: int | None):
        from edgecnn import tasks
        from edgecnn.evaluate.accuracy import test_split

        self.task, ctx = tasks.for_model(spec, model_path)
        ds = test_split(src, spec, limit, "--max-accuracy-drop", self.task.name, model_path)
        self.x, self.truth, self.names, self.n = spec.apply(ds.images), self.task.truth(ds), self.task.class_names(ds), len(ds)
        self.ctx = {**ctx, "model": str(model_path), **self.task.sample_info(ds)}


def _metric(model: bytes, ev: EvalSet) -> float:
    """The task's metric (0..1, higher is better) of a .tflite on the evaluation set."""
    from edgecnn.evaluate.predict import predict_tflite_outputs

    preds = ev.task.postprocess(predict_tflite_outputs(model, ev.x), ev.ctx)
    return float(ev.task.score(preds, ev.truth, ev.names, ev.ctx)["value"])


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
    from edgecnn.evaluate.layer_error import layer_errors

    if req.mode != "int8":
        raise EdgecnnError("--max-accuracy-drop works with --quant int8")
    if max_drop_points < 0:
        raise EdgecnnError(f"--max-accuracy-drop must be >= 0 points, got {max_drop_points}")
    out_path = check_output(out_path)
    prep = Prepared(model_path, req, verbose)
    prep.calibrate()
    ev = EvalSet(model_path, prep.spec, eval_data, eval_limit)
    x, metric = ev.x, ev.task.metric
    f1 = _metric(prep.f32, ev)
    full = prep.quantized()
    q1 = _metric(full, ev)
    steps = [{"kept": 0, "nodes": [], "value": q1, ev.task.metric_key: q1, "drop_points": 100 * (f1 - q1),
              "size_bytes": len(full)}]
    log(f"float {metric} {f1:.4f}; int8 {metric} {q1:.4f} (drop {100 * (f1 - q1):.2f} pts, limit {max_drop_points})")
    best, best_nodes, floor = full, [], None
    if 100 * (f1 - q1) > max_drop_points:
        ranked = [r for r in layer_errors(prep.f32, full, x, max_samples=32)
                  if r["op"] not in ("SOFTMAX", "RESHAPE", "LOGISTIC") and r["index"] not in
                  {o for op in prep.f32_info.ops for o in op.outputs if op.op == "SOFTMAX"}]
        ranked.sort(key=lambda r: -r["relative_rmse"])
        names = [r["tensor"] for r in ranked]
        floor = _floor(prep, names, ev, f1, 100 * (f1 - q1), max_drop_points, model_path)
        log(f"  every ranked layer ({len(names)}) in float: drop {floor['drop_points']:.2f} pts (what guided mode "
            "can reach at best)")
        k = 1
        while True:
            nodes = names[:k]
            data = prep.quantized(nodes=nodes)
            value = _metric(data, ev)
            steps.append({"kept": len(nodes), "nodes": nodes, "value": value, ev.task.metric_key: value,
                          "drop_points": 100 * (f1 - value), "size_bytes": len(data)})
            log(f"  {len(nodes)} layer(s) in float: {metric} {value:.4f} (drop {100 * (f1 - value):.2f} pts)")
            if 100 * (f1 - value) <= max_drop_points:
                best, best_nodes = data, nodes
                break
            if k >= len(names):  # not expected: the floor was within the limit
                closest = min(steps, key=lambda s: s["drop_points"])
                raise EdgecnnError(
                    f"{model_path}: cannot reach a drop of {max_drop_points} pts: the best was "
                    f"{closest['drop_points']:.2f} pts with {closest['kept']} layer(s) in float "
                    f"(of {len(names)} ranked); the loss is spread over many layers — try more/better calibration "
                    "data, per-channel weights, or a quantization-friendly architecture (e.g. minimalistic V3)")
            k = len(names) if len(steps) >= max_steps else min(2 * k, len(names))  # the last step: all of them
    report = prep.finish(best, out_path, extra_nodes=best_nodes)
    t = time.perf_counter()
    lat_int8, lat_best, lat_f32 = _latency_ms(full), _latency_ms(best), _latency_ms(prep.f32)
    report["guided"] = {
        "max_drop_points": max_drop_points, "eval_data": eval_data, "eval_n": ev.n,
        "task": ev.task.name, "metric": metric,
        "float_value": f1, "int8_value": q1, "final_value": steps[-1]["value"] if best_nodes else q1,
        # the same under the metric's own key (float_top1, ... for a classifier, as before the task table)
        f"float_{ev.task.metric_key}": f1, f"int8_{ev.task.metric_key}": q1,
        f"final_{ev.task.metric_key}": steps[-1]["value"] if best_nodes else q1,
        "final_drop_points": 100 * (f1 - (steps[-1]["value"] if best_nodes else q1)),
        "kept_in_float": best_nodes, "steps": steps, "floor": floor,
        "cost": {"size_bytes_full_int8": len(full), "size_bytes_guided": len(best),
                 "size_increase_bytes": len(best) - len(full),
                 "p50_ms_float32": lat_f32, "p50_ms_full_int8": lat_int8, "p50_ms_guided": lat_best,
                 "latency_measured_by": "edgecnn board runner, 1 thread, XNNPACK, 30 runs"},
    }
    report["timings_s"]["latency_cost_s"] = round(time.perf_counter() - t, 3)
    return report


def _floor(prep, names: list[str], ev: EvalSet, f1: float, full_drop: float, max_drop_points: float,
           model_path) -> dict:
    """The drop with every ranked layer in float: where keeping layers in float ends up. Raise `UnreachableDrop`
    when it is above the limit, saying what stays integer, how much the int8 input/output accounts for, and the
    smallest limit known to be reachable (this floor, or full int8's drop if that is lower)."""
    import dataclasses
    from collections import Counter

    from edgecnn.convert.converter import quantize_int8
    from edgecnn.tflite.reader import TfliteInfo

    model = prep.quantized(nodes=names)
    value = _metric(model, ev)
    still_int = Counter(op.op for op in TfliteInfo(model).ops if not op.float_compute
                        and op.op not in ("QUANTIZE", "DEQUANTIZE"))
    floor = {"layers_in_float": len(names), "value": value, ev.task.metric_key: value,
             "drop_points": 100 * (f1 - value),
             "ops_still_integer": dict(still_int)}
    if floor["drop_points"] <= max_drop_points:
        return floor
    io_note = ""
    if prep.req.io_type != "float32":
        float_io = dataclasses.replace(prep.req, io="float32")
        t = _metric(quantize_int8(prep.calibrated, float_io, sorted(set(prep.kept_nodes) | set(names)),
                                  prep.kept_ops, prep.verbose), ev)
        floor["float_io_drop_points"] = 100 * (f1 - t)
        io_note = (f"; the same with --io float32 loses {floor['float_io_drop_points']:.2f} pts, so the "
                   f"{prep.req.io_type} input/output accounts for "
                   f"{floor['drop_points'] - floor['float_io_drop_points']:.2f} of them")
    reachable = min(floor["drop_points"], full_drop)
    raise UnreachableDrop(
        f"{model_path}: cannot reach a {ev.task.metric} drop of {max_drop_points} pts: with every ranked layer "
        f"({len(names)}) in "
        f"float the model still loses {floor['drop_points']:.2f} pts, which keeping layers in float cannot give back "
        f"(what stays integer then: {', '.join(f'{k}x{v}' for k, v in still_int.items()) or 'nothing'}, and the "
        f"{prep.req.io_type} input/output){io_note}; full int8 loses {full_drop:.2f}: use a limit "
        f">= {reachable:.2f}" + (" or --io float32" if floor.get("float_io_drop_points", 1e9) <=
                                  max_drop_points else ""),
        reachable)
