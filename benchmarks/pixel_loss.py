"""The segmentation trainer's loss against Keras' own, under op determinism as `edgecnn train` runs: forward +
backward on one batch of logits, and a whole training step of seg-quick's model (`edgecnn/train/pixel_loss.py`).

    .venv/bin/python benchmarks/pixel_loss.py [--repeats 5] [--steps 40]

Each loss is timed on the same batch (32 x 128 x 128 x 11 logits, a 3-row band of ignore pixels per image) and the
same model (LR-ASPP-Small, minimalistic, alpha 0.5, output stride 8, refined: `models/seg-quick.yaml`), the losses
taking turns `--repeats` times; the median is kept. The value column is each loss on that batch: the
cross-entropy written by hand equals Keras' to float rounding. The table goes to
benchmarks/results/pixel_loss.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results import Column, publish  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=40, help="training steps timed per repeat")
    args = p.parse_args()
    import keras
    import tensorflow as tf

    from edgecnn.tasks.segmentation.postprocess import IGNORE
    from edgecnn.train.pixel_loss import DICE_WEIGHT, pixel_loss
    from edgecnn.zoo.registry import build

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, size, classes = 32, 128, 11
    y = rng.integers(0, classes, (n, size, size)).astype(np.int32)
    y[:, :3] = IGNORE
    logits = tf.Variable(rng.normal(size=(n, size, size, classes)).astype(np.float32))
    losses = {"keras SparseCategoricalCrossentropy(ignore_class=255)":
              keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE),
              "pixel_loss, cross-entropy only": pixel_loss(0.0),
              f"pixel_loss, cross-entropy + {DICE_WEIGHT:g} x Dice (the trainer's)": pixel_loss()}

    def loss_step(fn):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                value = fn(y, logits)
            return value, tape.gradient(value, logits)
        return step

    x = tf.constant(rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32))

    def train_step(fn):
        keras.utils.set_random_seed(0)
        m = build("lraspp_mobilenet_v3_small", (size, size, 3), classes, minimalistic=True, alpha=0.5,
                  output_stride=8, refine_channels=32)
        opt = keras.optimizers.Adam(0.01)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                value = fn(y, m(x, training=True))
            opt.apply_gradients(zip(tape.gradient(value, m.trainable_variables), m.trainable_variables))
            return value
        step()  # traced and warm
        return step

    steps = {name: loss_step(fn) for name, fn in losses.items()}
    models = {name: train_step(fn) for name, fn in losses.items()}
    values = {name: float(step()[0]) for name, step in steps.items()}
    loss_ms, step_ms = {k: [] for k in losses}, {k: [] for k in losses}
    for r in range(args.repeats):
        for name in losses:
            t = time.perf_counter()
            for _ in range(20):
                steps[name]()
            loss_ms[name].append((time.perf_counter() - t) / 20 * 1000)
            t = time.perf_counter()
            for _ in range(args.steps):
                models[name]()
            step_ms[name].append((time.perf_counter() - t) / args.steps * 1000)
            print(f"repeat {r + 1}: {name}: loss {loss_ms[name][-1]:.1f} ms, step {step_ms[name][-1]:.1f} ms",
                  flush=True)
    base = next(iter(losses))
    med = lambda v: float(np.median(v))  # noqa: E731
    rows = [{"loss": name, "value": round(values[name], 6), "loss_ms": round(med(loss_ms[name]), 2),
             "loss_ratio": round(med(loss_ms[name]) / med(loss_ms[base]), 3),
             "step_ms": round(med(step_ms[name]), 1), "step_ratio": round(med(step_ms[name]) / med(step_ms[base]), 3)}
            for name in losses]
    publish("pixel_loss", [Column("loss", "loss"), Column("value", "value on the batch", "{:.6f}"),
                           Column("loss_ms", "loss fwd+bwd ms", "{:.2f}"), Column("loss_ratio", "x Keras", "{:.2f}"),
                           Column("step_ms", "training step ms", "{:.1f}"), Column("step_ratio", "x Keras", "{:.2f}")],
            rows, notes=[f"op determinism on (as `edgecnn train`); batch {n} x {size} x {size} x {classes}; the "
                         f"step: seg-quick's model, Adam; median of {args.repeats} repeats, {args.steps} steps each"])


if __name__ == "__main__":
    main()
