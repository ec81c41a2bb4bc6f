"""Does `edgecnn bench` measure what a bare LiteRT loop measures?

MobileNetV2 1.0 224 (untrained: `keras.applications.MobileNetV2(weights=None)`) in float32 and int8, 1 and 2
threads. For each case, in alternating rounds (so drift from other load hits every method alike):

- `edgecnn bench MODEL --json`    (the CLI: board runner in a subprocess)
- a bare ai_edge_litert loop      (fresh process: Interpreter, set inputs once, timed `invoke()` calls)
- `litert-benchmark`              (ai-edge-litert's own Python benchmark tool, CompiledModel API), for reference

with the same warm-up and run counts. The table shows each method's median-over-rounds p50 and edgecnn's ratio to
the bare loop; the pass rule is |ratio - 1| <= 3%. Results go to stdout and to benchmarks/results/bench_fidelity.{json,md}
(docs/targets/cpu.md includes the table).

    .venv/bin/python benchmarks/bench_fidelity.py [--rounds 3] [--warmup 20] [--runs 200] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOLERANCE = 0.03

BARE_LOOP = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, threads, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
rng = np.random.default_rng(0)
for d in it.get_input_details():
    dt = np.dtype(d["dtype"])
    v = rng.uniform(-1, 1, d["shape"]).astype(dt) if dt.kind == "f" else rng.integers(-128, 127, d["shape"]).astype(dt)
    it.set_tensor(d["index"], v)
for _ in range(warmup + 1):
    it.invoke()
ts = []
for _ in range(runs):
    t0 = time.perf_counter_ns(); it.invoke(); ts.append(time.perf_counter_ns() - t0)
print(json.dumps({"p50_ms": float(np.median(ts)) / 1e6}))
"""


def make_models(out_dir: Path) -> dict[str, Path]:
    """float32 and int8 MobileNetV2 1.0 224 .tflite files (reused when already in `out_dir`)."""
    paths = {"float32": out_dir / "mobilenetv2_f32.tflite", "int8": out_dir / "mobilenetv2_int8.tflite"}
    if all(p.exists() for p in paths.values()):
        return paths
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(32):
            yield [rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)]

    for name, path in paths.items():
        t0 = time.time()
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if name == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        with contextlib.redirect_stdout(io.StringIO()):
            path.write_bytes(conv.convert())
        print(f"converted {name} in {time.time() - t0:.1f} s -> {path}", file=sys.stderr)
    return paths


def run_edgecnn(model: Path, threads: int, warmup: int, runs: int, db: Path) -> float:
    cmd = [sys.executable, "-m", "edgecnn.cli", "bench", str(model), "--threads", str(threads), "--warmup",
           str(warmup), "--runs", str(runs), "--json", "--db", str(db)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out)["timing"]["steady"]["p50_ms"]


def run_bare(model: Path, threads: int, warmup: int, runs: int) -> float:
    cmd = [sys.executable, "-c", BARE_LOOP, str(model), str(threads), str(warmup), str(runs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["p50_ms"]


def run_litert_benchmark(model: Path, threads: int, warmup: int, runs: int) -> float:
    exe = Path(sys.executable).with_name("litert-benchmark")
    cmd = [str(exe), f"--model={model}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
           f"--num_runs={runs}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Inference \(median\):\s*([\d.]+)", out).group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out-dir", default=str(Path(tempfile.gettempdir()) / "edgecnn-fidelity"))
    a = ap.parse_args()
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = make_models(out_dir)
    db = out_dir / "fidelity.sqlite"
    methods = {
        "edgecnn": lambda m, t: run_edgecnn(m, t, a.warmup, a.runs, db),
        "bare": lambda m, t: run_bare(m, t, a.warmup, a.runs),
        "litert-benchmark": lambda m, t: run_litert_benchmark(m, t, a.warmup, a.runs),
    }
    cases = []
    for dtype, path in models.items():
        for threads in (1, 2):
            rounds: dict[str, list[float]] = {k: [] for k in methods}
            for r in range(a.rounds):
                order = list(methods) if r % 2 == 0 else list(reversed(methods))
                for name in order:
                    rounds[name].append(methods[name](path, threads))
            med = {k: statistics.median(v) for k, v in rounds.items()}
            ratio = med["edgecnn"] / med["bare"]
            cases.append({"model": f"MobileNetV2 1.0 224 {dtype}", "threads": threads, "rounds": rounds,
                          "p50_ms": med, "ratio_edgecnn_to_bare": round(ratio, 4),
                          "within_3pct": abs(ratio - 1) <= TOLERANCE})
            print(f"  {dtype} t{threads}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()), file=sys.stderr)
    header = f"{'model':30s} {'thr':>3s} {'edgecnn p50':>12s} {'bare p50':>9s} {'ratio':>7s} {'litert-bm median':>17s} ok"
    print(f"warm-up {a.warmup}, runs {a.runs}, {a.rounds} alternating rounds; ms, median over rounds")
    print(header)
    for c in cases:
        m = c["p50_ms"]
        print(f"{c['model']:30s} {c['threads']:>3d} {m['edgecnn']:>12.3f} {m['bare']:>9.3f} "
              f"{c['ratio_edgecnn_to_bare']:>7.3f} {m['litert-benchmark']:>17.3f} {'yes' if c['within_3pct'] else 'NO'}")
    from results import Column, publish

    publish("bench_fidelity", [Column("model", "model"), Column("threads", "threads"),
                               Column("edgecnn", "edgecnn p50 ms", "{:.3f}"),
                               Column("bare", "bare `invoke()` loop p50 ms", "{:.3f}"),
                               Column("ratio", "ratio", "{:.3f}"), Column("within", "within 3%"),
                               Column("litert", "litert-benchmark median ms", "{:.3f}")],
            [{"model": c["model"], "threads": c["threads"], "edgecnn": c["p50_ms"]["edgecnn"],
              "bare": c["p50_ms"]["bare"], "ratio": c["ratio_edgecnn_to_bare"],
              "within": "yes" if c["within_3pct"] else "NO", "litert": c["p50_ms"]["litert-benchmark"],
              "rounds": c["rounds"]} for c in cases],
            notes=[f"warm-up {a.warmup}, runs {a.runs}; medians over {a.rounds} alternating rounds of the three "
                   "methods"])
    return 0 if all(c["within_3pct"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
