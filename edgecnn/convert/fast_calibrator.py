"""The fast calibrator: run the float model once per sample in LiteRT + XNNPACK with every activation exposed.

The stock TF calibrator interprets the model one sample per call with reference kernels (~10x a float inference
per sample). Here the float flatbuffer is rewritten so that every non-constant float tensor is a subgraph
output (`edgecnn.tflite.reader`), LiteRT runs it with XNNPACK, and a running global min/max per
tensor is kept (and, for `--calibration-method percentile|mse`, histograms in the same pass: `ranges.py`).
The ranges are then written into each tensor's `quantization.min/max` of the model that the
converter's own quantize pass reads, exactly where the stock calibrator writes them.

One behaviour of the stock calibrator is reproduced on purpose: TFLite runs some element-wise ops (ADD, MUL,
...) in place, and the stock calibrator reads an op's inputs after the op has run, so for an input whose buffer
the output took over it records the union of the input's range and the output's. `_inplace_pairs` reads which
inputs share their output's buffer from LiteRT's own arena plan (same builtin kernels, no delegate), and the
same union is applied, so both calibrators give the same quantization parameters (tests/test_convert.py
compares them tensor by tensor).
"""

from __future__ import annotations

import numpy as np


# An activation that stayed (almost) constant on every calibration sample (a ReLU output never positive: a dead
# channel group, a head not yet trained) would get an int8 scale near 1e-9; XNNPACK then refuses the whole graph
# ("failed to prepare": a requantization multiplier above 256), measured on a 1-epoch detector's `size` output.
# Such a range is widened to DEAD_RANGE: its values are still exact (the zero point holds the constant's end).
# Dead means small in magnitude, not narrow: the test is on the range int8 represents, [min(lo, 0), max(hi, 0)]
# (it always holds 0). A constant 0.3 is not dead: its int8 range [0, 0.3] has a fine scale, where widening it by
# width alone gave [0, 1.3] (4x coarser steps for nothing).
DEAD_WIDTH = 1e-5
DEAD_RANGE = 1.0


def _activation_tensors(model) -> list[int]:
    sub = model.subgraphs[0]
    float_types = (0, 1)  # TensorType.FLOAT32, FLOAT16
    out = []
    for i, t in enumerate(sub.tensors):
        buf = model.buffers[t.buffer]
        const = buf.data is not None and len(buf.data) > 0
        if not const and t.type in float_types and t.shape is not None and len(t.shape) > 0:
            out.append(i)
    return out


def _ranges(model, tensors: list[int], samples: np.ndarray, hist=None) -> tuple[np.ndarray, np.ndarray]:
    """Global min/max of each tensor in `tensors` over `samples` (`model` is the parsed flatbuffer object); with
    `hist` (a `ranges.Histograms`), each tensor's values are added to its histograms in the same pass."""
    import os

    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.reader import expose

    interp = make_interpreter(expose(model, tensors), threads=os.cpu_count() or 1)
    allocate(interp)
    inp = interp.get_input_details()[0]["index"]
    outs = [d["index"] for d in interp.get_output_details()]
    lo = np.full(len(outs), np.inf, dtype=np.float64)
    hi = np.full(len(outs), -np.inf, dtype=np.float64)
    for i in range(len(samples)):
        interp.set_tensor(inp, samples[i: i + 1])
        interp.invoke()
        views = [interp.tensor(idx)() for idx in outs]  # no copies; read before the next invoke
        lo = np.minimum(lo, [v.min() for v in views])
        hi = np.maximum(hi, [v.max() for v in views])
        if hist is not None:
            hist.add_all(views)
        del views
    # outputs come back in subgraph-output order, which is `tensors`
    return lo, hi


def _inplace_pairs(model_bytes: bytes) -> list[tuple[int, int]]:
    """(input, output) tensor pairs that share one buffer at run time (ops executed in place).

    Read off LiteRT's own arena plan for the builtin kernels the stock calibrator runs: an op's input whose data
    address equals its output's was overwritten by the op.
    """
    from edgecnn.tflite.interpreter import allocate, make_interpreter

    interp = make_interpreter(model_bytes, delegate=False)
    allocate(interp)

    def addr(t):
        try:
            return interp.tensor(t)().ctypes.data
        except (ValueError, AttributeError):  # no buffer yet, or a scalar
            return None

    pairs = []
    for op in interp._get_ops_details():
        outs = [int(t) for t in op["outputs"] if t >= 0]
        out_addr = {addr(t): t for t in outs}
        for t in (int(t) for t in op["inputs"] if t >= 0):
            a = addr(t)
            if a is not None and a in out_addr and t not in outs:
                pairs.append((t, out_addr[a]))
    return pairs


