"""`--calibration-method best`: try every activation-range method and keep the one whose int8 model stays closest
to float, measured on calibration samples it was not calibrated on.

Why: no range method wins everywhere. On the models measured here (docs/guides/quantization.md, "Real, externally trained models")
MSE ranges gave a face-landmark model 3 dB more output SNR, and changed nothing for MobileNet V1; percentile helped
one output and hurt another. Trying them costs little: the fast calibrator fills min/max and the histograms of all
methods in one pass.

How: the calibration samples are split 80/20 (seed-free: every fifth sample is held out); one pass over the 80%
gives a calibrated model per method (`fast_calibrator.calibrated_variants`); each is quantized and run with the
float model on the held-out 20%, and the method with the highest output SNR (dB, pooled over every output: the
task-agnostic measure `edgecnn compare` reports) is kept; the model's task's agreement (`Task.fidelity`: the same
class for a classifier, the float boxes found again for a detector) is reported beside it. The final model is then calibrated with that
method on all the samples. The report gives every method's scores and the choice.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgecnn.errors import EdgecnnError

MIN_SAMPLES = 5


def score(reference: bytes, model: bytes, x: np.ndarray, task, ctx: dict) -> dict:
    """How close `model` stays to the float `reference` on `x`: pooled output SNR (dB) and the task's agreement."""
    from edgecnn.convert.rewrite.check import run_outputs

    return score_outputs(run_outputs(reference, x)[0], model, x, task, ctx)


def score_outputs(reference_outputs: list[np.ndarray], model: bytes, x: np.ndarray, task, ctx: dict,
                  delegate: bool = False) -> dict:
    """`score` against the float model's outputs on `x`, run once by the caller (`run_outputs(reference, x)[0]`);
    `delegate`: `model` on XNNPACK (`run_outputs`)."""
    from edgecnn.convert.rewrite.check import real_values, run_outputs

    q, qp = run_outputs(model, x, delegate)
    fid = task.fidelity(reference_outputs, [real_values(v, p) for v, p in zip(q, qp)], ctx)
    return {"snr_db": round(fid["snr_db"], 3), "agreement": fid["agreement"]}


def choose(float_model: bytes, samples: np.ndarray, quantize: Callable[[bytes], bytes], task=None,
           ctx: dict | None = None) -> tuple[str, dict]:
    """The best range method for `float_model` (see the module docstring) and the report of what each scored;
    `task`, `ctx`: the model's (`edgecnn.tasks.for_model`), default classification."""
    from edgecnn import tasks

    from edgecnn.convert.fast_calibrator import calibrated_variants
    from edgecnn.convert.ranges import METHODS

    if len(samples) < MIN_SAMPLES:
        raise EdgecnnError(f"--calibration-method best needs at least {MIN_SAMPLES} calibration samples (it holds "
                           f"out a fifth to compare the methods on), got {len(samples)}")
    held = np.arange(len(samples)) % 5 == 4
    variants = calibrated_variants(float_model, samples[~held], METHODS)
    task = task or tasks.get(None)
    scores = {m: score(float_model, quantize(cal), samples[held], task, ctx or {}) for m, cal in variants.items()}
    best = max(METHODS, key=lambda m: (scores[m]["snr_db"], m == "minmax"))  # ties go to the stock method
    return best, {"chosen": best, "held_out_samples": int(held.sum()), "task": task.name, "scores": scores}
