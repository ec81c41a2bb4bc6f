"""Train LeNet-5 on the full Fashion-MNIST (60k train / 10k test) and report test top-1 and wall time.

    .venv/bin/python benchmarks/train_lenet5_fashion.py [--epochs 20] [--augment flip] [--out runs/bench/lenet5_fashion.keras]

Needs the real data set (Debian: apt-get install dataset-fashion-mnist). Writes a JSON summary beside the model.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgecnn.train.trainer import TrainConfig, train  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--augment", default="flip", help="comma-separated: flip, shift ('' for none)")
    ap.add_argument("--out", default="runs/bench/lenet5_fashion.keras")
    args = ap.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = train(TrainConfig("lenet5", "fashion-mnist", epochs=args.epochs, batch_size=128, input_size=32,
                          val_split=0.1, augment=tuple(a for a in args.augment.split(",") if a)), args.out)
    r["total_wall_seconds"] = round(time.perf_counter() - t0, 1)
    r["machine"] = f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}"
    Path(args.out).with_suffix(".json").write_text(json.dumps(r, indent=2))
    print(f"lenet5 fashion-mnist: test top-1 {r['test_top1']:.4f} on {r['test_samples']} images, "
          f"{args.epochs} epochs (augment: {args.augment or 'none'}), train+eval {r['wall_seconds']:.1f} s, total {r['total_wall_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
