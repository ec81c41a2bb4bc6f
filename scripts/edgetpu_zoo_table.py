#!/usr/bin/env python3
"""Edge TPU preflight of every zoo model converted to int8 (batch 1): prints the README's Markdown table.

    .venv/bin/python scripts/edgetpu_zoo_table.py [PATTERN] [--input-size N] [--json]

Each model is built untrained (weights do not change which ops the compiler maps), given a fixed batch of 1,
converted to full-integer int8 with a few random calibration samples, and checked by `edgecnn.bench.edgetpu`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def int8_batch1(model, calib: int = 4) -> bytes:
    import keras
    import numpy as np
    import tensorflow as tf

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    inp = keras.Input(shape, batch_size=1)
    fixed = keras.Model(inp, model(inp))
    rng = np.random.default_rng(0)
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, *shape)).astype("float32")] for _ in range(calib))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return conv.convert()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern", nargs="?", default="*")
    ap.add_argument("--input-size", type=int, default=None, help="square input side (default: each model's own)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from edgecnn.bench.edgetpu import preflight
    from edgecnn.zoo.registry import build, get_entry, list_models

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in list_models(a.pattern):
            entry = get_entry(name)
            shape = tuple(entry.default_input)
            if a.input_size:
                shape = (a.input_size, a.input_size, shape[2])
            t0 = time.time()
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(int8_batch1(build(name, input_shape=shape, num_classes=10)))
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
