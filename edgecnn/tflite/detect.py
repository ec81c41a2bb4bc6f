"""Foreign detectors read from the flatbuffer, TensorFlow-free: which head they have, their post-processing cut
off for timing, and a lint for outputs that an int8 model would ruin.

| function                | what it gives                                                                          |
|-------------------------|----------------------------------------------------------------------------------------|
| `recognise_head`        | the head description of a BlazeFace-style or TFLite_Detection_PostProcess model, or None |
| `without_postprocess`   | the model's bytes without its TFLite_Detection_PostProcess op, the op's inputs as outputs |
| `mixed_range_outputs`   | one warning per output that concatenates parts of very different ranges                 |

The recogniser is `edgecnn.tasks.detection.postprocess.recognise`, the one the board runner calls with the interpreter's view
of the same model; here it gets the reader's view.

The lint (`mixed_range_outputs`): an output built by CONCATENATION (followed back through RESHAPE, SQUEEZE,
TRANSPOSE, QUANTIZE, DEQUANTIZE) whose parts have very different ranges shares one int8 scale after quantization:
YOLO heads that concatenate boxes (0..640 px) and class scores (0..1) in one tensor round every score to zero
(ultralytics #1695, #7371). An output is flagged when
- its parts are quantized (int8/uint8/int16 with a scale) and the span one part's type covers,
  `(qmin - zp) * s .. (qmax - zp) * s`, is more than `RATIO` (10) times another's; or
- (float or quantized: the converter often gives every input of an int8 CONCATENATION the output's scale, which
  hides the problem from the scales) by the op that makes each part, through the same pass-through ops and nested
  concatenations, some parts are bounded (LOGISTIC/SOFTMAX/HARD_SIGMOID 0..1, TANH -1..1: scores) and others are
  not (boxes, anything else). In a float model this is a warning about what int8 will do to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.tflite import reader

PASS_THROUGH = {"RESHAPE", "SQUEEZE", "TRANSPOSE", "QUANTIZE", "DEQUANTIZE", "EXPAND_DIMS"}
BOUNDED = {"LOGISTIC": (0.0, 1.0), "SOFTMAX": (0.0, 1.0), "TANH": (-1.0, 1.0), "HARD_SIGMOID": (0.0, 1.0)}
RATIO = 10.0


def _load(model):
    """`ModelT` of a path, bytes, or an already parsed model."""
    if isinstance(model, (bytes, bytearray)):
        return reader.parse(bytes(model))
    if isinstance(model, (str, Path)):
        return reader.read_model(model)
    return model


def _producers(model) -> dict[int, object]:
    sub = model.subgraphs[0]
    return {int(t): op for op in (sub.operators or []) for t in (op.outputs if op.outputs is not None else [])}


def recognise_head(model, recognise=None) -> dict | None:
    """The head description (`{"kind": "blazeface", ...}` or `{"kind": "tflite_detection_postprocess", ...}`) of a
    foreign detector, or None when its outputs are neither kind; `recognise(outputs, ops, input_hw)`: another
    task's recogniser over the same description of the graph (a segmenter's logits)."""
    if recognise is None:
        from edgecnn.tasks.detection.postprocess import recognise

    m = _load(model)
    sub = m.subgraphs[0]
    tensors = sub.tensors
    outputs = [{"index": int(t), "shape": [int(d) for d in (tensors[t].shape if tensors[t].shape is not None else [])]}
               for t in (sub.outputs if sub.outputs is not None else [])]
    ops = [{"name": reader.op_name(m, op), "outputs": [int(t) for t in op.outputs]} for op in (sub.operators or [])]
    inputs = [int(t) for t in (sub.inputs if sub.inputs is not None else [])]
    shape = [int(d) for d in tensors[inputs[0]].shape] if inputs else []
    hw = (shape[1], shape[2]) if len(shape) == 4 else (1, 1)
    return recognise(outputs, ops, hw)


def without_postprocess(model) -> bytes | None:
    """The model without its TFLite_Detection_PostProcess op, the op's box and class inputs as the outputs (so an
    interpreter runs everything but the op), or None when it has no such op."""
    from edgecnn.tasks.detection.postprocess import DETECTION_POSTPROCESS_OP

    m = _load(model)
    sub = m.subgraphs[0]
    ops = list(sub.operators or [])
    found = [op for op in ops if reader.op_name(m, op) == f"CUSTOM:{DETECTION_POSTPROCESS_OP}"]
    if not found:
        return None
    cut = found[0]
    dropped = {int(t) for t in cut.outputs}
    kept = []
    for op in ops:  # the op and anything computed from its outputs
        if op is cut or any(int(t) in dropped for t in op.inputs if t >= 0):
            dropped.update(int(t) for t in op.outputs)
            continue
        kept.append(op)
    sub.operators = kept
    try:
        return reader.expose(m, [int(t) for t in cut.inputs[:2]])
    finally:
        sub.operators = ops


def _quant_span(m, t: int) -> tuple[float, float] | None:
    """The real range an integer tensor's type covers, `(qmin - zp) * s .. (qmax - zp) * s`, or None (float)."""
    tensor = m.subgraphs[0].tensors[t]
    q, dtype = tensor.quantization, reader.tensor_dtype(tensor)
    if dtype not in ("int8", "uint8", "int16") or q is None or q.scale is None or not len(q.scale):
        return None
    info = np.iinfo(dtype)
    s = float(np.asarray(q.scale)[0])
    zp = int(np.asarray(q.zeroPoint)[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return (info.min - zp) * s, (info.max - zp) * s


def _op_range(m, producers, t: int, depth: int = 0) -> tuple[float | None, float | None, str]:
    """(low, high, what) of tensor `t` from the op that makes it (None, None: unbounded), through pass-through ops
    and nested concatenations."""
    op = producers.get(t)
    if op is None or depth > 50:
        return None, None, "graph input" if op is None else "unbounded"
    name = reader.op_name(m, op)
    if name in PASS_THROUGH:
        return _op_range(m, producers, int(op.inputs[0]), depth + 1)
    if name in BOUNDED:
        lo, hi = BOUNDED[name]
        return lo, hi, f"{name.lower()} {lo:g}..{hi:g}"
    if name == "CONCATENATION":
        parts = [_op_range(m, producers, int(i), depth + 1) for i in op.inputs if i >= 0]
        if all(p[0] is not None for p in parts):
            return min(p[0] for p in parts), max(p[1] for p in parts), "+".join(sorted({p[2] for p in parts}))
    return None, None, f"unbounded ({name})"


def mixed_range_outputs(model, source: str = "model") -> list[str]:
    """One warning line per model output built by concatenating parts of very different ranges (module docstring)."""
    m = _load(model)
    sub = m.subgraphs[0]
    producers = _producers(m)
    warnings = []
    for out in (sub.outputs if sub.outputs is not None else []):
        t, op = int(out), producers.get(int(out))
        while op is not None and reader.op_name(m, op) in PASS_THROUGH:
            t = int(op.inputs[0])
            op = producers.get(t)
        if op is None or reader.op_name(m, op) != "CONCATENATION":
            continue
        inputs = [int(i) for i in op.inputs if i >= 0]
        spans = [_quant_span(m, i) for i in inputs]
        kinds = [_op_range(m, producers, i) for i in inputs]
        widths = [hi - lo for lo, hi in (s for s in spans if s is not None)]
        by_scale = len(widths) == len(inputs) and min(widths) > 0 and max(widths) / min(widths) > RATIO
        bounded = [k for k in kinds if k[0] is not None]
        by_op = 0 < len(bounded) < len(kinds)
        if not (by_scale or by_op):
            continue
        described = "; ".join(f"part {j + 1} {reader.tensor_name(sub.tensors[i]).split(';')[0].split('/')[-1]!r}: "
                              f"{k[2]}" + (f", int8 range {sp[0]:.3g}..{sp[1]:.3g}" if sp else "")
                              for j, (i, k, sp) in enumerate(zip(inputs, kinds, spans)))
        warnings.append(f"{source}: output {reader.tensor_name(sub.tensors[int(out)])!r} concatenates parts of very "
                        f"different ranges ({described}); int8 gives the whole tensor one scale, which rounds the "
                        f"small-range part (scores) to zero: export them as separate outputs "
                        f"(ultralytics #1695, #7371)")
    return warnings
