"""Every zoo segmenter on the built-in scenes:digits masks: trained, converted to float32 and integer-only int8
(per-channel and per-tensor), mIoU.

    .venv/bin/python benchmarks/segment_zoo.py [--out runs/bench/segment_zoo] [--pattern '*'] [--epochs N]
                                               [--input-size 128] [--calibration 200] [--runs 100]

For each registered model with `task: segmentation`: `edgecnn train` on scenes:digits (6,000 scenes, seed 0; 11
classes: background and the ten digits; each segmenter's recipe in `RECIPES` unless --epochs/--lr/--batch-size say
otherwise), `edgecnn convert` to float32, int8 (per-channel) and int8 --per-tensor (int8 IO, calibrated on the
train split), `edgecnn eval` of all on the 500 test scenes (mIoU from one confusion matrix), `edgecnn bench` on the
local CPU (1 thread, XNNPACK; arg-max post-processing timed apart from invoke) and the Edge TPU preflight of the
int8 file. Every step is the library call the CLI makes. Prints a Markdown table and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_zoo import _bench  # noqa: E402 - one bench of a .tflite for every zoo benchmark

# the training recipe of each segmenter on scenes:digits (the seg-quick recipe's for the first)
RECIPES = {"lraspp_mobilenet_v3_small": {"epochs": 6, "batch_size": 32, "lr": 4e-3}}
DEFAULT_RECIPE = {"epochs": 6, "batch_size": 32, "lr": 4e-3}
MODES = (("float32", "float32", False), ("int8", "int8", False), ("int8-per-tensor", "int8", True))


def main() -> int:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.edgetpu import preflight
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.train.trainer import TrainConfig, train
    from edgecnn.zoo import get_entry, list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/segment_zoo")
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--data", default="scenes:digits")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--calibration", type=int, default=200)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in [n for n in list_models(args.pattern) if get_entry(n).task == "segmentation"]:
        keras_path = out / f"{name}.keras"
        recipe = {**RECIPES.get(name, DEFAULT_RECIPE),
                  **{k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                     if v is not None}}
        t = time.perf_counter()
        summary = train(TrainConfig(name, args.data, recipe["epochs"], recipe["batch_size"], recipe["lr"], seed=0,
                                    input_size=args.input_size), keras_path, progress=False)
        row = {"model": name, "params": summary["params"], "macs": summary["macs"],
               "train_seconds": round(time.perf_counter() - t, 1), **recipe}
        for label, mode, per_tensor in MODES:
            path = out / f"{name}_{label}.tflite"
            req = ConversionRequest(mode, per_tensor=per_tensor, calibration=args.data if mode == "int8" else None,
                                    num_calibration=args.calibration)
            report = convert_model(keras_path, path, req)
            r = evaluate(path, args.data)
            row[label] = {"size_bytes": path.stat().st_size, "miou": r["miou"], "pixel_accuracy": r["pixel_accuracy"],
                          "ops_in_float": report["ops_in_float"], "per_class": r["per_class"],
                          "bench": _bench(path, args.runs)}
        pf = preflight(out / f"{name}_int8.tflite")
        row["edgetpu_preflight"] = {"maps_fully": pf["maps_fully"], "ops_edgetpu": pf["ops_edgetpu"],
                                    "ops_total": pf["ops_total"], "first_cpu_op": pf["first_cpu_op"]}
        k = evaluate(keras_path, args.data)
        row["keras_miou"], row["images"] = k["miou"], k["n"]
        for label in ("int8", "int8-per-tensor"):
            row[f"drop_{label}_points"] = round(100 * (row["float32"]["miou"] - row[label]["miou"]), 2)
        rows.append(row)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("| model | input | params | MACs | train | float32 KiB | int8 KiB | float mIoU | int8 mIoU (drop pts) | "
          "int8 per-tensor mIoU (drop pts) | p50 float32 ms | p50 int8 ms | arg-max ms | int8 partitions | "
          "Edge TPU preflight |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def ms(v):
        return "–" if v is None else f"{v:.2f}"

    for r in rows:
        f, q, t, e = r["float32"], r["int8"], r["int8-per-tensor"], r["edgetpu_preflight"]
        cut = e["first_cpu_op"]
        verdict = "maps fully" if e["maps_fully"] else f"{e['ops_edgetpu']}/{e['ops_total']} ops" + (
            f", cut at {cut['op']}" if cut else "")
        print(f"| {r['model']} | {args.input_size} | {r['params']:,} | {r['macs'] / 1e6:.1f}M | "
              f"{r['epochs']} ep, {r['train_seconds'] / 60:.1f} min | "
              f"{f['size_bytes'] / 1024:.0f} | {q['size_bytes'] / 1024:.0f} | {f['miou']:.4f} | "
              f"{q['miou']:.4f} ({r['drop_int8_points']:+.2f}) | {t['miou']:.4f} ({r['drop_int8-per-tensor_points']:+.2f}) | "
              f"{ms(f['bench']['p50_ms'])} | {ms(q['bench']['p50_ms'])} | {ms(q['bench']['postprocess_p50_ms'])} | "
              f"{q['bench']['partitions']} | {verdict} |")
    print(f"(test split of {args.data}: {rows[0]['images'] if rows else 0} images; Keras mIoU "
          + ", ".join(f"{r['model']} {r['keras_miou']:.4f}" for r in rows) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
