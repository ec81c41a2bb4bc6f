"""The ranges quantization-aware training learned, written into the float model in place of calibrated ones.

A model trained with `edgecnn train --qat` (`edgecnn/train/qat.py`) carries `edgecnn_qat.json`: per value the int8
model holds, its range and the float layers whose output it is (a conv, its batch norm and ReLU fused into one op
are listed together, since the converter names the fused tensor after one of them). Each float tensor is matched:
- by the layer scope in its name (the converter's `model/LAYER_1/Op`, the innermost layer first); a layer that
  became several ops gives its range to the last of them;
- else by value: a raw op of the model's code has no layer scope; it takes the range of the layer whose float output
  it equals on two calibration samples;
- the model input takes the input range, and the ops that keep their input's scale (pooling, padding, reshape) pass
  a learned range on.
Those ranges replace the calibrated ones in the `quantization.min/max` the quantize pass reads; what learned
nothing keeps its calibrated range (counted in the report). The weights need nothing: the
trained float weights are the ones the converter folds and quantizes exactly as the training simulated.
"""

from __future__ import annotations

import re

from edgecnn.errors import EdgecnnError

INPUT = "<input>"  # edgecnn.train.qat.INPUT
LINEAR = ".linear"  # edgecnn.train.qat.LINEAR: a layer's output before its own softmax / sigmoid
OWN_ACTIVATION_OPS = ("SOFTMAX", "LOGISTIC")  # the op a layer's own softmax / sigmoid becomes
VALUE_SAMPLES = 2  # samples a tensor is matched to its layer on, by value
VALUE_TOLERANCE = 1e-3  # relative; Keras vs the float flatbuffer on a MobileNetV3-Small: 6.3e-7 at most
SAME_SCALE_OPS = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
                  "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")


def check_request(req, qat: dict, path) -> None:
    """One line for a request that would undo what training learned or quantize weights another way."""
    refused = [(req.equalize, "--equalize (it rescales the trained weights)"),
               (req.bias_correction, "--bias-correction (it changes the trained biases)"),
               (req.quality == "auto", "--quality auto (it re-chooses the ranges training learned)"),
               (req.calibration_method != "minmax", f"--calibration-method {req.calibration_method} (the ranges "
                                                    "are learned)")]
    for on, what in refused:
        if on:
            raise EdgecnnError(f"{path}: trained with --qat: drop {what}")
    trained = qat.get("weights", "per-channel")
    asked = "per-tensor" if req.per_tensor else "per-channel"
    if req.mode == "int8" and trained != asked:
        raise EdgecnnError(f"{path}: trained with --qat for {trained} weights: convert it "
                           f"{'with' if trained == 'per-tensor' else 'without'} --per-tensor")


def _owner(name: str, owners: dict) -> str | None:
    """The layer a tensor named `model/LAYER_1/Op;...` is the output of, among `owners` (innermost scope first)."""
    parts = name.split(";")[0].split("/")[:-1]
    for part in reversed(parts):
        for cand in (re.sub(r"_\d+$", "", part), part):
            if cand in owners:
                return cand
    return None


def _ranged(tensor) -> bool:
    q = tensor.quantization
    return q is not None and q.min is not None and len(q.min) > 0


def _name_owner(model, op, t: int, owners: dict) -> str | None:
    """The learned range's owner of tensor `t` (an output of `op`) by the layer scope in its name."""
    from edgecnn.tflite.reader import op_name, tensor_name

    sub = model.subgraphs[0]
    kind = op_name(model, op)
    owner = _owner(tensor_name(sub.tensors[t]), owners)
    if owner is not None and kind not in OWN_ACTIVATION_OPS and owner + LINEAR in owners:
        owner += LINEAR  # a Dense(activation="softmax"): the FULLY_CONNECTED's output is its linear one
    if owner is None and kind in OWN_ACTIVATION_OPS:  # the model's output: named after no layer
        owner = _owner(tensor_name(sub.tensors[int(op.inputs[0])]), owners)
        owner = owner.removesuffix(LINEAR) if owner else None
    return owner


