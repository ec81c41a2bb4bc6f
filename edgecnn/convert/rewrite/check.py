"""Is a rewrite safe? Run the model before and after it on the calibration samples, and the float model they came
from, and compare.

All run on LiteRT's reference kernels (no delegate), so what is measured is the rewrite's arithmetic. Reported:
- against the model before the pass: the largest output difference in output quantization steps and the task's
  agreement (the issue's measure of "how different");
- against the float model: each int8 model's mean output error in output steps and its agreement with float
  (the measure of "how good").
The agreement is the model's task's (`edgecnn.tasks`, `Task.agreement` of the predictions decoded from every
output): the same class for a classifier, the float model's confident boxes found again for a detector.
Why the decision uses the float model: in a deep int8 net any change of rounding — a gate rounded to 1/255 instead
of the reference kernel's fixed point — moves later activations by a step here and there, and steps compound
through the layers, so the before/after difference at the output says little (MobileNetV3-Small on
Fashion-MNIST: 46 steps of difference at the softmax, yet the same top-1 on the 10,000 test images to 0.04 points).
What must hold is that the rewritten model is no further from float than the plain one: its mean error may exceed
the plain model's by at most the pass's tolerance (in steps), and its agreement with float may not fall by
more than one sample in a hundred (not judged when the float model predicts nothing to agree with: no boxes).

The check screens on MAX_SAMPLES samples (reference kernels are slow) and confirms a refusal on every calibration
sample, up to CONFIRM_SAMPLES, before it stands (`decide`): an acceptance on the screen costs at most the
tolerance there, a refusal costs a split graph. Without a float model the decision is the largest difference, which
more samples can only raise: such a refusal is not judged again.
Measured on a QAT MobileNetV3-Small 0.75 (Fashion-MNIST 32x32, per-channel): on the first 32 calibration samples the
hard_swish rewrite took the mean error vs float from 0.757 to 1.012 steps (tolerance +0.25: refused, leaving 19
HARD_SWISH ops and 20 XNNPACK partitions); on all 200, 0.991 -> 1.090 with agreement with float 0.980 -> 0.975
(accepted); the rewritten model's top-1 on the 10,000 test images was 0.8394 against the plain model's 0.8406.
"""

from __future__ import annotations

import numpy as np

MAX_SAMPLES = 32  # reference kernels are slow (~50 ms a MobileNet at 224): 3 models x 32 samples
CONFIRM_SAMPLES = 256  # a refusal is re-judged on up to this many: 3 x 256 x 50 ms = 38 s at worst, refusals only


def run_outputs(model: bytes, x: np.ndarray,
                delegate: bool = False) -> tuple[list[np.ndarray], list[tuple[float, int]]]:
    """Raw outputs per output tensor (ints for quantized ones) and their (scale, zero point), on the builtin kernels
    (`delegate`: XNNPACK where it takes the ops, as `edgecnn compare` runs)."""
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import quantize, scale_zero_point

    it = make_interpreter(model, delegate=delegate)
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


def output_steps(model: bytes) -> list[float | None]:
    """The int8 step of each output: its own scale when quantized; when it is float (`--io float32`: a DEQUANTIZE
    ends the graph), the scale of the int8 tensor that DEQUANTIZE reads; None when the output is computed in float
    (a head kept in float), for the caller to derive from the output's range."""
    from edgecnn.tflite.reader import op_name, parse

    m = parse(model)
    sub = m.subgraphs[0]
    producer = {int(t): op for op in (sub.operators or []) for t in op.outputs}

    def scale(t: int) -> float | None:
        q = sub.tensors[t].quantization
        s = q.scale if q is not None else None
        return float(s[0]) if s is not None and len(s) == 1 and float(s[0]) > 0 else None

    steps = []
    for t in (int(i) for i in sub.outputs):
        op = producer.get(t)
        steps.append(scale(t) or (scale(int(op.inputs[0])) if op is not None and op_name(m, op) == "DEQUANTIZE"
                                  else None))
    return steps


