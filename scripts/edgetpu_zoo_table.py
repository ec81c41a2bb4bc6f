#!/usr/bin/env python3
"""Edge TPU preflight of every zoo model converted to int8 (batch 1): prints the Markdown table of docs/targets/edgetpu.md.

    .venv/bin/python scripts/edgetpu_zoo_table.py [PATTERN] [--input-size N] [--json]

Each model is built untrained (weights do not change which ops the compiler maps), given a fixed batch of 1,
converted to full-integer int8 for the Edge TPU by edgecnn's converter (`--target edgetpu`: its rewrite passes;
8 calibration images), and checked by
`edgecnn.convert.edgetpu`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def int8_batch1(name: str, shape, tmp: Path) -> Path:
    """The zoo model converted by edgecnn's own converter: full-integer int8, batch 1, 8 calibration samples."""
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo.registry import build

    keras_path, out = tmp / f"{name}.keras", tmp / f"{name}.tflite"
    save_model(build(name, input_shape=shape, num_classes=10), keras_path,
               default_spec(name, shape, [str(i) for i in range(10)], ""))
    convert_model(keras_path, out, ConversionRequest("int8", calibration="photos" if shape[2] == 3 else "digits",
                                                     num_calibration=8, target="edgetpu"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern", nargs="?", default="*")
    ap.add_argument("--input-size", type=int, default=None, help="square input side (default: each model's own)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from edgecnn.convert.edgetpu import preflight
    from edgecnn.zoo.registry import get_entry, list_models

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in list_models(a.pattern):
            entry = get_entry(name)
            shape = tuple(entry.default_input)
            if a.input_size:
                shape = (a.input_size, a.input_size, shape[2])
            t0 = time.time()
            path = int8_batch1(name, shape, Path(tmp))
            r = preflight(path)
            cut = r["first_cpu_op"]
            failed = [c["check"] for c in r["checks"] if not c["ok"]]
            rows.append({"model": name, "input": "x".join(map(str, shape)), "maps_fully": r["maps_fully"],
                         "ops_edgetpu": r["ops_edgetpu"], "ops_total": r["ops_total"],
                         "first_cpu_op": f"#{cut['index']} {cut['op']}: {cut['reason']}" if cut else "",
                         "failed_checks": failed, "seconds": round(time.time() - t0, 1)})
            print(f"{name}: {rows[-1]}", file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| zoo model (int8, batch 1) | input | Edge TPU ops | maps fully | first op on the CPU |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['ops_edgetpu']}/{r['ops_total']} | "
              f"{'yes' if r['maps_fully'] else 'no'} | {r['first_cpu_op'] or '—'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
