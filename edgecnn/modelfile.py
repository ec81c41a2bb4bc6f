"""Keras model files with edgecnn's preprocessing spec inside.

`.keras` files are zip archives; the spec (with labels) is added as one more entry, `edgecnn_preprocessing.json`,
which Keras ignores on load. Saving is atomic: an interrupted save leaves no half-written file.
Loading also accepts legacy Keras 2 `.h5`/`.hdf5` files and SavedModel directories (those carry no spec: the user
supplies preprocessing flags instead).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from edgecnn.atomic import atomic_path
from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError

SPEC_ENTRY = "edgecnn_preprocessing.json"
QAT_ENTRY = "edgecnn_qat.json"  # the ranges `edgecnn train --qat` learned (edgecnn/train/qat.py)


def save_model(model, path: str | Path, spec: PreprocessSpec | None, qat: dict | None = None) -> Path:
    """Save `model` (+ `spec`, + the ranges `qat` learned) to a `.keras` file atomically."""
    from edgecnn import _tf

    path = Path(path)
    if path.suffix != ".keras":
        raise EdgecnnError(f"{path}: model output must end in .keras")
    _tf.quiet()
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        if spec is not None:
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(SPEC_ENTRY, spec.to_json())
        if qat is not None:
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(QAT_ENTRY, json.dumps(qat, indent=1))
    return path


def read_keras_qat(path: str | Path) -> dict | None:
    """The ranges quantization-aware training learned, stored in a `.keras` file (None: not trained with --qat)."""
    if Path(path).suffix != ".keras" or not Path(path).is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            if QAT_ENTRY not in zf.namelist():
                return None
            data = json.loads(zf.read(QAT_ENTRY).decode("utf-8"))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise EdgecnnError(f"{path}: unreadable {QAT_ENTRY} ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("ranges"), list):
        raise EdgecnnError(f"{path}: {QAT_ENTRY} has no list of ranges")
    for i, row in enumerate(data["ranges"]):
        if not (isinstance(row, dict) and isinstance(row.get("layers"), list) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in (row.get("min"), row.get("max")))):
            raise EdgecnnError(f"{path}: {QAT_ENTRY} range {i} needs layers, min and max")
    return data


def read_keras_spec(path: str | Path) -> PreprocessSpec | None:
    """The spec stored in a `.keras` file (None for a file saved without edgecnn)."""
    try:
        with zipfile.ZipFile(path) as zf:
            if SPEC_ENTRY not in zf.namelist():
                return None
            return PreprocessSpec.from_json(zf.read(SPEC_ENTRY).decode("utf-8"), source=str(path))
    except zipfile.BadZipFile:
        raise EdgecnnError(f"{path}: not a valid .keras file (corrupt or truncated zip)") from None


def model_kind(path: str | Path) -> str:
    """'keras', 'h5', 'savedmodel', 'tflite', 'frozen_graph' or 'onnx' (a TF1 GraphDef `.pb` and an ONNX model are
    protobufs without magic bytes: by their names), from the file's content; a clear error for anything else."""
    p = Path(path)
    if not p.exists():
        raise EdgecnnError(f"{p}: model file does not exist")
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            return "savedmodel"
        raise EdgecnnError(f"{p}: a directory but not a SavedModel (no saved_model.pb)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise EdgecnnError(f"{p}: cannot read model file ({exc.strerror})") from None
    if not head:
        raise EdgecnnError(f"{p}: empty file")
    if head.startswith(b"PK"):
        return "keras"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head[4:8] == b"TFL3":
        return "tflite"
    if p.suffix == ".pb":
        return "frozen_graph"
    if p.suffix == ".onnx":
        return "onnx"
    raise EdgecnnError(f"{p}: not a model file (expected .keras, .h5, a SavedModel directory, .tflite, a TF1 "
                       "frozen graph .pb or .onnx)")


def load_model(path: str | Path, notes: list[str] | None = None):
    """Load a Keras model from `.keras`, `.h5`/`.hdf5` or a SavedModel directory; returns (model, spec|None).
    How a `.h5` was loaded (as it is, repaired, through tf-keras: `keras2_h5`) is appended to `notes`."""
    from edgecnn import _tf

    kind = model_kind(path)
    if kind == "tflite":
        raise EdgecnnError(f"{path}: is a .tflite model; this command needs a Keras model (.keras/.h5/SavedModel)")
    if kind in ("frozen_graph", "onnx"):
        what = "a TF1 frozen graph" if kind == "frozen_graph" else "an ONNX model"
        raise EdgecnnError(f"{path}: is {what}; convert it first (edgecnn convert {path} -o float.tflite) and use "
                           "the .tflite")
    keras = _tf.keras()
    try:
        if kind == "keras":
            spec = read_keras_spec(path)
            return keras.models.load_model(path, compile=False), spec
        if kind == "h5":
            from edgecnn.keras2_h5 import load_h5

            model, route = load_h5(path)
            if notes is not None:
                notes.append(route)
            return model, None
        return wrap_savedmodel(path), None
    except EdgecnnError:
        raise
    except Exception as exc:  # Keras raises many types for corrupt or foreign files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgecnnError(f"{path}: cannot load model ({msg[:300]})") from None


def wrap_savedmodel(path, name: str | None = None):
    """A SavedModel directory wrapped as a Keras model via its serving signature (inference only)."""
    import keras
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    spec = list(fn.structured_input_signature[1].values())[0]
    inp = keras.Input(shape=tuple(spec.shape[1:]), batch_size=1, dtype=spec.dtype.name)
    out = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(inp)
    if isinstance(out, dict):
        out = list(out.values())[0]
    return keras.Model(inp, out, name=name or Path(path).name)
