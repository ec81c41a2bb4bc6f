"""What `convert` starts from, by the kind of model file (`modelfile.model_kind`): a table, as targets are.

A Keras model (.keras, .h5, SavedModel) is traced by `frontend`; every other kind is read straight to a float32
flatbuffer at batch 1 by its reader here, which returns (flatbuffer, embedded spec or None, input (H, W, C), notes
for the report, the detection head the flatbuffer's outputs need or {}); adding a kind is one reader and one entry.

| kind           | reader                                  | what it does                                           |
|----------------|-----------------------------------------|--------------------------------------------------------|
| `tflite`       | `tflite_source.read_float_tflite`       | checks the float .tflite, fixes the batch, cuts ARG_MAX / TFLite_Detection_PostProcess as asked |
| `frozen_graph` | `frozen_graph.read_frozen_graph`        | TF1 GraphDef through TF's v1 converter (a TF OD API SSD cut at its raw heads); also a TF1 OD API SavedModel (`kind`) |
| `onnx`         | `onnx_source.read_onnx`                 | ONNX through onnx2tf (NCHW -> NHWC)                     |
| `detection_savedmodel` | `detection_savedmodel.read_detection_savedmodel` | a TFLite-friendly SSD SavedModel (TF2 OD API, Model Maker) through TF's converter, then as a float .tflite |
"""

from __future__ import annotations


def _tflite(path, req):
    from edgecnn.convert.tflite_source import read_float_tflite

    return read_float_tflite(path, req.postprocess)


def _frozen_graph(path, req):
    from edgecnn.convert.frozen_graph import read_frozen_graph

    return read_frozen_graph(path, req.postprocess, req.graph_input, req.graph_outputs)


def _onnx(path, req):
    from edgecnn.convert.onnx_source import read_onnx

    return read_onnx(path)


def kind(path) -> str:
    """`modelfile.model_kind`, with a SavedModel written by the TF OD API's TF1 exporter taken as the frozen graph
    it holds (its signature takes uint8 images of any size; the graph is cut where the frozen graph is), and a
    TFLite-friendly detection SavedModel (TF2 OD API, Model Maker) as one TF's converter reads itself."""
    from edgecnn.modelfile import model_kind

    found = model_kind(path)
    if found == "savedmodel":
        from edgecnn.convert.detection_savedmodel import is_detection_savedmodel
        from edgecnn.convert.frozen_graph import is_ssd_export_savedmodel

        if is_ssd_export_savedmodel(path):
            return "frozen_graph"
        if is_detection_savedmodel(path):
            return "detection_savedmodel"
    return found


def _detection_savedmodel(path, req):
    from edgecnn.convert.detection_savedmodel import read_detection_savedmodel

    return read_detection_savedmodel(path, req.postprocess)


FLATBUFFER_SOURCES = {"tflite": _tflite, "frozen_graph": _frozen_graph, "onnx": _onnx,
                      "detection_savedmodel": _detection_savedmodel}
