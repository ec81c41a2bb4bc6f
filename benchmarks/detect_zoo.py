"""Every zoo detector on the built-in scenes:digits: trained, converted to float32 and integer-only int8, COCO mAP.

    .venv/bin/python benchmarks/detect_zoo.py [--out runs/bench/detect_zoo] [--pattern '*'] [--epochs 12]
                                              [--input-size 128] [--calibration 200]

For each registered model with `task: detection`: `edgecnn train` on scenes:digits (2,000 scenes, flip
augmentation, seed 0), `edgecnn convert` to float32 and to int8 (int8 IO, calibrated on the train split), and
`edgecnn eval` of all three on the 500 test scenes (~1,200 objects). Every step is the library call the CLI makes.
Prints a Markdown table (params, MACs, size, float and int8 mAP@.5 and mAP@[.5:.95], the int8 drop in points) and
writes results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.train.trainer import TrainConfig, train
    from edgecnn.zoo import get_entry, list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/detect_zoo")
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--data", default="scenes:digits")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--calibration", type=int, default=200)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in [n for n in list_models(args.pattern) if get_entry(n).task == "detection"]:
        keras_path = out / f"{name}.keras"
        t = time.perf_counter()
        summary = train(TrainConfig(name, args.data, args.epochs, args.batch_size, args.lr, seed=0,
                                    input_size=args.input_size, augment=("flip",)), keras_path, progress=False)
        row = {"model": name, "params": summary["params"], "macs": summary["macs"],
               "train_seconds": round(time.perf_counter() - t, 1), "epochs": args.epochs}
        for mode in ("float32", "int8"):
            path = out / f"{name}_{mode}.tflite"
            req = ConversionRequest(mode, calibration=args.data if mode == "int8" else None,
                                    num_calibration=args.calibration)
            report = convert_model(keras_path, path, req)
            r = evaluate(path, args.data)
            row[mode] = {"size_bytes": path.stat().st_size, "map": r["map"], "map50": r["map50"],
                         "ops_in_float": report["ops_in_float"], "per_class": r["per_class"]}
        k = evaluate(keras_path, args.data)
        row["keras"] = {"map": k["map"], "map50": k["map50"]}
        row["objects"], row["images"] = k["objects"], k["n"]
        row["drop_map50_points"] = round(100 * (row["float32"]["map50"] - row["int8"]["map50"]), 2)
        row["drop_map_points"] = round(100 * (row["float32"]["map"] - row["int8"]["map"]), 2)
        rows.append(row)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"| model | input | params | MACs | epochs | float32 KiB | int8 KiB | float mAP@.5 | int8 mAP@.5 | drop "
          f"pts | float mAP@[.5:.95] | int8 mAP@[.5:.95] | drop pts |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, q = r["float32"], r["int8"]
        print(f"| {r['model']} | {args.input_size} | {r['params']:,} | {r['macs'] / 1e6:.1f}M | {r['epochs']} | "
              f"{f['size_bytes'] / 1024:.0f} | {q['size_bytes'] / 1024:.0f} | {f['map50']:.3f} | {q['map50']:.3f} | "
              f"{r['drop_map50_points']:+.2f} | {f['map']:.3f} | {q['map']:.3f} | {r['drop_map_points']:+.2f} |")
    print(f"(test split of {args.data}: {rows[0]['images'] if rows else 0} images, "
          f"{rows[0]['objects'] if rows else 0} objects; Keras mAP@.5 "
          + ", ".join(f"{r['model']} {r['keras']['map50']:.3f}" for r in rows) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
