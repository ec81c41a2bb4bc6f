"""Train LeNet-5 on the full Fashion-MNIST (60k train / 10k test) and report test top-1 and wall time.

    .venv/bin/python benchmarks/train_lenet5_fashion.py [--epochs 20] [--augment flip] [--out runs/bench/lenet5_fashion.keras]

Needs the real data set (Debian: apt-get install dataset-fashion-mnist). Writes a JSON summary beside the model and
benchmarks/results/train_lenet5_fashion.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Column, publish  # noqa: E402

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
    Path(args.out).with_suffix(".json").write_text(json.dumps(r, indent=2, default=str))
    publish("train_lenet5_fashion",
            [Column("model", "model"), Column("epochs", "epochs"), Column("augment", "augmentation"),
             Column("train_samples", "train images"), Column("test_samples", "test images"),
             Column("test_top1", "test top-1", "{:.4f}"), Column("wall_seconds", "train + evaluate (s)", "{:.0f}")],
            [{"model": "lenet5", "epochs": args.epochs, "augment": args.augment or "none",
              "train_samples": r.get("train_samples"), "test_samples": r["test_samples"], "test_top1": r["test_top1"],
              "wall_seconds": r["wall_seconds"]}],
            notes=["Fashion-MNIST at 32x32x1, batch 128, 10 % of the train split held out for validation, "
                   "cosine learning rate"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
