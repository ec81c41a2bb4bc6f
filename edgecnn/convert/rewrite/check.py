"""Is a rewrite safe? Run the model before and after it on the calibration samples and compare the outputs.

Both models run on LiteRT's reference kernels (no delegate), so what is measured is the rewrite's arithmetic, not a
delegate's. Per output tensor: the largest difference in output quantization steps; for the first output: how
often the top-1 class agrees, and how often outside ties (a flip between two classes the plain model scored within
that difference of each other is rounding breaking a tie, not a change). A pass whose difference exceeds its
tolerance, or whose agreement outside ties is under 99%, is not applied (`rewrite.run_passes`).
"""

from __future__ import annotations

import numpy as np

MAX_SAMPLES = 64


def _outputs(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgecnn._tf import silenced_fd
    from edgecnn.tflite.quant import quantize

    with silenced_fd(2):
        it = Interpreter(model_content=model, num_threads=2,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    inp, outs = it.get_input_details()[0], it.get_output_details()
    got: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(x)):
        it.set_tensor(inp["index"], quantize(x[i:i + 1], inp))
        it.invoke()
        for k, o in enumerate(outs):
            got[k].append(it.get_tensor(o["index"]).astype(np.int64 if o["dtype"] != np.float32 else np.float64))
    return [np.concatenate(g) for g in got]


def compare(before: bytes, after: bytes, samples: np.ndarray) -> dict:
    """{"samples", "max_diff_steps", "top1_agreement"} of `after` against `before` on up to 64 samples."""
    x = samples[:MAX_SAMPLES]
    a, b = _outputs(before, x), _outputs(after, x)
    diff = max(float(np.max(np.abs(p - q))) if p.size else 0.0 for p, q in zip(a, b))
    first_a, first_b = a[0].reshape(len(x), -1), b[0].reshape(len(x), -1)
    top_a, top_b = first_a.argmax(1), first_b.argmax(1)
    agree = float(np.mean(top_a == top_b)) if len(x) else 1.0
    # a flip between classes the plain model scored within `diff` steps of each other is a tie the rewrite's
    # rounding may break either way; a flip to a class the plain model scored clearly lower is a real change
    margin = first_a.max(1) - first_a[np.arange(len(x)), top_b]
    clear = float(np.mean((top_a == top_b) | (margin <= diff))) if len(x) else 1.0
    return {"samples": int(len(x)), "max_diff_steps": diff, "top1_agreement": agree,
            "top1_agreement_outside_ties": clear}