def _value_owners(model, tensors: list[int], keras_model, samples, owners: dict) -> dict[int, str]:
    """{tensor: owner} for tensors no layer name owns (a raw op of the model's code: `x + 3.0` in a hard swish is an
    `Add` with no layer scope in the converted graph): the owner whose float output on `samples` is the tensor's own
    (same shape, equal to float precision), from the float flatbuffer run with those tensors exposed."""
    import numpy as np

    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.reader import expose
    from edgecnn.train.qat import outputs

    if not tensors or keras_model is None or samples is None or not len(samples):
        return {}
    x = np.asarray(samples[:VALUE_SAMPLES], dtype=np.float32)
    want = next(outputs(keras_model, x, names=set(owners) - {INPUT}, batch=len(x)))
    interp = make_interpreter(expose(model, tensors), threads=1)
    allocate(interp)
    inp = interp.get_input_details()[0]["index"]
    outs = [d["index"] for d in interp.get_output_details()]
    got: dict[int, list] = {t: [] for t in tensors}
    for row in x:
        interp.set_tensor(inp, row[None])
        interp.invoke()
        for t, o in zip(tensors, outs):
            got[t].append(interp.get_tensor(o).copy())
    found = {}
    for t in tensors:
        v = np.concatenate(got[t])
        best = None
        for name, w in want.items():
            if w.shape != v.shape:
                continue
            err = float(np.max(np.abs(w - v)))
            if err <= VALUE_TOLERANCE * max(1.0, float(np.max(np.abs(w)))) and (best is None or err < best[0]):
                best = (err, name)
        if best is not None:
            found[t] = best[1]
    return found


def apply(calibrated: bytes, qat: dict, keras_model=None, samples=None) -> tuple[bytes, dict]:
    """(`calibrated` with the learned ranges written in, a report: tensors learned / calibrated, unmatched ranges).
    With the float Keras model and a few `samples`, tensors that no layer name owns are matched by value."""
    from edgecnn.tflite.reader import op_name, parse, schema, serialize, tensor_name

    model = parse(calibrated)
    sub = model.subgraphs[0]
    owners: dict[str, tuple[float, float]] = {}
    for row in qat["ranges"]:
        for layer in row["layers"]:
            owners[layer] = (float(row["min"]), float(row["max"]))
    outputs = [(op, int(t)) for op in sub.operators or [] for t in op.outputs if _ranged(sub.tensors[int(t)])]
    by_name = {t: _name_owner(model, op, t, owners) for op, t in outputs}
    last = {o: t for t, o in by_name.items() if o is not None}  # one layer, several ops (a swish, a batch norm on
    by_name = {t: (o if o is not None and last[o] == t else None) for t, o in by_name.items()}  # its own): its range
    # is its last op's output; the ops before it keep calibrated ranges (or one matched by value)
    by_value = _value_owners(model, [t for t, o in by_name.items() if o is None], keras_model, samples, owners)
    ranges: dict[int, tuple[float, float]] = {}
    used = set()
    if INPUT in owners:
        for t in sub.inputs:
            ranges[int(t)] = owners[INPUT]
        used.add(INPUT)
    for op, t in outputs:  # in graph order: a producer comes before its readers
        owner = by_name[t] or by_value.get(t)
        if owner is None and op_name(model, op) in SAME_SCALE_OPS and int(op.inputs[0]) in ranges:
            ranges[t] = ranges[int(op.inputs[0])]
        elif owner is not None:
            ranges[t] = owners[owner]
            used.add(owner)
    if not used - {INPUT}:
        raise EdgecnnError("the model's learned ranges match none of its tensors (was it renamed after --qat?)")
    for t, (lo, hi) in ranges.items():
        q = sub.tensors[t].quantization or schema().QuantizationParametersT()
        q.min, q.max = [float(lo)], [float(hi)]
        sub.tensors[t].quantization = q
    calibrated_left = [tensor_name(sub.tensors[t]) for _, t in outputs if t not in ranges]
    unmatched = sorted({layer for row in qat["ranges"] for layer in row["layers"]} - used
                       - {layer for row in qat["ranges"] if set(row["layers"]) & used for layer in row["layers"]})
    return serialize(model), {"weights": qat.get("weights"), "learned_tensors": len(ranges),
                              "by_value": len(by_value), "calibrated_tensors": len(calibrated_left),
                              "calibrated": calibrated_left[:20], "unmatched_ranges": unmatched}
