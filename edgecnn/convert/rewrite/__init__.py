"""Rewrite passes on the quantized model: int8 that runs whole on its target.

The converter's int8 graph uses ops that some targets do not run in int8: XNNPACK (LiteRT's CPU delegate) leaves
int8 HARD_SWISH and AVERAGE_POOL_2D to slow reference kernels, splitting the graph; the Edge TPU compiler stops at
the first op it does not know (HARD_SWISH, LEAKY_RELU) and runs the rest on the CPU. Each pass replaces one such op
with ops the target takes, on the quantized flatbuffer, after the quantize pass and before the load check.

| pass         | replaces          | with                                         | exact?               |
|--------------|-------------------|----------------------------------------------|----------------------|
| `hard_swish` | HARD_SWISH        | DEPTHWISE_CONV_2D 1x1 (gate) + MUL            | gate rounded to 1/255 |
| `avg_pool`   | AVERAGE_POOL_2D   | MEAN (global) / DEPTHWISE_CONV_2D (windowed)  | division rounding     |
| `leaky_relu` | LEAKY_RELU        | PRELU with a constant slope                   | to one step           |
| `minimum`    | MINIMUM by a constant (`--equalize`'s clips) | nothing (int8 saturation clips) | at/above the range; else up to the calibration peaks |
| `relu`       | a standalone RELU after a conv, dense or element-wise op (ai-edge-quantizer's mixed models) | nothing (the producer's fused activation) | one rounding fewer |
| `float_tail` | DEQUANTIZE feeding a float tail (an SSD's TFLite_Detection_PostProcess) | the same, moved last | yes (order only) |
| `concat_split` | CONCATENATION of more than 5 inputs (XNNPACK takes up to 5) | a chain of CONCATENATIONs of at most 5 | yes |

Which passes a target runs, and in what order, is its `passes` in the target table (`edgecnn.targets`).

Each pass module has REPLACES, TOLERANCE_STEPS and `apply(graph) -> count`; adding a pass is one module, one entry
in PASSES and its name in the `passes` of the targets that want it.

Every pass is checked when applied (`check.py`: the model before and after it, and the float model, on the first
32 calibration samples, and a refusal there again on all of them, up to 256): the report gives how far the outputs
moved (max steps, the task's agreement) and each model's distance to float; a pass that takes the model further
from float than its tolerance (mean output steps), or loses agreement with float (the model's task's: the same
class, the same boxes), is not applied, and the report says so. `--no-rewrite` gives the converter's plain output.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from edgecnn.convert.rewrite import avg_pool, concat_split, float_tail, hard_swish, leaky_relu, minimum, relu
from edgecnn.targets import get as get_target

PASSES: dict[str, ModuleType] = {"hard_swish": hard_swish, "avg_pool": avg_pool, "leaky_relu": leaky_relu,
                                  "minimum": minimum, "relu": relu, "float_tail": float_tail,
                                  "concat_split": concat_split}


def passes_for(target: str) -> list[str]:
    """The passes that `target` wants, in the order they run (its entry in the target table)."""
    return list(get_target(target).passes)


def run_passes(model: bytes, target: str, samples: np.ndarray | None,
               reference: bytes | None = None, agree=None) -> tuple[bytes, list[dict]]:
    """Apply `target`'s passes one at a time, each checked against the model before it and the float `reference`
    it was quantized from, with the model's task's agreement `agree` (`check.judge`); returns (model, report rows)."""
    from edgecnn.convert.rewrite.check import decide
    from edgecnn.convert.rewrite.graph import Graph
    from edgecnn.tflite.reader import parse

    rows = []
    for name in passes_for(target):
        mod = PASSES[name]
        g = Graph(parse(model))
        count = mod.apply(g)
        row = {"pass": name, "replaces": mod.REPLACES, "count": count, "applied": False,
               "tolerance_steps": mod.TOLERANCE_STEPS, **g.notes}
        if count == 0:
            row["note"] = getattr(mod, "NOTHING", f"no int8 {mod.REPLACES} in the model")
            rows.append(row)
            continue
        after = g.serialize()
        if samples is None or len(samples) == 0:
            row["note"] = "not applied: no calibration samples to check it on"
            rows.append(row)
            continue
        row.update(decide(model, after, samples, mod.TOLERANCE_STEPS, reference, agree))
        if row.pop("accepted"):
            model, row["applied"] = after, True
        elif "error_steps_after" in row:
            row["note"] = (f"not applied: error vs float {row['error_steps_before']:.3f} -> "
                           f"{row['error_steps_after']:.3f} mean output steps (tolerance +{mod.TOLERANCE_STEPS}), "
                           f"agreement with float {_fmt(row['agreement_vs_float_before'])} -> "
                           f"{_fmt(row['agreement_vs_float_after'])} on {row['samples']} calibration samples")
        else:
            row["note"] = (f"not applied: outputs moved by {row['max_diff_steps']:g} steps (tolerance "
                           f"{mod.TOLERANCE_STEPS}) on {row['samples']} calibration samples")
        rows.append(row)
    return model, rows


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"
