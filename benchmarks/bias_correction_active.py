"""Bias correction under a fused activation: the gain on the measured shift, side by side on the real models.

    .venv/bin/python benchmarks/bias_correction_active.py [--out runs/bench/real] [--floors 1,0.5,0.25,0.1]

`edgecnn/convert/bias_correction.py` divides each channel's mean output shift by the fraction of its int8 outputs
that its fused activation passes (a bias change moves the output's mean only there), floored at ACTIVE_FLOOR. A
floor of 1 is the rule before (the shift folded as measured, after the activation). This converts the real models
of `benchmarks/real_models.py` (same photos: 64 to calibrate, the other 64 to compare on) with `--bias-correction`
per-channel and per-tensor (per-tensor with `--equalize` too, the recommended per-tensor recipe) for each floor,
and writes top-1 agreement with float and output SNR side by side to
benchmarks/results/bias_correction_active.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_models import ROOT, _run, face_landmark, mobilenet_v1_imagenet, mobilenet_v2_dogs  # noqa: E402
from results import Column, publish  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/real")
    ap.add_argument("--floors", default="1,0.5,0.25,0.1")
    args = ap.parse_args()
    out = (ROOT / args.out).resolve()
    calibrate, compare = out / "photos_calibrate", out / "photos_compare"
    if not calibrate.is_dir():
        raise SystemExit(f"{calibrate}: run benchmarks/real_models.py --out {args.out} first (it writes the photos)")
    from edgecnn.convert import bias_correction
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest

    models = [("MobileNet V1 224 ImageNet", mobilenet_v1_imagenet(out), {"mean": 128.0, "std": 128.0},
               ["--mean", "128", "--std", "128"]),
              ("MobileNetV2 160 dogs", mobilenet_v2_dogs(out), {"mean": 127.5, "std": 127.5},
               ["--mean", "127.5", "--std", "127.5"]),
              ("face landmarks 192", face_landmark(out), {"scale": 1 / 255}, ["--scale", str(1 / 255)])]
    floors = [float(f) for f in args.floors.split(",")]
    rows = []
    for label, src, scaling, flags in models:
        for weights, equalize in (("per-channel", False), ("per-tensor", False), ("per-tensor", True)):
            for floor in floors:
                bias_correction.ACTIVE_FLOOR = floor
                q = out / f"bc_{src.stem}_{weights}_{int(equalize)}_{floor}.tflite"
                convert_model(src, q, ConversionRequest("int8", calibration=str(calibrate), num_calibration=64,
                                                        per_tensor=weights == "per-tensor", equalize=equalize,
                                                        bias_correction=True, **scaling))
                cmp = _run("compare", src, q, "--data", compare, *flags)
                rows.append({"model": label, "weights": weights + (" + CLE" if equalize else ""), "floor": floor,
                             "top1_agreement": cmp["top1_agreement"], "snr_db": cmp["snr_db"]})
                print(json.dumps(rows[-1]), flush=True)
    table = []
    for label, *_ in models:
        for w in ("per-channel", "per-tensor", "per-tensor + CLE"):
            row = {"model": label, "weights": w}
            for r in rows:
                if r["model"] == label and r["weights"] == w:
                    agr = "—" if label.startswith("face") else format(r["top1_agreement"], ".3f")
                    row[f"floor {r['floor']:g}"] = f"{agr} / {r['snr_db']:.1f}"
            table.append(row)
    (out / "bias_correction_active.json").write_text(json.dumps({"rows": rows}, indent=2))
    publish("bias_correction_active",
            [Column("model", "model"), Column("weights", "weights"),
             *(Column(f"floor {f:g}", f"floor {f:g}: top-1 agr. / SNR dB") for f in floors)], table,
            notes=["int8 with `--bias-correction`, calibrated on 64 of the shipped photos, compared with float by "
                   "`edgecnn compare` on the other 64 (no labels); floor 1 is the rule before (the shift folded as "
                   "measured); the landmark model has no fused activations (PRELU is its own op), so every floor "
                   "gives it the same"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
