"""Every zoo detector on the built-in scenes:digits: trained, converted to float32 and integer-only int8, COCO mAP.

    .venv/bin/python benchmarks/detect_zoo.py [--out runs/bench/detect_zoo] [--pattern '*'] [--epochs N]
                                              [--input-size 128] [--calibration 200] [--runs 100]

For each registered model with `task: detection`: `edgecnn train` on scenes:digits (6,000 scenes, seed 0, no
augmentation: a mirrored digit is another glyph; each detector's own recipe in `RECIPES` unless
--epochs/--lr/--batch-size say otherwise),
`edgecnn convert` to float32 and to int8 (int8 IO, calibrated on the train split), `edgecnn eval` of all three on
the 500 test scenes (1,193 objects), `edgecnn bench` of both files on the local CPU (1 thread, XNNPACK; the
runner times invoke and post-processing apart when it can) and the Edge TPU preflight of the int8 file. Every step
is the library call the CLI makes. Prints a Markdown table (params, MACs, size, float and int8 mAP@.5 and
mAP@[.5:.95], the int8 drop in points, p50 latencies, XNNPACK partitions, the preflight verdict) and writes
results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# the training recipe of each detector on scenes:digits (the detect-quick recipe's for centernet_mobilenet_v1)
# (MobileNetV2 backbones take ~2.7x V1's time a step here, so they get fewer epochs to keep a run near 30 min)
RECIPES = {"centernet_mobilenet_v1": {"epochs": 8, "batch_size": 32, "lr": 4e-3},
           "centernet_mobilenet_v2": {"epochs": 6, "batch_size": 32, "lr": 4e-3},
           "ssdlite_mobilenet_v2": {"epochs": 6, "batch_size": 16, "lr": 2e-3}}
DEFAULT_RECIPE = {"epochs": 6, "batch_size": 32, "lr": 4e-3}


def _bench(path: Path, runs: int) -> dict:
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.bench.run import bench_model
    from edgecnn.devices.profiles import load_profile

    doc = bench_model(str(path), load_profile("local-cpu"), BenchSettings(threads=1, warmup=10, runs=runs))
    steady = (doc.get("timing") or {}).get("steady") or {}
    post = doc.get("postprocess") or {}
    return {"status": doc.get("status"), "error": doc.get("error"), "p50_ms": steady.get("p50_ms"),
            "postprocess_p50_ms": post.get("p50_ms"), "partitions": (doc.get("delegation") or {}).get("partitions"),
            "ops_outside": (doc.get("delegation") or {}).get("ops_outside")}


def main() -> int:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.edgetpu import preflight
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.train.trainer import TrainConfig, train
    from edgecnn.zoo import get_entry, list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/detect_zoo")
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
    for name in [n for n in list_models(args.pattern) if get_entry(n).task == "detection"]:
        keras_path = out / f"{name}.keras"
        recipe = {**RECIPES.get(name, DEFAULT_RECIPE),
                  **{k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                     if v is not None}}
        t = time.perf_counter()
        summary = train(TrainConfig(name, args.data, recipe["epochs"], recipe["batch_size"], recipe["lr"], seed=0,
                                    input_size=args.input_size), keras_path, progress=False)
        row = {"model": name, "params": summary["params"], "macs": summary["macs"],
               "train_seconds": round(time.perf_counter() - t, 1), **recipe}
        for mode in ("float32", "int8"):
            path = out / f"{name}_{mode}.tflite"
            req = ConversionRequest(mode, calibration=args.data if mode == "int8" else None,
                                    num_calibration=args.calibration)
            report = convert_model(keras_path, path, req)
            r = evaluate(path, args.data)
            row[mode] = {"size_bytes": path.stat().st_size, "map": r["map"], "map50": r["map50"],
                         "ops_in_float": report["ops_in_float"], "per_class": r["per_class"],
                         "bench": _bench(path, args.runs)}
        pf = preflight(out / f"{name}_int8.tflite")
        row["edgetpu_preflight"] = {"maps_fully": pf["maps_fully"], "ops_edgetpu": pf["ops_edgetpu"],
                                    "ops_total": pf["ops_total"], "first_cpu_op": pf["first_cpu_op"]}
        k = evaluate(keras_path, args.data)
        row["keras"] = {"map": k["map"], "map50": k["map50"]}
        row["objects"], row["images"] = k["objects"], k["n"]
        row["drop_map50_points"] = round(100 * (row["float32"]["map50"] - row["int8"]["map50"]), 2)
        row["drop_map_points"] = round(100 * (row["float32"]["map"] - row["int8"]["map"]), 2)
        rows.append(row)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("| model | input | params | MACs | train | float32 KiB | int8 KiB | float mAP@.5 | int8 mAP@.5 | drop pts | "
          "float mAP@[.5:.95] | int8 mAP@[.5:.95] | drop pts | p50 float32 ms | p50 int8 ms | post-proc ms | "
          "int8 partitions | Edge TPU preflight |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def ms(v):
        return "–" if v is None else f"{v:.2f}"

    for r in rows:
        f, q, e = r["float32"], r["int8"], r["edgetpu_preflight"]
        cut = e["first_cpu_op"]
        verdict = "maps fully" if e["maps_fully"] else f"{e['ops_edgetpu']}/{e['ops_total']} ops" + (
            f", cut at {cut['op']}" if cut else "")
        print(f"| {r['model']} | {args.input_size} | {r['params']:,} | {r['macs'] / 1e6:.1f}M | "
              f"{r['epochs']} ep, {r['train_seconds'] / 60:.1f} min | "
              f"{f['size_bytes'] / 1024:.0f} | {q['size_bytes'] / 1024:.0f} | {f['map50']:.3f} | {q['map50']:.3f} | "
              f"{r['drop_map50_points']:+.2f} | {f['map']:.3f} | {q['map']:.3f} | {r['drop_map_points']:+.2f} | "
              f"{ms(f['bench']['p50_ms'])} | {ms(q['bench']['p50_ms'])} | {ms(q['bench']['postprocess_p50_ms'])} | "
              f"{q['bench']['partitions']} | {verdict} |")
    print(f"(test split of {args.data}: {rows[0]['images'] if rows else 0} images, "
          f"{rows[0]['objects'] if rows else 0} objects; Keras mAP@.5 "
          + ", ".join(f"{r['model']} {r['keras']['map50']:.3f}" for r in rows) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