def judge(task=None, ctx: dict | None = None):
    """`agree(outputs_a, outputs_b)`: the task's agreement (0..1, None when undefined) of two models' real outputs
    (lists of arrays); default the classification task (argmax of output 0)."""
    from edgecnn import tasks

    task, ctx = task or tasks.get(None), ctx or {}

    def agree(a: list, b: list):
        if not len(a[0]):
            return 1.0
        return task.agreement(task.postprocess(a, ctx), task.postprocess(b, ctx), ctx, ctx)

    return agree


def compare(before: bytes, after: bytes, samples: np.ndarray, reference: bytes | None = None,
            agree=None, limit: int | None = None) -> dict:
    """The measures above for `after` against `before` (and `reference`, the float model) on up to `limit` samples
    (default MAX_SAMPLES).

    Differences are in int8 steps of each output whatever its type (`output_steps`): a float output read through a
    DEQUANTIZE has the step of the int8 tensor behind it, and one computed in float the step an int8 tensor over its
    range would have (range / 255, the range from the float model's outputs, else the model's before the pass), so
    that a pass's tolerance means the same on `--io float32` as on int8 outputs. `agree`: see `judge`."""
    agree = agree or judge()
    x = samples[:limit or MAX_SAMPLES]
    (a, qa), (b, qb) = run_outputs(before, x), run_outputs(after, x)
    ra, rb = [real_values(v, q) for v, q in zip(a, qa)], [real_values(v, q) for v, q in zip(b, qb)]
    f = run_outputs(reference, x)[0] if reference is not None else None
    steps = []
    for k, s in enumerate(output_steps(before)):
        if s is None:
            seen = f[k] if f is not None else ra[k]
            s = float(seen.max() - seen.min()) / 255 if seen.size else 0.0
        steps.append(s or 1.0)
    out = {"samples": int(len(x)),
           "max_diff_steps": max(float(np.max(np.abs(p - q))) / s if p.size else 0.0
                                 for p, q, s in zip(ra, rb, steps)),
           "agreement": agree(ra, rb)}
    if f is not None:
        for name, real in (("before", ra), ("after", rb)):
            out[f"error_steps_{name}"] = float(np.mean(np.abs(real[0] - f[0]))) / steps[0]
            out[f"agreement_vs_float_{name}"] = agree(f, real)
    return out


def acceptable(row: dict, tolerance_steps: float) -> bool:
    """The decision described in the module docstring (without a float model: outputs within the tolerance)."""
    if "error_steps_after" not in row:
        return row["max_diff_steps"] <= tolerance_steps
    slack = max(1.0 / max(row["samples"], 1), 0.01)
    before, after = row["agreement_vs_float_before"], row["agreement_vs_float_after"]
    return (row["error_steps_after"] <= row["error_steps_before"] + tolerance_steps
            and (before is None or (after is not None and after >= before - slack)))


SCREEN_KEYS = ("samples", "max_diff_steps", "agreement", "error_steps_before", "error_steps_after",
               "agreement_vs_float_before", "agreement_vs_float_after")


def decide(before: bytes, after: bytes, samples: np.ndarray, tolerance_steps: float,
           reference: bytes | None = None, agree=None) -> dict:
    """`compare` on the first MAX_SAMPLES samples; when that refuses against the float model and there are more
    samples, the refusal is re-judged on up to CONFIRM_SAMPLES of them and that judgement stands (the screen's
    measures are kept under "screen"). The row's "accepted" is the decision."""
    row = compare(before, after, samples, reference, agree)
    row["accepted"] = acceptable(row, tolerance_steps)
    if not row["accepted"] and "error_steps_after" in row and len(samples) > row["samples"]:
        screen = {k: row[k] for k in SCREEN_KEYS if k in row}
        row = {**compare(before, after, samples, reference, agree, limit=CONFIRM_SAMPLES),
               "screen": {**screen, "accepted": False}}
        row["accepted"] = acceptable(row, tolerance_steps)
    return row
