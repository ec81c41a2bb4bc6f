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
   Before that, where the target runs int16 (the CPU, TFLite Micro; not the Edge TPU), int16 comes first: the
   worst 1, 2, 4, ... ranked tensors int16 end to end, the rest int8 (`_int16_search`; a precision plan built by
   ai-edge-quantizer, `convert/precision.py`), so that a model that must stay integer-only (TFLM, NPUs) can still
   recover accuracy; the plan found is written beside the model (`X.precision.yaml`, reusable as
   `--precision X.precision.yaml`). Only when int16 cannot reach the limit do layers go to float;
4. re-quantize (no recalibration: the MLIR quantize pass is re-run with those nodes denylisted) with the worst
   1, 2, 4, 8, ... layers in float, until the drop is within the limit;
5. report the layers kept, every step tried, the floor, and what keeping them costs in size and latency.
Nothing is written when the limit cannot be reached. Without labels (`--eval-data` a flat image folder) the
metric is the task's agreement with the float model's predictions (float: 1.0), as `edgecnn compare` measures it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.targets import get as get_target

# the epochs `edgecnn train --qat` is suggested with (at lr 1e-4), by weight granularity (benchmarks/qat.py): 2 epochs
# took every per-channel model there to within a point of its float, most above it (the run at fd9a198: MobileNetV2
# 0.35 0.70 points below, the others 0.33 to 1.75 above); a per-tensor model that post-training int8 collapses needs
# more (measured choosing that benchmark's settings: a pretrained MobileNetV2 1.0 on Fashion-MNIST, per tensor, int8
# top-1 0.15 post-training, 0.75 after 2 QAT epochs, 0.85 after 5, against 0.88 float; measured before per-tensor
# conversion and QAT zeroed the weights behind dead channels, convert/dead_inputs.py, which took it to 0.764 and 0.89)
QAT_EPOCHS = {"per-channel": 2, "per-tensor": 5}


class UnreachableDrop(EdgecnnError):
    """The limit is below what int8 loses with every ranked layer in float; `floor_points` is the smallest limit
    known to be reachable."""

    def __init__(self, message: str, floor_points: float):
        super().__init__(message)
        self.floor_points = floor_points


class EvalSet:
    """The evaluation data of a guided conversion, as the model's task scores it: with labels, the task's metric;
    without (a flat image folder), the task's agreement with the float model's predictions (`Task.agreement`: the
    same class, the float boxes found again), float being 1.0 by definition."""

    def __init__(self, model_path, spec, src: str, limit: int | None):
        from edgecnn import tasks
        from edgecnn.evaluate.accuracy import test_split

        self.task, ctx = tasks.for_model(spec, model_path)
        ds = test_split(src, spec, limit, None, self.task.name, model_path)
        self.labeled = ds.labeled
        self.x, self.names, self.n = spec.apply(ds.images), self.task.class_names(ds), len(ds)
        self.truth = self.task.truth(ds) if ds.labeled else None
        self.ctx = {**ctx, "model": str(model_path), **self.task.sample_info(ds)}
        self.metric = self.task.metric if ds.labeled else f"{self.task.name} agreement with float"
        self.metric_key = self.task.metric_key if ds.labeled else "agreement"
        self.reference = None  # without labels: the float model's predictions, set by its first measurement


