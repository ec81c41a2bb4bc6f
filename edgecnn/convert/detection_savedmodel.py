"""A TFLite-friendly detection SavedModel (the TF Object Detection API's TF2 `export_tflite_graph_tf2.py`, Model
Maker's SSD export): what `convert` starts from.

Its post-processing is an empty function marked `experimental_implements="TFLite_Detection_PostProcess"` (with the
anchors, scales and NMS settings as its attributes) that only TF's converter, reading the SavedModel itself, fuses
into the TFLite op; edgecnn's Keras route (the SavedModel wrapped as a Keras layer and traced) inlines the empty
function and the model would output zeros. So such a SavedModel is converted by `TFLiteConverter.from_saved_model`
(custom ops allowed) to a float .tflite, which then converts like any float SSD .tflite
(`tflite_source.read_converted`: the op kept in float or cut off, `--postprocess`).
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.convert.detection_postprocess import OP
from edgecnn.errors import EdgecnnError


def is_detection_savedmodel(path) -> bool:
    """A SavedModel directory with a function that implements TFLite_Detection_PostProcess."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    except Exception:  # unreadable: the Keras route says what is wrong
        return False
    for mg in sm.meta_graphs:
        for f in mg.graph_def.library.function:
            impl = f.attr.get("_implements")
            if impl is not None and OP in (impl.func.name or impl.s.decode(errors="replace")):
                return True
    return False


def read_detection_savedmodel(path, postprocess: str = "graph"):
    """As `tflite_source.read_float_tflite` gives for a .tflite, from TF's own conversion of the SavedModel."""
    import tensorflow as tf

    from edgecnn.convert.frontend import converter_quiet
    from edgecnn.convert.tflite_source import read_converted

    path = Path(path)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(path))
    conv.allow_custom_ops = True
    try:
        with converter_quiet():
            data = conv.convert()
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise EdgecnnError(f"{path}: TF's converter cannot convert the detection SavedModel ({msg[:240]})") from None
    data, spec, hwc, notes, head = read_converted(data, path, postprocess)
    notes.insert(0, f"a TFLite-friendly detection SavedModel: {OP} fused by TF's converter from it")
    return data, spec, hwc, notes, head
