"""int8 against float32 latency as a model widens: where integer kernels start to pay on this CPU.

    .venv/bin/python benchmarks/int8_width.py [--model centernet_mobilenet_v1] [--alphas 0.25,0.5,1.0]
                                              [--classes 10] [--runs 500] [--out runs/bench/int8_width]

For each width `alpha`: the zoo model built untrained (latency does not depend on what the weights learned), saved
with its spec, `edgecnn convert` to float32 and to integer-only int8 (calibrated on 100 scenes:digits images), and
both files benched side by side on the local CPU (1 thread, XNNPACK). Prints MACs, p50 of each, the int8/float32
ratio and XNNPACK partitions, and writes benchmarks/results/int8_width.{json,md} (docs/tasks/detection.md includes
the table). Made for detect-quick's CenterNet
(alpha 0.25), whose int8 runs slower than its float32 on this AVX-512 CPU: narrow layers (8-64 channels) leave
int8 kernels little to gain over well-vectorized float ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results import Column, publish  # noqa: E402


def main() -> int:
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.bench.run import bench_model
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.devices.profiles import load_profile
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build, get_entry
    from edgecnn.zoo.counting import summarize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="centernet_mobilenet_v1")
    ap.add_argument("--alphas", default="0.25,0.5,1.0")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--calibration", default="scenes:digits")
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--out", default="runs/bench/int8_width")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = get_entry(args.model).default_input
    rows = []
    for alpha in (float(a) for a in args.alphas.split(",")):
        model = build(args.model, shape, args.classes, alpha=alpha)
        keras_path = out / f"{args.model}_{alpha:g}.keras"
        save_model(model, keras_path, default_spec(args.model, shape, [str(i) for i in range(args.classes)], "",
                                                   model))
        row = {"alpha": alpha, "macs": summarize(model)["macs"]}
        for mode in ("float32", "int8"):
            path = out / f"{args.model}_{alpha:g}_{mode}.tflite"
            convert_model(keras_path, path, ConversionRequest(
                mode, calibration=args.calibration if mode == "int8" else None, num_calibration=100))
            doc = bench_model(str(path), load_profile("local-cpu"), BenchSettings(threads=1, warmup=20, runs=args.runs))
            row[mode] = {"p50_ms": ((doc.get("timing") or {}).get("steady") or {}).get("p50_ms"),
                         "partitions": (doc.get("delegation") or {}).get("partitions"), "status": doc.get("status")}
        rows.append(row)
    table = []
    for r in rows:
        f, q = r["float32"], r["int8"]
        table.append({**r, "macs_m": r["macs"] / 1e6, "f32_p50": f["p50_ms"], "int8_p50": q["p50_ms"],
                      "ratio": q["p50_ms"] / f["p50_ms"] if f["p50_ms"] and q["p50_ms"] else None,
                      "partitions": f"{f['partitions']} / {q['partitions']}"})
    publish("int8_width", [Column("alpha", "alpha", "{:g}"), Column("macs_m", "MACs", "{:.1f}M"),
                           Column("f32_p50", "float32 p50 ms", "{:.3f}"), Column("int8_p50", "int8 p50 ms", "{:.3f}"),
                           Column("ratio", "int8 / float32", "{:.2f}"),
                           Column("partitions", "partitions float32 / int8")], table,
            notes=[f"{args.model}, untrained, {args.classes} classes, input {shape[0]}x{shape[1]}, int8 calibrated "
                   f"on 100 {args.calibration} images; local CPU, 1 thread, XNNPACK, {args.runs} runs"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
