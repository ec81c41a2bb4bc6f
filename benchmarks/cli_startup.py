"""Wall time of `edgecnn --help` (must feel instant: no TensorFlow import) against `import tensorflow`.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 10]

Runs both side by side, alternating, and prints medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


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
    return 0 if h < 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
