"""int8 accuracy on real data: float vs int8 top-1 on the full Fashion-MNIST test set (10,000 images).

    .venv/bin/python benchmarks/convert_accuracy.py [--out runs/bench/accuracy] [--epochs-scale 1.0]

Trains (or reuses, if present in --out) LeNet-5, a MobileNetV2 (alpha 0.35) and a MobileNetV3-Small (alpha 0.75,
hard-swish + squeeze-excite) at 32x32, converts each to full-integer int8 (200 calibration images from the *train*
split), evaluates both on the test split, and runs the accuracy-guided mode on the MobileNetV3 with a 0.3-point
limit. Prints a Markdown table and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
    ap.add_argument("--max-drop", type=float, default=0.3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, name, knobs, epochs in MODELS:
        keras_path = out / f"{label}.keras"
        if not keras_path.exists():
            t = time.perf_counter()
            train(TrainConfig(name, "fashion-mnist", epochs=max(1, int(epochs * args.epochs_scale)), batch_size=128,
                              input_size=32, knobs=knobs), keras_path)
            print(f"trained {label} in {time.perf_counter() - t:.0f} s", flush=True)
        req = ConversionRequest("int8", calibration="recipe:fashion-mnist-200")
        conv = convert_model(keras_path, out / f"{label}_int8.tflite", req)
        f = evaluate(keras_path, "fashion-mnist")["top1"]
        q = evaluate(out / f"{label}_int8.tflite", "fashion-mnist")["top1"]
        row = {"model": label, "float_top1": f, "int8_top1": q, "ratio": q / f, "drop_points": 100 * (f - q),
               "size_ratio": conv["size_ratio_to_float32"], "convert_s": conv["wall_seconds"]}
        rows.append(row)
        if name.startswith("mobilenet_v3"):
            # per-tensor weights (what some integer accelerators require) hurt hard-swish/SE nets more: the
            # guided mode has work to do there
            for per_tensor in (False, True):
                greq = ConversionRequest("int8", calibration="recipe:fashion-mnist-200", per_tensor=per_tensor)
                tag = "per-tensor" if per_tensor else "per-channel"
                gpath = out / f"{label}_int8_{tag}_guided.tflite"
                plain = out / f"{label}_int8_{tag}.tflite"
                convert_model(keras_path, plain, greq)
                q0 = evaluate(plain, "fashion-mnist")["top1"]
                try:
                    g = guided_convert(keras_path, gpath, greq, args.max_drop, "fashion-mnist", eval_limit=None,
                                       log=print)
                    gq = evaluate(gpath, "fashion-mnist")["top1"]
                    rows.append({"model": f"{label} int8 {tag}", "float_top1": f, "int8_top1": q0,
                                 "ratio": q0 / f, "drop_points": 100 * (f - q0),
                                 "size_ratio": conv["size_ratio_to_float32"],
                                 "guided": {"top1": gq, "drop_points": 100 * (f - gq),
                                            "kept_in_float": g["guided"]["kept_in_float"],
                                            "steps": [(s["kept"], round(s["drop_points"], 2))
                                                      for s in g["guided"]["steps"]],
                                            "cost": g["guided"]["cost"], "size_ratio": g["size_ratio_to_float32"]}})
                except Exception as exc:  # report, do not hide
                    rows.append({"model": f"{label} int8 {tag}", "float_top1": f, "int8_top1": q0, "ratio": q0 / f,
                                 "drop_points": 100 * (f - q0), "size_ratio": conv["size_ratio_to_float32"],
                                 "guided": {"error": str(exc)}})
                print(json.dumps(rows[-1]), flush=True)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n| model | float top-1 | int8 top-1 | int8/float | drop (pts) | size vs f32 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['float_top1']:.4f} | {r['int8_top1']:.4f} | {r['ratio']:.4f} | "
              f"{r['drop_points']:.2f} | {r['size_ratio']:.3f} |")
        g = r.get("guided")
        if g and "top1" in g:
            kept = len(g["kept_in_float"])
            print(f"| {r['model']}, guided (<= {args.max_drop} pts; {kept} layer(s) kept in float) | "
                  f"{r['float_top1']:.4f} | {g['top1']:.4f} | {g['top1'] / r['float_top1']:.4f} | "
                  f"{g['drop_points']:.2f} | {g['size_ratio']:.3f} |")
        elif g:
            print(f"| {r['model']}, guided | failed: {g['error']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
