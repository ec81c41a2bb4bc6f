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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_zoo import each_trained, edgetpu_preflight, measured, parser, write_results  # noqa: E402 - what every zoo benchmark of a task shares

# the training recipe of each segmenter on scenes:digits (the seg-quick recipe's for the first)
RECIPES = {"lraspp_mobilenet_v3_small": {"epochs": 7, "batch_size": 32, "lr": 5e-3,
                                         "options": {"minimalistic": True}}}
DEFAULT_RECIPE = {"epochs": 5, "batch_size": 32, "lr": 5e-3}
MODES = (("float32", "float32", False), ("int8", "int8", False), ("int8-per-tensor", "int8", True))


def main() -> int:
    from edgecnn.evaluate.accuracy import evaluate

    args = parser(__doc__, "runs/bench/segment_zoo").parse_args()
    rows = []
    for name, keras_path, row, out in each_trained("segmentation", args, RECIPES, DEFAULT_RECIPE):
        for label, mode, per_tensor in MODES:
            row[label] = measured(keras_path, out / f"{name}_{label}.tflite", args, mode,
                                  ("miou", "pixel_accuracy"), per_tensor)
        row["edgetpu_preflight"] = edgetpu_preflight(out / f"{name}_int8.tflite")
        k = evaluate(keras_path, args.data)
        row["keras_miou"], row["images"] = k["miou"], k["n"]
        for label in ("int8", "int8-per-tensor"):
            row[f"drop_{label}_points"] = round(100 * (row["float32"]["miou"] - row[label]["miou"]), 2)
        rows.append(row)
    write_results(args, rows)
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
