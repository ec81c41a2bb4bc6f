"""int8 accuracy on real data: float vs int8 top-1 on the full Fashion-MNIST test set (10,000 images).

    .venv/bin/python benchmarks/convert_accuracy.py [--out runs/bench/accuracy] [--epochs-scale 1.0] [--max-drop 0.3,0]

Trains (or reuses, if present in --out) LeNet-5, a MobileNetV2 (alpha 0.35) and a MobileNetV3-Small (alpha 0.75,
hard-swish + squeeze-excite) at 32x32, converts each to full-integer int8 (200 calibration images from the *train*
split), evaluates both on the test split; the MobileNetV3 also with per-tensor weights, and through the accuracy-guided
mode (`--max-accuracy-drop`) at each limit of --max-drop. Writes benchmarks/results/convert_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Column, publish  # noqa: E402

MODELS = [  # (label, zoo name, knobs, epochs)
    ("lenet5", "lenet5", {}, 15),
    ("mobilenet_v2_0.35", "mobilenet_v2", {"alpha": 0.35}, 6),
    ("mobilenet_v3_small_0.75", "mobilenet_v3_small", {"alpha": 0.75}, 6),
]


def main() -> int:
    from edgecnn.convert.converter import convert_model
    from edgecnn.guided import guided_convert
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.train.trainer import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/accuracy")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--max-drop", default="0.3,0", help="the guided mode's limits, in points (comma-separated)")
    args = ap.parse_args()
    limits = [float(v) for v in args.max_drop.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, notes = [], []
    for label, name, knobs, epochs in MODELS:
        keras_path = out / f"{label}.keras"
        if not keras_path.exists():
            t = time.perf_counter()
            train(TrainConfig(name, "fashion-mnist", epochs=max(1, int(epochs * args.epochs_scale)), batch_size=128,
                              input_size=32, knobs=knobs), keras_path)
            print(f"trained {label} in {time.perf_counter() - t:.0f} s", flush=True)
        f = evaluate(keras_path, "fashion-mnist")["top1"]
        weights = ("per-channel", "per-tensor") if name.startswith("mobilenet_v3") else ("per-channel",)
        for tag in weights:
            # per-tensor weights (what some integer accelerators require) hurt hard-swish/SE nets more: the
            # guided mode has work to do there
            req = ConversionRequest("int8", calibration="recipe:fashion-mnist-200", per_tensor=tag == "per-tensor")
            plain = out / f"{label}_int8_{tag}.tflite"
            conv = convert_model(keras_path, plain, req)
            q = evaluate(plain, "fashion-mnist")["top1"]
            row = {"model": label, "weights": tag, "variant": "int8", "float_top1": f, "int8_top1": q,
                   "ratio": q / f, "drop_points": 100 * (f - q), "size_ratio": conv["size_ratio_to_float32"],
                   "size_bytes": conv["size_bytes"], "convert_s": conv["wall_seconds"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not name.startswith("mobilenet_v3"):
                continue
            for limit in limits:
                gpath = out / f"{label}_int8_{tag}_guided_{limit:g}.tflite"
                variant = f"guided, limit {limit:g} pts"
                try:
                    g = guided_convert(keras_path, gpath, req, limit, "fashion-mnist", eval_limit=None, log=print)
                except Exception as exc:  # report, do not hide
                    notes.append(f"{label} {tag} {variant}: failed: {exc}")
                    continue
                gq = evaluate(gpath, "fashion-mnist")["top1"]
                kept, int16 = g["guided"]["kept_in_float"], g["guided"].get("int16") or {}
                cost = g["guided"]["cost"]
                steps = ", ".join(f"{s['kept']} → {s['drop_points']:.2f}" for s in g["guided"]["steps"])
                rows.append({"model": label, "weights": tag, "variant": variant, "float_top1": f, "int8_top1": gq,
                             "ratio": gq / f, "drop_points": 100 * (f - gq),
                             "size_ratio": g["size_ratio_to_float32"], "size_bytes": g["size_bytes"],
                             "kept_in_float": len(kept), "kept": kept, "steps": g["guided"]["steps"],
                             "int16_ops": int16.get("int16_ops") if int16.get("reached") else 0,
                             "p50_ms": cost["p50_ms_guided"], "p50_ms_int8": cost["p50_ms_full_int8"],
                             "p50_ms_float32": cost["p50_ms_float32"], "cost": cost})
                notes.append(f"{label} {tag}, {variant}: layers kept in float → drop (points): {steps}"
                             + (f"; kept: {', '.join(kept)}" if kept else ""))
                print(json.dumps(rows[-1], default=str), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    publish("convert_accuracy",
            [Column("model", "model"), Column("weights", "weights"), Column("variant", "int8 graph"),
             Column("float_top1", "float top-1", "{:.4f}"), Column("int8_top1", "int8 top-1", "{:.4f}"),
             Column("ratio", "int8 / float", "{:.4f}"), Column("drop_points", "drop (points)", "{:.2f}"),
             Column("kept_in_float", "layers kept in float"), Column("int16_ops", "int16 rules"),
             Column("p50_ms", "guided p50 ms", "{:.3f}"), Column("p50_ms_int8", "full int8 p50 ms", "{:.3f}"), Column("size_bytes", "size (B)", "{:,}"),
             Column("size_ratio", "size vs float32", "{:.3f}")],
            rows, notes=["Fashion-MNIST, all 10,000 test images, 32x32x1; int8 IO, 200 calibration images of the "
                         "train split (`recipe:fashion-mnist-200`); the guided mode evaluates on the same test "
                         "images; its p50s are its own latency check (board runner, 1 thread, XNNPACK, 30 runs)",
                   *notes])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
