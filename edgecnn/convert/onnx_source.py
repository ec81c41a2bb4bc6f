"""ONNX in (the exchange format of the PyTorch world): through onnx2tf (the `onnx` extra) to a float32 flatbuffer,
then edgecnn's own int8 pipeline (calibration, CLE / bias correction, rewrite passes, targets).

onnx2tf is what Ultralytics reaches TFLite through: it rebuilds the graph op by op in TensorFlow, turning the NCHW
layout of PyTorch exports into TFLite's NHWC (the input, the weights and every layout-dependent op), and writes a
float32 `.tflite` itself. Here:
1. the model is checked first (`onnx.checker`-readable; one float image input (N, C, H, W) with C 1 or 3, or NHWC;
   static H and W); a dynamic batch is fixed to 1 (onnx2tf `batch_size=1`);
2. onnx2tf converts it into a temporary folder (no simplifier: onnxsim is not installed by the extra; quiet). It
   checks its TF graph against onnxruntime on 20 sample images it downloads into the working directory unless a
   file of that name is there: it runs in the temporary folder, given 20 of edgecnn's offline photos (128x128,
   0..1) under that name, so no network is needed;
3. its float32 `.tflite` is read as any float `.tflite` is (`tflite_source.read_float_tflite`), and the report says
   "NCHW input (1, C, H, W) taken as NHWC (1, H, W, C)": feed it HWC images, as every edgecnn model.
An op onnx2tf cannot convert, or any other failure of it, is one line naming the file and the op (from its log).

Pinned to onnx2tf 1.28.8, the newest release that declares no dependencies: 1.29 pins tensorflow 2.19, numpy 1.26
and an older ai-edge-litert, which cannot install beside this project's own pins; its code runs on TF 2.21 (tested).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError

INSTALL = "pip install 'edgecnn[onnx]'"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # onnx2tf colours its log


def _check(path: Path):
    """(the model, its input name, (N, C, H, W) or (N, H, W, C) with N maybe -1, whether it is NCHW)."""
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
    nchw = dims[1] in (1, 3) and dims[3] not in (1, 3)
    hw = dims[2:4] if nchw else dims[1:3]
    if min(hw) < 1:
        raise EdgecnnError(f"{path}: input {inputs[0].name} {dims} has dynamic height/width; static sizes are "
                           "required (integer accelerators need them): export it with a fixed input size")
    return model, inputs[0].name, dims, nchw


def _failure(path: Path, log: str, exc: Exception) -> str:
    """The one line that names what onnx2tf could not convert."""
    text = f"{log}\n{exc}"
    m = re.search(r"onnx_op_type:\s*(\S+)", text) or re.search(r"OP (\w+) is not supported", text) or \
        re.search(r"No module named 'onnx2tf\.ops\.(\w+)'", text)
    if m:
        return f"{path}: onnx2tf cannot convert its {m.group(1)} op"
    lines = [ANSI.sub("", ln).strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    last = (errors or lines or [type(exc).__name__])[-1][:200]
    return f"{path}: onnx2tf cannot convert it ({last})"


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


@contextlib.contextmanager
def _working_dir(path):
    import os

    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def read_onnx(path: str | Path) -> tuple[bytes, PreprocessSpec | None, tuple[int, int, int], list[str], dict]:
    """(float32 flatbuffer at batch 1, None (ONNX carries no preprocessing: flags give it), input (H, W, C), notes,
    {}), as `tflite_source.read_float_tflite` gives for a .tflite."""
    import io

    from edgecnn.convert.tflite_source import read_float_tflite

    path = Path(path)
    model, name, dims, nchw = _check(path)
    source = str(path.resolve())  # onnx2tf runs in a temporary working directory
    try:
        import onnx2tf
    except ImportError:
        raise EdgecnnError(f"{path}: converting ONNX needs onnx2tf ({INSTALL})") from None
    from edgecnn._tf import silenced_fd

    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as tmp:
        log = io.StringIO()
        _sample_images(Path(tmp))
        try:
            with contextlib.redirect_stdout(log), silenced_fd(2), _working_dir(tmp):
                onnx2tf.convert(input_onnx_file_path=source, output_folder_path=tmp, batch_size=1,
                                not_use_onnxsim=True, non_verbose=True, copy_onnx_input_output_names_to_tflite=True)
        except BaseException as exc:  # onnx2tf ends some failures with sys.exit
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise EdgecnnError(_failure(path, log.getvalue(), exc)) from None
        found = sorted(Path(tmp).glob("*_float32.tflite"))
        if not found:
            raise EdgecnnError(_failure(path, log.getvalue(), RuntimeError("no float32 .tflite written")))
        try:
            data, _, hwc, notes, head = read_float_tflite(found[0])
        except EdgecnnError as exc:  # said of the file the user gave, not onnx2tf's temporary one
            raise EdgecnnError(str(exc).replace(str(found[0]), str(path))) from None
    notes.insert(0, f"ONNX through onnx2tf {getattr(onnx2tf, '__version__', '?')}: input {name} "
                    + (f"NCHW {dims} taken as NHWC (1, {hwc[0]}, {hwc[1]}, {hwc[2]})" if nchw else f"{dims} (NHWC)"))
    return data, None, hwc, notes, head
