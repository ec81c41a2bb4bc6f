"""Do the int8 rewrites cost accuracy? MobileNetV3-Small (hard-swish + squeeze-excite) on all of Fashion-MNIST.

    .venv/bin/python benchmarks/rewrite_accuracy.py [--out runs/bench/accuracy] [--epochs 6]

Trains (or reuses, if present in --out: the same file benchmarks/convert_accuracy.py makes) MobileNetV3-Small
alpha 0.75 at 32x32 on the Fashion-MNIST train split, converts it to full-integer int8 twice from the same
calibration (200 train images, `recipe:fashion-mnist-200`) — the converter's plain graph (`--no-rewrite`) and the
rewritten one (`--target cpu`, and `--target edgetpu`) — and evaluates all on the 10,000 test images: top-1 of
each, the difference in points, how often their predictions agree, and each model's delegate partitions and p50
on this CPU against float32's (1 thread, XNNPACK, 3 alternating rounds of 200 runs). Writes rewrite_accuracy.json in --out and
benchmarks/results/rewrite_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Column, publish  # noqa: E402


def main() -> int:
    from edgecnn.bench.local import run_local
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.edgetpu import preflight
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.data.sources import load_split
    from edgecnn.evaluate.predict import predict_tflite
    from edgecnn.tflite.metadata import read_spec
    from edgecnn.train.trainer import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/accuracy")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = out / "mobilenet_v3_small_0.75.keras"
    if not src.exists():
        t = time.perf_counter()
        train(TrainConfig("mobilenet_v3_small", "fashion-mnist", epochs=args.epochs, batch_size=128, input_size=32,
                          knobs={"alpha": 0.75}), src)
        print(f"trained {src.name} in {time.perf_counter() - t:.0f} s", flush=True)
    variants = {"plain": dict(rewrite=False), "cpu": dict(target="cpu"), "edgetpu": dict(target="edgetpu")}
    test = load_split("fashion-mnist", "test")
    rows, preds, reports = {}, {}, {}
    for name, kw in variants.items():
        path = out / f"v3s_rewrite_{name}.tflite"
        reports[name] = convert_model(src, path, ConversionRequest("int8", calibration="recipe:fashion-mnist-200",
                                                                   **kw))
        x = read_spec(path).apply(test.images)
        preds[name] = predict_tflite(path, x).argmax(1)
        rows[name] = {"top1": float(np.mean(preds[name] == test.labels)), "path": str(path),
                      "rewrites": [r for r in reports[name]["rewrites"] or [] if r["count"]],
                      "edgetpu_ops": "{ops_edgetpu}/{ops_total}".format(**preflight(path))}
    f32 = out / "v3s_rewrite_float32.tflite"
    convert_model(src, f32, ConversionRequest("float32"))
    settings = BenchSettings(threads=1, warmup=10, runs=200)
    p50 = {"float32": [], "plain": [], "cpu": []}
    for r in range(3):  # side by side, alternating order
        for name in (list(p50) if r % 2 == 0 else list(reversed(p50))):
            doc = run_local(str(f32) if name == "float32" else rows[name]["path"], settings)
            p50[name].append(doc["timing"]["steady"]["p50_ms"])
            if name != "float32":
                rows[name]["partitions"] = doc["delegation"]["partitions"]
    f32_p50 = float(np.median(p50["float32"]))
    for name in ("plain", "cpu"):
        rows[name]["p50_ms"] = float(np.median(p50[name]))
        rows[name]["p50_over_float32"] = rows[name]["p50_ms"] / f32_p50
    for name in ("cpu", "edgetpu"):
        rows[name]["diff_points_vs_plain"] = 100 * (rows[name]["top1"] - rows["plain"]["top1"])
        rows[name]["prediction_agreement_vs_plain"] = float(np.mean(preds[name] == preds["plain"]))
    (out / "rewrite_accuracy.json").write_text(json.dumps(rows, indent=2))
    labels = {"plain": "plain (`--no-rewrite`)", "cpu": "rewritten (`--target cpu`)",
              "edgetpu": "rewritten (`--target edgetpu`)"}
    publish("rewrite_accuracy",
            [Column("graph", "int8 graph"), Column("top1", "top-1", "{:.4f}"),
             Column("diff_points_vs_plain", "vs plain (points)", "{:+.2f}"),
             Column("prediction_agreement_vs_plain", "predictions equal to plain", "{:.2%}"),
             Column("partitions", "partitions"), Column("p50_ms", "p50 ms", "{:.3f}"),
             Column("p50_over_float32", "p50 / float32", "{:.2f}"), Column("edgetpu_ops", "Edge TPU ops mapped")],
            [{"graph": labels[name], **rows[name]} for name in variants],
            notes=[f"MobileNetV3-Small alpha 0.75 trained {args.epochs} epochs on Fashion-MNIST at 32x32x1; int8 from "
                   f"the same 200 calibration images; all {len(test):,} test images; float32 p50 {f32_p50:.3f} ms "
                   "(1 thread, XNNPACK, 3 alternating rounds of 200 runs)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
