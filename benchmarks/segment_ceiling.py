"""The mIoU a segmenter could reach on the built-in masks if it knew every pixel's class but saw it only at output
stride S: each true mask one-hot, average-pooled S x S, brought back to the mask's size (bilinear, as the zoo's
heads up-sample) and arg-maxed, scored as `edgecnn eval` scores (one confusion matrix over the test split).

    .venv/bin/python benchmarks/segment_ceiling.py [--data scenes:digits] [--strides 8,4,2]

What it tells: how much of a segmenter's missing mIoU its output resolution explains; the rest is the classes it
gets wrong (docs/tasks/segmentation.md, "Measured: every zoo segmenter"). The table goes to
benchmarks/results/segment_ceiling.{json,md}, which that page includes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results import Column, publish  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="scenes:digits")
    p.add_argument("--strides", default="8,4,2")
    args = p.parse_args()
    import tensorflow as tf

    from edgecnn.data.sources import load_split
    from edgecnn.tasks.segmentation.metrics import score_maps

    ds = load_split(args.data, "test", needs_labels="eval")
    names = list(ds.mask_names)
    rows = []
    for s in [int(v) for v in args.strides.split(",")]:
        maps = []
        for m in ds.masks:
            m = np.asarray(m)
            h, w = (m.shape[0] // s) * s, (m.shape[1] // s) * s
            onehot = tf.one_hot(np.where(m == 255, 0, m)[:h, :w][None], len(names))
            pooled = tf.nn.avg_pool2d(onehot, s, s, "VALID")
            maps.append(np.argmax(tf.image.resize(pooled, m.shape[:2], "bilinear").numpy()[0], -1).astype(np.uint8))
        r = score_maps(maps, list(ds.masks), names, names)
        rows.append({"stride": s, "miou": round(r["miou"], 4), "pixel_accuracy": round(r["pixel_accuracy"], 4)})
        print(f"output stride {s}: mIoU ceiling {r['miou']:.4f}, pixel accuracy {r['pixel_accuracy']:.4f}", flush=True)
    print(json.dumps({"data": args.data, "images": len(ds), "rows": rows}))
    publish("segment_ceiling", [Column("stride", "output stride"), Column("miou", "mIoU ceiling", "{:.4f}"),
                                Column("pixel_accuracy", "pixel accuracy", "{:.4f}")], rows,
            notes=[f"{args.data}, test split, {len(ds)} images: each true mask pooled to the stride, brought back "
                   "(bilinear) and arg-maxed, scored as `edgecnn eval` scores"])


if __name__ == "__main__":
    main()
