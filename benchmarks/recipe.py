"""A recipe end to end (`edgecnn run RECIPE`), its report table written as a results file.

    .venv/bin/python benchmarks/recipe.py RECIPE [--out runs/bench/recipe-RECIPE] [--executor ray]

Runs the recipe (a name in models/ or a YAML file) through the API's `run` into a fresh --out (no cached steps, so the
wall time is the whole run's), runs it again (every step cached), and writes its rows — model, precision, device, size, the task's metric and its drop
against float, agreement with float, p50/p90, XNNPACK partitions — with the run's wall time to
benchmarks/results/recipe-NAME.{json,md}, NAME the recipe's name. What the docs quote of `edgecnn run quick`,
`fashion-compare`, `detect-quick` and `seg-quick` comes from here.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Column, publish  # noqa: E402


def main() -> int:
    from edgecnn.api import run
    from edgecnn.recipe import load_recipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--out", default=None)
    ap.add_argument("--executor", default=None, help="as `edgecnn run --executor` (ray, ray:ADDRESS); the results "
                    "file is then recipe-NAME-ray")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    name = f"recipe-{recipe.name}" + ("-ray" if args.executor else "")
    out = Path(args.out or f"runs/bench/{name}")
    if out.exists():
        shutil.rmtree(out)  # every step measured, none taken from a cache
    t0 = time.perf_counter()
    result = run(args.recipe, str(out), executor=args.executor, log=print)
    wall = time.perf_counter() - t0
    peak_gib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) \
        / 2 ** 20  # KiB on Linux: this process (training runs in it) or its largest child (a bench runner)
    t0 = time.perf_counter()
    again = [sys.executable, "-m", "edgecnn.cli", "run", args.recipe, "-o", str(out)]
    subprocess.run(again + (["--executor", args.executor] if args.executor else []), check=True,
                   capture_output=True)  # as a user re-runs it, nothing changed: every step from the cache
    cached = time.perf_counter() - t0
    rows = [{**r, "size_kib": r["size_bytes"] / 1024, "metric_value": r["value"],
             "drop_points": r["drop_points"] + 0.0} for r in result.rows]  # + 0.0: float's own row is 0, not -0
    metric = rows[0]["metric"] if rows else "metric"
    publish(name,
            [Column("model", "model"), Column("precision", "precision"), Column("device", "device"),
             Column("size_kib", "size KiB", "{:,.0f}"), Column("size_ratio", "x float32", "{:.2f}"),
             Column("metric_value", metric, "{:.4f}"), Column("drop_points", "drop vs float (pts)", "{:+.2f}"),
             Column("agreement", "agreement with float", "{:.4f}"), Column("p50_ms", "p50 ms", "{:.3f}"),
             Column("p90_ms", "p90 ms", "{:.3f}"), Column("partitions", "XNNPACK partitions")], rows,
            notes=[f"`edgecnn run {args.recipe}" + (f" --executor {args.executor}" if args.executor else "")
                   + f"` on {recipe.data}, from nothing (no cached step): {wall:.0f} s "
                   f"end to end on this machine" + (f", peak RSS {peak_gib:.1f} GiB" if not args.executor else "")
                   + "; `edgecnn run` again with nothing "
                   f"changed (every step cached): {cached:.0f} s; "
                   "the report: " + str(result.report)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
