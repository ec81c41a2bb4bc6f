"""Two revisions of edgecnn side by side on the same models: bench medians and eval/bench-data accuracy.

    .venv/bin/python benchmarks/code_parity.py --base REV MODEL.tflite:DATA [MODEL.tflite:DATA ...] [--rounds 3]

What a redesign that claims "behaviour kept" must show: the same accuracy numbers (eval of each model on DATA, and
`bench --data` on this CPU, from each revision's code) and bench latency medians within noise. REV is checked out
into a temporary git worktree; each round runs `edgecnn bench MODEL --runs 300 --data DATA --json` once with the base
code and once with this checkout's, in alternating order (base first in even rounds), so drift of the machine's load
falls on both. Reported per model: both revisions' accuracy values (must be equal), and the median over rounds of each
revision's p50, with their ratio (this / base). Writes benchmarks/results/code_parity.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from results import Column, publish  # noqa: E402


def _edgecnn(code: Path, *args: str) -> dict | list:
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryDirectory() as tmp:
        env["EDGECNN_DB"] = str(Path(tmp) / "r.sqlite")
        p = subprocess.run([sys.executable, "-m", "edgecnn.cli", *args, "--json"], cwd=code, env=env,
                           capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{code}: edgecnn {' '.join(args)} failed: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def _value(acc: dict) -> float | None:
    """The accuracy number of an eval result or a bench's `accuracy`, from either revision's keys."""
    for key in ("value", "map50", "top1"):
        if acc.get(key) is not None:
            return acc[key]
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("pairs", nargs="+", help="MODEL.tflite:DATA")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base], check=True,
                       capture_output=True)
        try:
            rows = []
            for pair in args.pairs:
                if ".tflite:" not in pair:
                    raise SystemExit(f"{pair}: give MODEL.tflite:DATA")
                model, data = pair.split(".tflite:", 1)
                model = str(Path(model + ".tflite").resolve())
                codes = {"base": base, "this": REPO}
                evals = {k: _value(_edgecnn(c, "eval", model, "--data", data)[0]) for k, c in codes.items()}
                p50, bench_acc = {k: [] for k in codes}, {}
                for r in range(args.rounds):
                    for k in (("base", "this") if r % 2 == 0 else ("this", "base")):
                        doc = _edgecnn(codes[k], "bench", model, "--runs", str(args.runs), "--data", data,
                                       "--limit", "200")
                        p50[k].append(doc["timing"]["steady"]["p50_ms"])
                        bench_acc[k] = _value(doc.get("accuracy") or {})
                med = {k: statistics.median(v) for k, v in p50.items()}
                rows.append({"model": Path(model).name, "data": data, "eval_base": evals["base"],
                             "eval_this": evals["this"], "bench_data_base": bench_acc["base"],
                             "bench_data_this": bench_acc["this"], "p50_ms_base": med["base"],
                             "p50_ms_this": med["this"], "ratio": med["this"] / med["base"],
                             "p50_rounds": p50})
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    (REPO / "runs").mkdir(exist_ok=True)
    (REPO / "runs" / "code_parity.json").write_text(json.dumps(rows, indent=1))
    same = all(r["eval_base"] == r["eval_this"] and r["bench_data_base"] == r["bench_data_this"] for r in rows)
    for r in rows:
        r["spread"] = "; ".join(f"{k} {min(v):.3f}-{max(v):.3f}" for k, v in r["p50_rounds"].items())
    publish("code_parity",
            [Column("model", "model"), Column("data", "data"), Column("eval_base", f"eval {args.base}", "{:.4f}"),
             Column("eval_this", "eval this", "{:.4f}"), Column("bench_data_base", f"bench --data {args.base}", "{:.4f}"),
             Column("bench_data_this", "bench --data this", "{:.4f}"),
             Column("p50_ms_base", f"p50 ms {args.base}", "{:.3f}"), Column("p50_ms_this", "p50 ms this", "{:.3f}"),
             Column("ratio", f"this / {args.base}", "{:.2f}"), Column("spread", "p50 range over rounds (ms)")], rows,
            notes=[f"{args.rounds} rounds of `edgecnn bench MODEL --runs {args.runs} --data DATA --limit 200` with each "
                   "revision's code, alternating which goes first; eval of all of DATA's test split; `bench --data` "
                   "scores the first 200 test samples, hence their difference",
                   "accuracy identical in every row" if same else "ACCURACY DIFFERS"])
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