def _metric(model: bytes, ev: EvalSet) -> float:
    """The metric (0..1, higher is better) of a .tflite on the evaluation set; without labels the first model
    measured is the float one, the reference of the others."""
    from edgecnn.evaluate.predict import predict_tflite_outputs

    preds = ev.task.postprocess(predict_tflite_outputs(model, ev.x), ev.ctx)
    if ev.labeled:
        return float(ev.task.score(preds, ev.truth, ev.names, ev.ctx)["value"])
    if ev.reference is None:
        ev.reference = preds
        return 1.0
    agreement = ev.task.agreement(ev.reference, preds, ev.ctx, ev.ctx)
    if agreement is None:
        raise EdgecnnError(f"the float model predicts nothing on the {ev.n} evaluation samples to agree with: give "
                           "--eval-data with labels, or images it finds something in")
    return float(agreement)


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
    if req.quality != "default":
        raise EdgecnnError("--quality auto and --max-accuracy-drop: the guided mode does not choose the options yet; "
                           "convert with --quality auto, then give guided mode the options it chose")
    if max_drop_points < 0:
        raise EdgecnnError(f"--max-accuracy-drop must be >= 0 points, got {max_drop_points}")
    out_path = check_output(out_path)
    prep = Prepared(model_path, req, verbose)
    prep.calibrate()
    ev = EvalSet(model_path, prep.spec, eval_data, eval_limit)
    x, metric = ev.x, ev.metric
    f1 = _metric(prep.original_f32, ev)  # the model as given (--equalize, dead_inputs.py: not on unseen inputs)
    full = prep.quantized()
    q1 = _metric(full, ev)
    steps = [{"kept": 0, "nodes": [], "value": q1, ev.metric_key: q1, "drop_points": 100 * (f1 - q1),
              "size_bytes": len(full)}]
    log(f"float {metric} {f1:.4f}; int8 {metric} {q1:.4f} (drop {100 * (f1 - q1):.2f} pts, limit {max_drop_points})")
    best, best_nodes, floor, int16 = full, [], None, None
    if 100 * (f1 - q1) > max_drop_points:
        ranked = [r for r in layer_errors(prep.f32, full, x, max_samples=32)
                  if r["op"] not in ("SOFTMAX", "RESHAPE", "LOGISTIC") and r["index"] not in
                  {o for op in prep.f32_info.ops for o in op.outputs if op.op == "SOFTMAX"}]
        ranked.sort(key=lambda r: -r["relative_rmse"])
        names = [r["float_tensor"] for r in ranked]  # the float graph's names (an int8 op fused "act;add" has one)
        int16 = _int16_search(prep, names, ev, f1, max_drop_points, log, max_steps)
        if int16.get("reached"):
            best = int16.pop("model")
    if int16 is not None and not int16.get("reached") and "float" not in get_target(req.target).precisions:
        raise UnreachableDrop(
            f"{model_path}: cannot reach a {metric} drop of {max_drop_points} pts on --target {req.target}, which "
            f"{get_target(req.target).precision_rule}: int16 "
            + (f"on every ranked layer loses {int16['steps'][0]['drop_points']:.2f} pts" if int16.get("steps") else
               f"was not possible ({int16.get('why') or int16.get('failed') or 'no plan'})")
            + " and no layer may stay in float", 100 * (f1 - q1))
    if int16 is not None and not int16.get("reached"):
        floor = _floor(prep, names, ev, f1, 100 * (f1 - q1), max_drop_points, model_path)
        log(f"  every ranked layer ({len(names)}) in float: drop {floor['drop_points']:.2f} pts (what guided mode "
            "can reach at best)")
        k = 1
        while True:
            nodes = names[:k]
            data = prep.quantized(nodes=nodes)
            value = _metric(data, ev)
            steps.append({"kept": len(nodes), "nodes": nodes, "value": value, ev.metric_key: value,
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
    if int16 and int16.get("reached"):
        prep.req, prep.plan = int16.pop("request"), int16.pop("assigned")  # the written model's plan, reported
    report = prep.finish(best, out_path, extra_nodes=best_nodes)
    if int16 and int16.get("reached"):  # beside the model: `--precision FILE` makes the same model again
        from edgecnn.atomic import write_text_atomic

        int16["plan_file"] = str(write_text_atomic(Path(out_path).with_suffix(".precision.yaml"),
                                                   prep.req.precision.to_yaml()))
    t = time.perf_counter()
    lat_int8, lat_best, lat_f32 = _latency_ms(full), _latency_ms(best), _latency_ms(prep.f32)
    final = int16["value"] if int16 and int16.get("reached") else steps[-1]["value"] if best_nodes else q1
    report["guided"] = {
        "max_drop_points": max_drop_points, "eval_data": eval_data, "eval_n": ev.n, "labeled": ev.labeled,
        "task": ev.task.name, "metric": metric,
        "float_value": f1, "int8_value": q1, "final_value": final,
        # the same under the metric's own key (float_top1, ... for a classifier, as before the task table)
        f"float_{ev.metric_key}": f1, f"int8_{ev.metric_key}": q1, f"final_{ev.metric_key}": final,
        "final_drop_points": 100 * (f1 - final),
        "int16": int16, "kept_in_float": best_nodes, "steps": steps, "floor": floor,
        "cost": {"size_bytes_full_int8": len(full), "size_bytes_guided": len(best),
                 "size_increase_bytes": len(best) - len(full),
                 "p50_ms_float32": lat_f32, "p50_ms_full_int8": lat_int8, "p50_ms_guided": lat_best,
                 "latency_measured_by": "edgecnn board runner, 1 thread, XNNPACK, 30 runs"},
    }
    report["timings_s"]["latency_cost_s"] = round(time.perf_counter() - t, 3)
    return report


def _int16_search(prep, names: list[str], ev: EvalSet, f1: float, max_drop_points: float, log,
                  max_steps: int) -> dict:
    """int16 before float: the worst 1, 2, 4, ... ranked tensors int16 end to end (`precision.covering`: producer
    and readers, none where the target has no int16 kernel), until the drop is within the limit. Tried first with
    every ranked tensor: when even that misses the limit, no step is tried. Skipped (said why) where the target
    runs no int16 (the Edge TPU) or ai-edge-quantizer, which builds mixed models, is not installed. On success the
    dict carries the model, the request with the plan and the plan as matched (`model`, `request`, `assigned`)."""
    import dataclasses

    from edgecnn.convert import mixed, precision
    from edgecnn.tflite.reader import TfliteInfo

    target = get_target(prep.req.target)
    if "int16" not in target.precisions:
        return {"tried": False, "why": f"--target {target.name} {target.precision_rule}"}
    if not mixed.available():
        return {"tried": False, "why": "ai-edge-quantizer is not installed (pip install 'edgecnn[precision]')"}
    why = ("a --precision plan was given" if prep.req.precision is not None else
           "no ranked layer" if not names else
           f"--io {prep.req.io_type}: a mixed model has int8 or float32 inputs/outputs"
           if prep.req.io_type not in ("int8", "float32") else
           f"ops kept in float ({', '.join(prep.kept_ops + prep.kept_nodes)})" if prep.kept_ops or prep.kept_nodes
           else None)
    if why:
        return {"tried": False, "why": why}
    req, result, seen = prep.req, {"tried": True, "steps": []}, {}

    def attempt(k: int) -> tuple[bool, tuple | None]:
        plan = precision.covering(prep.f32_info, names[:k], req.target)
        if plan is None or plan.rules in seen:  # nothing to put in int16, or the same plan as a smaller k
            return (False, None) if plan is None else seen[plan.rules]
        prep.req, prep.plan = dataclasses.replace(req, precision=plan), None
        try:
            data = prep.quantized()
            info = TfliteInfo(data)
            precision.check_target([(r["op"], r["output"], r["precision"]) for r in
                                    precision.read_back(info, *prep.plan)["ops"]], req.target, "int16 plan")
            left = [op.op for op in info.float_ops()]
            if left:
                raise EdgecnnError(f"ops left in float: {', '.join(left)}")
        except EdgecnnError as exc:  # the quantizer could not build it: float is tried instead
            result["failed"] = f"{len(plan.rules)} int16 ops: {exc}"
            seen[plan.rules] = (False, None)
            return False, None
        value = _metric(data, ev)
        result["steps"].append({"ranked": k, "int16_ops": len(plan.rules), "value": value,
                                "drop_points": 100 * (f1 - value), "size_bytes": len(data)})
        log(f"  worst {k} layer(s) int16 ({len(plan.rules)} ops): {ev.metric} {value:.4f} "
            f"(drop {100 * (f1 - value):.2f} pts)")
        seen[plan.rules] = (100 * (f1 - value) <= max_drop_points, (data, prep.req, prep.plan, value))
        return seen[plan.rules]

    try:
        reached, everything = attempt(len(names))  # the int16 floor: no step can do better than all of them
        k = 1
        while reached:
            ok, found = attempt(k) if k < len(names) else (True, everything)
            if ok or len(result["steps"]) >= max_steps:
                found = found if ok else everything
                data, result["request"], result["assigned"], result["value"] = found
                result.update(reached=True, model=data, layers=names[:k] if ok else names,
                              int16_ops=len(result["request"].precision.rules))
                break
            k = min(2 * k, len(names))
    finally:
        prep.req, prep.plan = req, None
    result.setdefault("reached", False)
    return result


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
    floor = {"layers_in_float": len(names), "value": value, ev.metric_key: value,
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
        f"{model_path}: cannot reach a {ev.metric} drop of {max_drop_points} pts: with every ranked layer "
        f"({len(names)}) in "
        f"float the model still loses {floor['drop_points']:.2f} pts, which keeping layers in float cannot give back "
        f"(what stays integer then: {', '.join(f'{k}x{v}' for k, v in still_int.items()) or 'nothing'}, and the "
        f"{prep.req.io_type} input/output){io_note}; full int8 loses {full_drop:.2f}: use a limit "
        f">= {reachable:.2f}" + (" or --io float32" if floor.get("float_io_drop_points", 1e9) <=
                                  max_drop_points else "") + _qat_hint(prep, ev),
        reachable)


def _qat_hint(prep, ev: EvalSet) -> str:
    """Where post-training int8 cannot reach the limit, the way on: training through the int8 simulation (a Keras
    model and labeled data to train on; one already trained with --qat has had it)."""
    if (prep.model is None or not ev.labeled or prep.qat is not None or Path(prep.model_path).suffix != ".keras"
            or not prep.task[0].qat):
        return ""
    flag = " --per-tensor" if prep.req.per_tensor else ""
    epochs = QAT_EPOCHS["per-tensor" if prep.req.per_tensor else "per-channel"]
    return (f", or fine-tune it through the int8 simulation, which post-training int8 cannot match: `edgecnn train "
            f"{prep.model_path} --data DATA --qat{flag} --epochs {epochs} --lr 1e-4 -o qat.keras`, then convert "
            f"qat.keras" + (" with" + flag if flag else ""))
