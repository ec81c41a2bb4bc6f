"""Every zoo segmenter on the built-in scenes:digits masks: trained, converted to float32 and integer-only int8
(per-channel and per-tensor), mIoU.

    .venv/bin/python benchmarks/segment_zoo.py [--out runs/bench/segment_zoo] [--pattern '*'] [--epochs N]
                                               [--input-size 128] [--calibration 200] [--runs 100]

For each registered model with `task: segmentation`: `edgecnn train` on scenes:digits (6,000 scenes, seed 0; 11
classes: background and the ten digits; each segmenter's recipe in `RECIPES` unless --epochs/--lr/--batch-size say
otherwise), `edgecnn convert` to float32, int8 (per-channel) and int8 --per-tensor (int8 IO, calibrated on the
train split), `edgecnn eval` of all on the 500 test scenes (mIoU from one confusion matrix), `edgecnn bench` on the
local CPU (1 thread, XNNPACK; arg-max post-processing timed apart from invoke) and the Edge TPU preflight of the
int8 file. Every step is the library call the CLI makes. Writes results.json in --out and
benchmarks/results/segment_zoo.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_zoo import (SETUP, each_trained, edgetpu_preflight, measured, parser, write_results,  # noqa: E402 - what
                        zoo_columns, zoo_row)  # every zoo benchmark of a task shares
from results import Column, publish  # noqa: E402

# the training recipe of each segmenter on scenes:digits (the seg-quick recipe's for the first)
RECIPES = {"lraspp_mobilenet_v3_small": {"epochs": 9, "batch_size": 32, "lr": 1e-2,
                                         "options": {"minimalistic": True, "alpha": 0.5, "output_stride": 8,
                                                     "refine_channels": 32}}}
DEFAULT_RECIPE = {"epochs": 5, "batch_size": 32, "lr": 5e-3}
MODES = (("float32", "float32", False), ("int8", "int8", False), ("int8-per-tensor", "int8", True))


def _largest_class_change(r: dict) -> str:
    """Per class float → int8 IoU: the background's and the digit that changed most."""
    pairs = [(a["name"], a["iou"], b["iou"]) for a, b in zip(r["float32"]["per_class"], r["int8"]["per_class"])
             if a["iou"] is not None and b["iou"] is not None]
    if not pairs:
        return f"{r['model']}: no class scored"
    bg = pairs[0]
    name, f, q = max(pairs[1:] or pairs, key=lambda t: abs(t[1] - t[2]))
    return (f"{r['model']} per class, float → int8 IoU: background {bg[1]:.3f} → {bg[2]:.3f}; the largest change "
            f"of a digit: '{name}' {f:.3f} → {q:.3f}")


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
    table = [{**zoo_row(r, args), "f32_miou": r["float32"]["miou"],
              "int8_miou": f"{r['int8']['miou']:.4f} ({r['drop_int8_points']:+.2f})",
              "pt_miou": f"{r['int8-per-tensor']['miou']:.4f} ({r['drop_int8-per-tensor_points']:+.2f})"}
             for r in rows]
    metric = [Column("f32_miou", "float mIoU", "{:.4f}"), Column("int8_miou", "int8 mIoU (drop pts)"),
              Column("pt_miou", "int8 per-tensor mIoU (drop pts)")]
    publish("segment_zoo", zoo_columns(metric, "arg-max ms"), table,
            notes=[f"test split of {args.data}: {rows[0]['images'] if rows else 0} images; {SETUP.format(args=args)}; "
                   "Keras mIoU " + ", ".join(f"{r['model']} {r['keras_miou']:.4f}" for r in rows),
                   *(_largest_class_change(r) for r in rows)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
