"""int8 on its target, before and after the rewrite passes: every zoo model, on this CPU and for the Edge TPU.

    .venv/bin/python benchmarks/int8_on_target.py [--out runs/bench/int8_target] [--pattern '*'] [--runs 100]
                                                  [--rounds 3]

Each zoo model (and LeNet-5 with average pooling, `lenet5_avg`) is built at its default input (untrained: the
ops and their speed do not depend on the weights, but a near-dead activation of an untrained net can leave an
elementwise op outside XNNPACK; docs/targets/cpu.md says why), converted to float32, to int8 with `--no-rewrite`
(the converter's plain graph) and to int8 (`--target cpu`, the default), and for the Edge TPU (`--target
edgetpu`). The three CPU models are benched side by side by the board runner (1 thread, XNNPACK), in rounds that
alternate their order, so their ratios come from one run on one machine; the table gives medians over rounds.
Edge TPU: the offline preflight's mapped ops, plain vs rewritten. Writes results.json in --out and
benchmarks/results/int8_on_target.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Column, publish  # noqa: E402


VARIANTS = [("lenet5_avg", "lenet5", {"pooling": "avg"})]  # LeCun's average-pooling LeNet: the avg_pool pass


def _outside(doc: dict) -> str:
    rows = (doc.get("delegation") or {}).get("ops_outside") or []
    return ", ".join(f"{o['op']}x{o['count']}" for o in rows) or "none"


def main() -> int:
    from edgecnn.bench.local import run_local
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.edgetpu import preflight
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build, get_entry, list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/int8_target")
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calibration", type=int, default=16)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(threads=1, warmup=10, runs=args.runs)
    results = []
    import fnmatch

    items = [(name, name, {}) for name in list_models(args.pattern)]
    items += [(label, zoo, knobs) for label, zoo, knobs in VARIANTS if fnmatch.fnmatch(label, args.pattern)]
    for name, zoo, knobs in items:
        shape = get_entry(zoo).default_input
        classes = 1000 if shape[0] >= 224 else 10
        src = out / f"{name}.keras"
        model = build(zoo, shape, classes, **knobs)
        save_model(model, src, default_spec(zoo, shape, [str(i) for i in range(classes)], "", model))
        cal = "photos" if shape[2] == 3 else "digits"
        paths = {"float32": out / f"{name}_float32.tflite", "int8_plain": out / f"{name}_int8_plain.tflite",
                 "int8": out / f"{name}_int8.tflite", "edgetpu": out / f"{name}_int8_edgetpu.tflite"}
        convert_model(src, paths["float32"], ConversionRequest("float32"))
        q = dict(calibration=cal, num_calibration=args.calibration)
        convert_model(src, paths["int8_plain"], ConversionRequest("int8", rewrite=False, **q))
        rep = convert_model(src, paths["int8"], ConversionRequest("int8", **q))
        convert_model(src, paths["edgetpu"], ConversionRequest("int8", target="edgetpu", **q))
        p50: dict[str, list[float]] = {k: [] for k in ("float32", "int8_plain", "int8")}
        docs = {}
        for r in range(args.rounds):
            order = list(p50) if r % 2 == 0 else list(reversed(p50))
            for k in order:
                doc = run_local(str(paths[k]), settings)
                if doc.get("status") != "ok":
                    raise SystemExit(f"{name} {k}: {doc.get('error')}")
                docs[k] = doc
                p50[k].append(doc["timing"]["steady"]["p50_ms"])
        med = {k: statistics.median(v) for k, v in p50.items()}
        tpu_plain, tpu = preflight(paths["int8_plain"]), preflight(paths["edgetpu"])
        row = {"model": name, "input": "x".join(map(str, shape)), "p50_ms": med, "p50_rounds_ms": p50,
               "partitions": {k: docs[k]["delegation"]["partitions"] for k in docs},
               "ops_outside": {k: _outside(docs[k]) for k in docs},
               "rewrites": [x for x in rep["rewrites"] if x["count"]],
               "edgetpu": {"plain": f"{tpu_plain['ops_edgetpu']}/{tpu_plain['ops_total']}",
                           "rewritten": f"{tpu['ops_edgetpu']}/{tpu['ops_total']}",
                           "maps_fully": tpu["maps_fully"],
                           "first_cpu_op": (tpu.get("first_cpu_op") or {}).get("op"),
                           "first_cpu_op_plain": (tpu_plain.get("first_cpu_op") or {}).get("op")}}
        results.append(row)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = []
    for r in results:
        m = r["p50_ms"]
        table.append({"model": r["model"], "input": r["input"],
                      "partitions": f"{r['partitions']['int8_plain']} → {r['partitions']['int8']}",
                      "outside": f"{r['ops_outside']['int8_plain']} → {r['ops_outside']['int8']}",
                      "f32_ms": m["float32"], "plain_ratio": m["int8_plain"] / m["float32"],
                      "rewritten_ratio": m["int8"] / m["float32"],
                      "edgetpu": f"{r['edgetpu']['plain']} → {r['edgetpu']['rewritten']}"
                                 + (" (full)" if r["edgetpu"]["maps_fully"] else ""),
                      "edgetpu_cut": f"{r['edgetpu']['first_cpu_op_plain'] or '-'} → {r['edgetpu']['first_cpu_op'] or '-'}",
                      "rewrites": ", ".join(f"{x['pass']} x{x['count']}" for x in r["rewrites"]) or "none"})
    publish("int8_on_target",
            [Column("model", "model"), Column("input", "input"), Column("partitions", "partitions plain → rewritten"),
             Column("outside", "ops outside XNNPACK, plain → rewritten"), Column("f32_ms", "p50 f32 ms", "{:.3f}"),
             Column("plain_ratio", "int8 plain / f32", "{:.2f}"),
             Column("rewritten_ratio", "int8 rewritten / f32", "{:.2f}"),
             Column("edgetpu", "Edge TPU ops mapped, plain → rewritten"),
             Column("edgetpu_cut", "Edge TPU: first op on the CPU, plain → rewritten"),
             Column("rewrites", "passes applied")],
            table, notes=[f"untrained (weights=None) at each model's default input; int8 calibrated on "
                          f"{args.calibration} images; board runner, 1 thread, XNNPACK, median of {args.rounds} "
                          f"alternating rounds of {args.runs} runs; Edge TPU: the offline preflight of the `--target edgetpu` "
                          "conversion (batch 1; Coral's op list in edgecnn/convert/data/edgetpu_ops.yaml)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
