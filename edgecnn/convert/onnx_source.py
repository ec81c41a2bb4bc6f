"""ONNX in (the exchange format of the PyTorch world): through onnx2tf (the `onnx` extra) to a float32 flatbuffer,
then edgecnn's own int8 pipeline (calibration, CLE / bias correction, rewrite passes, targets).

onnx2tf is what Ultralytics reaches TFLite through: it rebuilds the graph op by op in TensorFlow, turning the NCHW
layout of PyTorch exports into TFLite's NHWC (the input, the weights and every layout-dependent op), and writes a
float32 `.tflite` itself. Here:
1. the model is checked first (`onnx.checker`-readable; one float NCHW image input (N, C, H, W), C 1 or 3 — onnx2tf
   takes every 4-D input as NCHW, so an NHWC one is refused; static H and W); a dynamic batch is fixed to 1;
2. onnx2tf converts it in a child process (importing it changes the whole process: recursion limit, warning
   filters, seeds, TF op determinism), in a temporary folder, without simplifier (onnxsim is not in the extra). It
   checks its TF graph against onnxruntime on 20 sample images it downloads into its working directory unless a
   file of that name is there: it is given 20 of edgecnn's offline photos (128x128, 0..1) under that name, so no
   network is needed;
3. its float32 `.tflite` is read as any float `.tflite` is (`tflite_source.read_float_tflite`), and the report says
   "NCHW input (1, C, H, W) taken as NHWC (1, H, W, C)": feed it HWC images, as every edgecnn model.
An op onnx2tf cannot convert, or any other failure of it, is one line naming the file and the op (from its log).

Pinned to onnx2tf 1.28.8, the newest release that declares no dependencies: 1.29 pins tensorflow 2.19, numpy 1.26
and an older ai-edge-litert, which cannot install beside this project's own pins; its code runs on TF 2.21 (tested).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError

INSTALL = "pip install 'edgecnn[onnx]'"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # onnx2tf colours its log


def _check(path: Path):
    """(the model, its input name, (N, C, H, W) with N maybe -1, True): NCHW float images only."""
    try:
        import onnx
    except ImportError:
        raise EdgecnnError(f"{path}: an ONNX model needs the onnx extra ({INSTALL})") from None
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError, ...
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise EdgecnnError(f"{path}: not a valid ONNX model ({msg})") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgecnnError(f"{path}: has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); convert takes "
                           "models with one image input")
    t = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    if t.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or (dims[1] not in (1, 3) and dims[3] not in (1, 3)):
        raise EdgecnnError(f"{path}: input {inputs[0].name} is {onnx.TensorProto.DataType.Name(t.elem_type)} "
                           f"{dims}, not a float image (N, C, H, W)")
    if dims[1] not in (1, 3):  # onnx2tf takes every 4-D input as NCHW and would transpose an NHWC one into nonsense
        raise EdgecnnError(f"{path}: input {inputs[0].name} {dims} is NHWC; convert takes NCHW ONNX models (as "
                           "PyTorch exports them)")
    hw = dims[2:4]
    if min(hw) < 1:
        raise EdgecnnError(f"{path}: input {inputs[0].name} {dims} has dynamic height/width; static sizes are "
                           "required (integer accelerators need them): export it with a fixed input size")
    return model, inputs[0].name, dims, True


def _failure(path: Path, log: str) -> str:
    """The one line that names what onnx2tf could not convert: the op (its type, else its node name) and the
    error, from its log and traceback."""
    text = ANSI.sub("", log)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    unknown = re.search(r"No module named 'onnx2tf\.ops\.(\w+)'", text)
    if unknown:
        return f"{path}: onnx2tf cannot convert its {unknown.group(1)} op (not implemented in onnx2tf)"
    op = re.search(r"onnx_op_type:\s*(\S+)", text)
    node = re.search(r"onnx_op_name:\s*(\S+)", text)
    raised = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b:?", ln)]
    why = (raised or [ln for ln in lines if "ERROR" in ln] or lines or ["no output"])[-1][:200]
    if op or node:
        what = f"{op.group(1)} op" if op else f"node {node.group(1)}"
        return f"{path}: onnx2tf cannot convert its {what} ({why})"
    return f"{path}: onnx2tf cannot convert it ({why})"


SAMPLES = "calibration_image_sample_data_20x128x128x3_float32.npy"  # the name onnx2tf looks for in the cwd


def _sample_images(folder: Path) -> None:
    """20 offline photos, 128x128, float32 0..1, where onnx2tf looks for its sample data."""
    import numpy as np
    from PIL import Image

    from edgecnn.data.sources import load_split

    images = load_split("photos", "all").images[:20]
    x = np.stack([np.asarray(Image.fromarray(i).convert("RGB").resize((128, 128), Image.BILINEAR), np.float32)
                  for i in images]) / 255.0
    np.save(folder / SAMPLES, x.astype(np.float32))


CHILD = "import json, sys, onnx2tf; onnx2tf.convert(**json.loads(sys.argv[1]))"


def read_onnx(path: str | Path) -> tuple[bytes, PreprocessSpec | None, tuple[int, int, int], list[str], dict]:
    """(float32 flatbuffer at batch 1, None (ONNX carries no preprocessing: flags give it), input (H, W, C), notes,
    {}), as `tflite_source.read_float_tflite` gives for a .tflite."""
    from edgecnn.convert.tflite_source import read_converted

    path = Path(path)
    import importlib.util
    from importlib.metadata import version

    _, name, dims, _ = _check(path)
    if importlib.util.find_spec("onnx2tf") is None:
        raise EdgecnnError(f"{path}: converting ONNX needs onnx2tf ({INSTALL})")
    args = {"input_onnx_file_path": str(path.resolve()), "output_folder_path": "out", "batch_size": 1,
            "not_use_onnxsim": True, "non_verbose": True, "copy_onnx_input_output_names_to_tflite": True}
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as tmp:
        _sample_images(Path(tmp))
        # a child process: importing onnx2tf changes the whole process (recursion limit, warning filters, seeds,
        # TF op determinism, TF_USE_LEGACY_KERAS), and it reads its sample images from its working directory
        r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], cwd=tmp, capture_output=True,
                           text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        found = sorted((Path(tmp) / "out").glob("*_float32.tflite"))
        if r.returncode != 0 or not found:
            raise EdgecnnError(_failure(path, r.stdout + "\n" + r.stderr))
        data, _, hwc, notes, head = read_converted(found[0].read_bytes(), path)
    notes.insert(0, f"ONNX through onnx2tf {version('onnx2tf')}: input {name} NCHW {dims} taken as NHWC "
                    f"(1, {hwc[0]}, {hwc[1]}, {hwc[2]})")
    return data, None, hwc, notes, head
