"""Per-layer quantization error: where a quantized model departs from its float original.

Both .tflite models run on the same samples with every tensor kept (`experimental_preserve_all_tensors`, builtin
kernels). Each quantized activation is dequantized and matched, by tensor name, to the float tensor it replaces;
per tensor we report RMSE, RMSE/scale (the quantization debugger's metric: ~0.29 is pure rounding noise, larger
means the layer loses information), max |error| and mean error (bias). Tensors are ranked worst first.
"""

from __future__ import annotations

import numpy as np


def _tensor_map(interp) -> dict[str, dict]:
    return {d["name"]: d for d in interp.get_tensor_details()}


def _op_outputs(interp) -> dict[int, str]:
    """tensor index -> op type producing it."""
    return {int(t): op["op_name"] for op in interp._get_ops_details() for t in op["outputs"]}


def layer_errors(float_model: bytes, quant_model: bytes, x: np.ndarray, max_samples: int = 32) -> list[dict]:
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import dequantize, quantize

    fi = make_interpreter(float_model, preserve_all=True)
    qi = make_interpreter(quant_model, preserve_all=True)
    allocate(fi)
    allocate(qi)
    fmap, qmap = _tensor_map(fi), _tensor_map(qi)
    producers = _op_outputs(qi)
    pairs = []
    made = {t: k for k, op in enumerate(fi._get_ops_details()) for t in op["outputs"]}  # tensor -> op position
    order = {name: made.get(d["index"], -1) for name, d in fmap.items()}
    for name, qd in qmap.items():
        fd = fmap.get(name)
        if fd is None and ";" in name:  # an op the int8 graph fused with its activation ("act;add"): the float
            parts = [p for p in name.split(";") if p in fmap]  # tensor computed last of them holds its values
            fd = fmap[max(parts, key=order.get)] if parts else None
        scale = qd["quantization"][0]
        if fd is None or not scale or not np.issubdtype(qd["dtype"], np.integer) or qd["index"] not in producers:
            continue
        if list(fd["shape"]) != list(qd["shape"]) or producers[qd["index"]] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        pairs.append((name, fd, qd, producers[qd["index"]]))  # fd["name"]: the float graph's name of it
    sums = {name: [0.0, 0.0, 0.0, 0.0, 0] for name, *_ in pairs}  # sq err, |max|, err, float sq, count
    fin, qin = fi.get_input_details()[0], qi.get_input_details()[0]
    for i in range(min(len(x), max_samples)):
        fi.set_tensor(fin["index"], x[i: i + 1].astype(fin["dtype"]))
        qi.set_tensor(qin["index"], quantize(x[i: i + 1], qin))
        fi.invoke()
        qi.invoke()
        for name, fd, qd, _ in pairs:
            f = fi.get_tensor(fd["index"]).astype(np.float32)
            q = dequantize(qi.get_tensor(qd["index"]), qd)
            e = q - f
            s = sums[name]
            s[0] += float(np.sum(e * e))
            s[1] = max(s[1], float(np.max(np.abs(e))))
            s[2] += float(np.sum(e))
            s[3] += float(np.sum(f * f))
            s[4] += e.size
    rows = []
    for name, fd, qd, op in pairs:
        sq, mx, se, fsq, n = sums[name]
        rmse = (sq / n) ** 0.5
        scale = float(qd["quantization"][0])
        rows.append({"tensor": name, "float_tensor": fd["name"], "op": op, "index": int(qd["index"]), "rmse": rmse, "rmse_over_scale":
                     rmse / scale, "max_abs_error": mx, "mean_error": se / n, "scale": scale,
                     "relative_rmse": rmse / max((fsq / n) ** 0.5, 1e-12)})
    rows.sort(key=lambda r: -r["rmse_over_scale"])
    return rows