def _apply_inplace_union(pairs, lo: dict, hi: dict) -> None:
    """Reproduce the stock calibrator's reading of in-place op inputs (see module docstring)."""
    for t, out in pairs:
        if t in lo and out in lo:
            lo[t], hi[t] = min(lo[t], lo[out]), max(hi[t], hi[out])


def _minimum_caps(model) -> dict[int, tuple[float, int]]:
    """Tensors read only by a MINIMUM with a constant: {tensor: (that constant's max, the MINIMUM's output)}.
    Values above the MINIMUM's output range never get through it, so the tensor's range stops there, as a fused
    ReLU6 stops its conv's range at 6 (int8 MINIMUM shares one scale between input and output; this is how
    `--equalize` keeps ReLU6's clip: equalize.py)."""
    from edgecnn.tflite.reader import constant_array, consumers, op_name, tensor_dtype

    sub = model.subgraphs[0]
    graph_outputs = {int(i) for i in sub.outputs}
    caps = {}
    for t, ops in consumers(sub).items():
        if len(ops) != 1 or op_name(model, ops[0]) != "MINIMUM" or t in graph_outputs:
            continue
        other = [int(i) for i in ops[0].inputs if int(i) != t]
        c = constant_array(model, sub.tensors[other[0]]) if len(other) == 1 else None
        if c is not None and tensor_dtype(sub.tensors[other[0]]) == "float32":
            caps[t] = (float(c.max()), int(ops[0].outputs[0]))
    return caps


def calibrated_variants(float_model: bytes, samples: np.ndarray, methods: tuple[str, ...]) -> dict[str, bytes]:
    """One pass over `samples`, then the model carrying each method's ranges (`edgecnn.convert.ranges`): min/max
    and every histogram method come from the same pass."""
    from edgecnn.convert.ranges import Histograms, clipped
    from edgecnn.tflite.private import add_intermediate_tensors
    from edgecnn.tflite.reader import parse, schema, serialize

    base = add_intermediate_tensors(float_model)
    model = parse(base)
    tensors = _activation_tensors(model)
    hist = Histograms(len(tensors)) if any(m != "minmax" for m in methods) else None
    lo_arr, hi_arr = _ranges(model, tensors, samples.astype(np.float32, copy=False), hist)
    pairs = _inplace_pairs(base)
    caps = _minimum_caps(model)
    out = {}
    for method in methods:
        lo, hi = {}, {}
        for k, t in enumerate(tensors):
            lo[t], hi[t] = clipped(method, hist, k, float(lo_arr[k]), float(hi_arr[k])) if hist is not None \
                else (float(lo_arr[k]), float(hi_arr[k]))
        _apply_inplace_union(pairs, lo, hi)
        for t, (cap, out_t) in caps.items():
            if t in hi:
                hi[t] = max(min(hi[t], cap, hi.get(out_t, cap)), lo[t])
        sub = model.subgraphs[0]
        for t in tensors:
            if max(hi[t], 0.0) - min(lo[t], 0.0) < DEAD_WIDTH:  # a dead activation: see DEAD_WIDTH
                hi[t] = lo[t] + DEAD_RANGE
            q = sub.tensors[t].quantization or schema().QuantizationParametersT()
            q.min = [float(np.float32(lo[t]))]
            q.max = [float(np.float32(hi[t]))]
            sub.tensors[t].quantization = q
        out[method] = serialize(model)
    return out


def fast_calibrate(float_model: bytes, samples: np.ndarray, method: str = "minmax") -> bytes:
    """Return the model (with intermediate tensors added, as the stock path does) carrying a range per tensor:
    min/max, or a clipped range by `method` (`edgecnn.convert.ranges`)."""
    return calibrated_variants(float_model, samples, (method,))[method]
