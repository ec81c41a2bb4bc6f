"""Wall time of `edgecnn --help` (must feel instant: no TensorFlow import) against `import tensorflow`.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 10]

Runs both side by side, alternating, and prints medians and their ratio; the table goes to
benchmarks/results/cli_startup.{json,md} (docs/benchmarks.md includes it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import Column, publish


def _time(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("edgecnn")
    help_cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "edgecnn.cli", "--help"]
    tf_cmd = [sys.executable, "-c", "import tensorflow"]
    helps, tfs = [], []
    for _ in range(args.repeat):
        helps.append(_time(help_cmd))
        tfs.append(_time(tf_cmd))
    h, t = statistics.median(helps), statistics.median(tfs)
    print(f"edgecnn --help: median {h * 1000:.0f} ms (max {max(helps) * 1000:.0f} ms) over {args.repeat} runs")
    print(f"import tensorflow: median {t * 1000:.0f} ms; ratio help/tf = {h / t:.3f}")
    publish("cli_startup", [Column("what", "command"), Column("median_ms", "median ms", "{:.0f}"),
                            Column("max_ms", "max ms", "{:.0f}"), Column("ratio", "x import tensorflow", "{:.3f}")],
            [{"what": "`edgecnn --help`", "median_ms": h * 1000, "max_ms": max(helps) * 1000, "ratio": h / t},
             {"what": "`python -c 'import tensorflow'`", "median_ms": t * 1000, "max_ms": max(tfs) * 1000,
              "ratio": 1.0}],
            notes=[f"medians over {args.repeat} runs of each, alternating"])
    return 0 if h < 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
