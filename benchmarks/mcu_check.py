"""mcu-check on real models: LeNet-5 and MobileNetV2 (alpha 0.25, 48x48) trained on Fashion-MNIST, int8.

    .venv/bin/python benchmarks/mcu_check.py [--epochs-lenet 3] [--epochs-mobilenet 5] [--out runs/bench/mcu]

For each model: train (few epochs, the lead's trainer), convert to int8 with int8 IO (the lead's converter,
100 calibration images), then `edgecnn mcu-check --device cortex-m4-256k --data fashion-mnist` (the full 10k test
split under TFLM and under LiteRT). Writes the reports to OUT/mcu_check.json and the table (printed too) to
benchmarks/results/mcu_check.{json,md} (docs/targets/mcu.md includes it).
(Short runs work for MobileNets because the trainer caps batch-norm momentum to the run's length: see
`edgecnn.train.trainer.fit_bn_momentum`.)
Needs the real data set (Debian: apt-get install dataset-fashion-mnist) and `pip install 'edgecnn[mcu]'`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgecnn.convert.converter import convert_model  # noqa: E402
from edgecnn.convert.request import ConversionRequest  # noqa: E402
from edgecnn.deploy.mcu import mcu_check  # noqa: E402
from edgecnn.train.trainer import TrainConfig, train  # noqa: E402
from results import Column, publish  # noqa: E402

MODELS = [  # label, zoo name, input side, builder knobs, epochs argument
    ("LeNet-5 32x32x1", "lenet5", 32, {}, "epochs_lenet"),
    ("MobileNetV2 a=0.25 48x48x1", "mobilenet_v2", 48, {"alpha": 0.25}, "epochs_mobilenet"),
]


def _differ(a: dict) -> int:
    """How many test images TFLM and LiteRT predict differently (the report gives their agreement)."""
    return round((1 - a["prediction_agreement"]) * a["samples"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs-lenet", type=int, default=3)
    ap.add_argument("--epochs-mobilenet", type=int, default=3)
    ap.add_argument("--device", default="cortex-m4-256k")
    ap.add_argument("--limit", type=int, default=10000, help="test samples for the TFLM vs LiteRT comparison")
    ap.add_argument("--out", default="runs/bench/mcu")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, name, side, knobs, epochs_arg in MODELS:
        epochs = getattr(args, epochs_arg)
        keras_path, tfl = out / f"{name}_fashion.keras", out / f"{name}_fashion_int8.tflite"
        t0 = time.perf_counter()
        cfg = TrainConfig(name, "fashion-mnist", epochs=epochs, batch_size=128, input_size=side, knobs=knobs)
        tr = train(cfg, keras_path, progress=False)
        t_train = time.perf_counter() - t0
        req = ConversionRequest(mode="int8", io="int8", calibration="fashion-mnist", num_calibration=100)
        with contextlib.redirect_stdout(io.StringIO()):
            convert_model(keras_path, tfl, req)
        r = mcu_check(tfl, device=args.device, data="fashion-mnist", limit=args.limit)
        r["train"] = {"epochs": epochs, "keras_test_top1": tr.get("test_top1"), "wall_seconds": round(t_train, 1)}
        rows.append((label, epochs, r))
        print(f"{label}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    (out / "mcu_check.json").write_text(json.dumps([r for _, _, r in rows], indent=2, default=str))
    table = [{"model": label, "epochs": epochs, "arena": r["arena_bytes"], "flash": r["flash_bytes"],
              "fits": "yes" if r["fits"] else "no", "keras": r["train"]["keras_test_top1"],
              "litert": r["accuracy"]["top1_litert"], "tflm": r["accuracy"]["top1_tflm"],
              "agreement": f"{r['accuracy']['prediction_agreement']:.2%} ({_differ(r['accuracy'])} of "
                           f"{r['accuracy']['samples']} differ)",
              "identical": r["accuracy"]["identical_outputs"]} for label, epochs, r in rows]
    publish("mcu_check", [Column("model", "model (int8)"), Column("epochs", "epochs"),
                          Column("arena", "arena bytes", "{:,}"), Column("flash", "flash bytes", "{:,}"),
                          Column("fits", f"fits {args.device}"), Column("keras", "top-1 Keras float", "{:.2%}"),
                          Column("litert", "top-1 LiteRT", "{:.2%}"), Column("tflm", "top-1 TFLM", "{:.2%}"),
                          Column("agreement", "TFLM vs LiteRT agreement"),
                          Column("identical", "bit-identical outputs", "{:.1%}")], table,
            notes=[f"`edgecnn mcu-check MODEL --device {args.device} --data fashion-mnist`, TFLM "
                   f"{rows[0][2]['tflm_version']} on this x86-64 host, {args.limit} test images; trained on "
                   "Fashion-MNIST by `edgecnn train` (batch 128), int8 with int8 IO, 100 calibration images"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
