"""Every zoo model through every quantization mode: which convert, their sizes, and why the others do not.

    .venv/bin/python benchmarks/convert_zoo.py [--out runs/bench/zoo] [--pattern '*'] [--calibration 32]

Each model is built at its default input (untrained, weights=None: sizes and convertibility do not depend on
training; accuracy on real data is benchmarks/convert_accuracy.py). int8 and int16x8 calibrate on the shipped
photo set (3-channel models) or digits (1-channel models). Writes (and prints) the table to
benchmarks/results/convert_zoo.{json,md} (docs/guides/quantization.md includes it; a mode that fails is a note).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results import Column, publish  # noqa: E402

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")


def main() -> int:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.errors import EdgecnnError
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build, get_entry, list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/zoo")
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--calibration", type=int, default=32)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in list_models(args.pattern):
        entry = get_entry(name)
        shape = entry.default_input
        classes = 1000 if shape[0] >= 224 else 10
        keras_path = out / f"{name}.keras"
        model = build(name, shape, classes)
        save_model(model, keras_path, default_spec(name, shape, [str(i) for i in range(classes)], "", model))
        cal = "photos" if shape[2] == 3 else "digits"
        row = {"model": name, "input": "x".join(map(str, shape))}
        for mode in MODES:
            t = time.perf_counter()
            try:
                r = convert_model(keras_path, out / f"{name}_{mode}.tflite",
                                  ConversionRequest(mode, calibration=cal if mode in ("int8", "int16x8") else None,
                                                    num_calibration=args.calibration))
                row[mode] = {"ok": True, "size_bytes": r["size_bytes"], "ratio": r["size_ratio_to_float32"],
                             "seconds": round(time.perf_counter() - t, 1)}
            except EdgecnnError as exc:
                row[mode] = {"ok": False, "error": str(exc)[:200]}
        if row.get("int16x8", {}).get("ok"):  # converting is not enough: it must also load and run
            from edgecnn.tflite.interpreter import allocate, make_interpreter

            try:
                allocate(make_interpreter(out / f"{name}_int16x8.tflite"))
            except (RuntimeError, ValueError, EdgecnnError) as exc:
                row["int16x8"] = {"ok": False, "error": f"converts but fails at allocate_tensors: "
                                                        f"{str(exc).splitlines()[0][:150]}"}
        results.append(row)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table, notes = [], []
    for row in results:
        cells = {"model": row["model"], "input": row["input"]}
        for mode in MODES:
            c = row[mode]
            if c["ok"]:
                cells[mode] = f"{c['size_bytes'] / 1024:,.0f} KiB ({c['ratio']:.2f})"
            else:
                notes.append(f"{row['model']} {mode}: {c['error']}")
                cells[mode] = f"fails ({len(notes)})"
        table.append(cells)
    publish("convert_zoo", [Column("model", "model"), Column("input", "input"), *(Column(m, m) for m in MODES)],
            table, notes=[f"({k}) {n}" for k, n in enumerate(notes, 1)]
            + [f"untrained (weights=None) at each model's default input; size (ratio to float32); int8 and int16x8 "
               f"calibrated on {args.calibration} images of the shipped photos (digits for 1-channel models)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
