"""Every zoo detector on the built-in scenes:digits: trained, converted to float32 and integer-only int8, COCO mAP.

    .venv/bin/python benchmarks/detect_zoo.py [--out runs/bench/detect_zoo] [--pattern '*'] [--epochs N]
                                              [--input-size 128] [--calibration 200] [--runs 100]

For each registered model with `task: detection`: `edgecnn train` on scenes:digits (6,000 scenes, seed 0, no
augmentation: a mirrored digit is another glyph; each detector's own recipe in `RECIPES` unless
--epochs/--lr/--batch-size say otherwise),
`edgecnn convert` to float32 and to int8 (int8 IO, calibrated on the train split), `edgecnn eval` of all three on
the 500 test scenes (1,193 objects), `edgecnn bench` of both files on the local CPU (1 thread, XNNPACK; the
runner times invoke and post-processing apart when it can) and the Edge TPU preflight of the int8 file. Every step
is the library call the CLI makes. Writes a table (params, MACs, size, float and int8 mAP@.5 and
mAP@[.5:.95], the int8 drop in points, p50 latencies, XNNPACK partitions, the preflight verdict) to
benchmarks/results/detect_zoo.{json,md}, and results.json in --out.
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


def parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The options every zoo benchmark of a task takes (this one's, and benchmarks/segment_zoo.py's)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", default=out)
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--data", default="scenes:digits")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--calibration", type=int, default=200)
    return ap


def trained(name: str, args, recipes: dict, default: dict, out: Path) -> tuple[Path, dict]:
    """Zoo model `name` trained on --data with its recipe (--epochs/--batch-size/--lr override it): the .keras and
    the start of its row (params, MACs, training time, the recipe)."""
    from edgecnn.train.trainer import TrainConfig, train

    keras_path = out / f"{name}.keras"
    recipe = {**recipes.get(name, default),
              **{k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                 if v is not None}}
    t = time.perf_counter()
    summary = train(TrainConfig(name, args.data, recipe["epochs"], recipe["batch_size"], recipe["lr"], seed=0,
                                input_size=args.input_size, knobs=dict(recipe.get("options", {}))),
                    keras_path, progress=False)
    return keras_path, {"model": name, "params": summary["params"], "macs": summary["macs"],
                        "train_seconds": round(time.perf_counter() - t, 1), **recipe}


def each_trained(task: str, args, recipes: dict, default: dict):
    """(name, .keras, the start of its row, the output folder) of every zoo model of `task` matching --pattern,
    trained in turn (`trained`)."""
    from edgecnn.zoo import get_entry, list_models

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in [n for n in list_models(args.pattern) if get_entry(n).task == task]:
        yield (name, *trained(name, args, recipes, default, out), out)


def measured(keras_path: Path, path: Path, args, mode: str, keys: tuple, per_tensor: bool = False) -> dict:
    """`keras_path` converted to `path` in `mode` (int8: int8 IO, calibrated on --data's train split), evaluated on
    its test split and benched here: size, the eval result's `keys` and per-class numbers, the bench."""
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.evaluate.accuracy import evaluate

    req = ConversionRequest(mode, per_tensor=per_tensor, calibration=args.data if mode == "int8" else None,
                            num_calibration=args.calibration)
    report = convert_model(keras_path, path, req)
    r = evaluate(path, args.data)
    return {"size_bytes": path.stat().st_size, **{k: r[k] for k in keys}, "ops_in_float": report["ops_in_float"],
            "per_class": r["per_class"], "bench": _bench(path, args.runs)}


def write_results(args, rows: list) -> None:
    """rows as --out's results.json, atomically (a temporary file renamed into place)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(rows, indent=2))
    tmp.replace(out / "results.json")


def edgetpu_preflight(path: Path) -> dict:
    from edgecnn.convert.edgetpu import preflight

    pf = preflight(path)
    return {k: pf[k] for k in ("maps_fully", "ops_edgetpu", "ops_total", "first_cpu_op")}


SETUP = ("int8 IO, calibrated on {args.calibration} train scenes; `edgecnn bench` on the local CPU, 1 thread, XNNPACK, "
         "{args.runs} runs")


def zoo_row(r: dict, args) -> dict:
    """The columns every zoo benchmark of a task shares, from one of its rows: size, cost, speed, where it runs."""
    f, q, e = r["float32"], r["int8"], r["edgetpu_preflight"]
    cut = e["first_cpu_op"]
    return {"model": r["model"], "input": args.input_size, "params": r["params"], "macs": r["macs"] / 1e6,
            "train": f"{r['epochs']} ep, {r['train_seconds'] / 60:.1f} min", "f32_kib": f["size_bytes"] / 1024,
            "int8_kib": q["size_bytes"] / 1024, "f32_ms": f["bench"]["p50_ms"], "int8_ms": q["bench"]["p50_ms"],
            "post_ms": q["bench"]["postprocess_p50_ms"], "partitions": q["bench"]["partitions"],
            "edgetpu": "maps fully" if e["maps_fully"] else f"{e['ops_edgetpu']}/{e['ops_total']} ops"
                       + (f", cut at {cut['op']}" if cut else "")}


def zoo_columns(metric: list, post: str) -> list:
    """`zoo_row`'s columns around the task's own `metric` columns; `post` heads the post-processing time."""
    return [Column("model", "model"), Column("input", "input"), Column("params", "params", "{:,}"),
            Column("macs", "MACs", "{:.1f}M"), Column("train", "train"), Column("f32_kib", "float32 KiB", "{:.0f}"),
            Column("int8_kib", "int8 KiB", "{:.0f}"), *metric, Column("f32_ms", "p50 float32 ms", "{:.2f}"),
            Column("int8_ms", "p50 int8 ms", "{:.2f}"), Column("post_ms", post, "{:.2f}"),
            Column("partitions", "int8 partitions"), Column("edgetpu", "Edge TPU preflight")]


def main() -> int:
    from edgecnn.evaluate.accuracy import evaluate

    args = parser(__doc__, "runs/bench/detect_zoo").parse_args()
    rows = []
    for name, keras_path, row, out in each_trained("detection", args, RECIPES, DEFAULT_RECIPE):
        for mode in ("float32", "int8"):
            row[mode] = measured(keras_path, out / f"{name}_{mode}.tflite", args, mode, ("map", "map50"))
        row["edgetpu_preflight"] = edgetpu_preflight(out / f"{name}_int8.tflite")
        k = evaluate(keras_path, args.data)
        row["keras"] = {"map": k["map"], "map50": k["map50"]}
        row["objects"], row["images"] = k["objects"], k["n"]
        row["drop_map50_points"] = round(100 * (row["float32"]["map50"] - row["int8"]["map50"]), 2)
        row["drop_map_points"] = round(100 * (row["float32"]["map"] - row["int8"]["map"]), 2)
        rows.append(row)
    write_results(args, rows)
    table = [{**zoo_row(r, args), "f32_map50": r["float32"]["map50"], "int8_map50": r["int8"]["map50"],
              "drop50": r["drop_map50_points"], "f32_map": r["float32"]["map"], "int8_map": r["int8"]["map"],
              "drop": r["drop_map_points"]} for r in rows]
    metric = [Column("f32_map50", "float mAP@.5", "{:.3f}"), Column("int8_map50", "int8 mAP@.5", "{:.3f}"),
              Column("drop50", "drop pts", "{:+.2f}"), Column("f32_map", "float mAP@[.5:.95]", "{:.3f}"),
              Column("int8_map", "int8 mAP@[.5:.95]", "{:.3f}"), Column("drop", "drop pts", "{:+.2f}")]
    publish("detect_zoo", zoo_columns(metric, "post-proc ms"), table,
            notes=[f"test split of {args.data}: {rows[0]['images'] if rows else 0} images, "
                   f"{rows[0]['objects'] if rows else 0} objects; {SETUP.format(args=args)}; Keras mAP@.5 "
                   + ", ".join(f"{r['model']} {r['keras']['map50']:.3f}" for r in rows)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
