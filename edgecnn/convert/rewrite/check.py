"""Is a rewrite safe? Run the model before and after it on the calibration samples, and the float model they came
from, and compare.

All run on LiteRT's reference kernels (no delegate), so what is measured is the rewrite's arithmetic. Reported:
- against the model before the pass: the largest output difference in output quantization steps and the top-1
  agreement (the issue's measure of "how different");
- against the float model: each int8 model's mean output error in output steps and its top-1 agreement with float
  (the measure of "how good").
Why the decision uses the float model: in a deep int8 net any change of rounding — a gate rounded to 1/255 instead
of the reference kernel's fixed point — moves later activations by a step here and there, and steps compound
through the layers, so the before/after difference at the output says little (MobileNetV3-Small on
Fashion-MNIST: 46 steps of difference at the softmax, yet the same top-1 on the 10,000 test images to 0.04 points).
What must hold is that the rewritten model is no further from float than the plain one: its mean error may exceed
the plain model's by at most the pass's tolerance (in steps), and its top-1 agreement with float may not fall by
more than one sample in a hundred.
"""

from __future__ import annotations

import numpy as np

MAX_SAMPLES = 32  # reference kernels are slow (~50 ms a MobileNet at 224): 3 models x 32 samples


def run_outputs(model: bytes, x: np.ndarray) -> tuple[list[np.ndarray], list[tuple[float, int]]]:
    """Raw outputs per output tensor (ints for quantized ones) and their (scale, zero point)."""
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import quantize, scale_zero_point

    it = make_interpreter(model, delegate=False)
    allocate(it)
    inp, outs = it.get_input_details()[0], it.get_output_details()
    got: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(x)):
        it.set_tensor(inp["index"], quantize(x[i:i + 1], inp))
        it.invoke()
        for k, o in enumerate(outs):
            got[k].append(it.get_tensor(o["index"]).astype(np.float64))
    return [np.concatenate(g) for g in got], [scale_zero_point(o) for o in outs]


def real_values(raw: np.ndarray, q: tuple[float, int]) -> np.ndarray:
    """Raw outputs of `run_outputs` as real numbers (dequantized when the tensor is quantized)."""
    return (raw - q[1]) * q[0] if q[0] else raw


def _top1(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1).argmax(1)


def compare(before: bytes, after: bytes, samples: np.ndarray, reference: bytes | None = None) -> dict:
    """The measures above for `after` against `before` (and `reference`, the float model) on up to MAX_SAMPLES samples."""
    x = samples[:MAX_SAMPLES]
    (a, qa), (b, _) = run_outputs(before, x), run_outputs(after, x)
    out = {"samples": int(len(x)),
           "max_diff_steps": max(float(np.max(np.abs(p - q))) if p.size else 0.0 for p, q in zip(a, b)),
           "top1_agreement": float(np.mean(_top1(a[0]) == _top1(b[0]))) if len(x) else 1.0}
    if reference is not None:
        f, _ = run_outputs(reference, x)
        step = qa[0][0] or 1.0
        for name, raw in (("before", a[0]), ("after", b[0])):
            real = real_values(raw, qa[0])
            out[f"error_steps_{name}"] = float(np.mean(np.abs(real - f[0]))) / step
            out[f"top1_vs_float_{name}"] = float(np.mean(_top1(real) == _top1(f[0])))
    return out


def acceptable(row: dict, tolerance_steps: float) -> bool:
    """The decision described in the module docstring (without a float model: outputs within the tolerance)."""
    if "error_steps_after" not in row:
        return row["max_diff_steps"] <= tolerance_steps
    slack = max(1.0 / max(row["samples"], 1), 0.01)
    return (row["error_steps_after"] <= row["error_steps_before"] + tolerance_steps
            and row["top1_vs_float_after"] >= row["top1_vs_float_before"] - slack)
