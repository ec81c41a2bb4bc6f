"""A float SSD whose tail is TFLite's `TFLite_Detection_PostProcess` custom op (every SSD the TF Object Detection
API or Model Maker exports): converted to int8 either way the field does it, the user's choice (`--postprocess`):

- `graph` (the default; the standard recipe: TF OD API's `export_tflite_ssd_graph` + a converter allowed both
  TFLITE_BUILTINS_INT8 and TFLITE_BUILTINS): the body becomes int8 and the op stays in float after a DEQUANTIZE of
  its box and score inputs; the model keeps its four outputs (boxes, classes, scores, count) and anything that reads
  Coral's or the TF OD API's SSD outputs reads it. The op is float-only in LiteRT, XNNPACK takes none of it (it runs
  on the CPU after the delegate's partition) and the Edge TPU compiler leaves it to the CPU, as in Coral's own SSDs;
- `numpy`: the op is cut off and the model ends at its raw box encodings and class scores (integer-only, one
  partition); the anchors and the op's options are stored in the model's spec as an SSD head
  (`{"kind": "tflite_ssd", ...}`) and edgecnn's numpy post-processing (`tasks/detection/postprocess.tflite_ssd`,
  shipped to boards beside the runner) decodes them the op's way.

Other custom ops are still refused by `tflite_source`, in one line naming them.
"""

from __future__ import annotations

import numpy as np

OP = "TFLite_Detection_PostProcess"
MODES = ("graph", "numpy")
DEFAULT = "graph"
KEPT_OP = f"CUSTOM:{OP}"  # how `match_keep_float` and the integer-only check name it


def find(model):
    """The op (a parsed `ModelT`'s operator) or None."""
    from edgecnn.tflite.reader import op_name

    sub = model.subgraphs[0]
    return next((op for op in sub.operators or [] if op_name(model, op) == KEPT_OP), None)


def options(op) -> dict:
    """The op's custom options (a flexbuffer map: scales, thresholds, class count, NMS kind)."""
    from flatbuffers import flexbuffers

    raw = bytes(bytearray(op.customOptions)) if op.customOptions is not None else b""
    if not raw:
        return {}
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in flexbuffers.Loads(raw).items()}


def head(model, op) -> dict:
    """The `tflite_ssd` head that decodes the op's inputs in numpy as the op does: its anchors ([ycenter, xcenter,
    h, w] in 0..1, the op's third input, a constant), scales, class count and thresholds."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.tflite.reader import constant_array

    opts = options(op)
    anchors = constant_array(model, model.subgraphs[0].tensors[int(op.inputs[2])])
    if anchors is None or anchors.ndim != 2 or anchors.shape[1] != 4:
        raise EdgecnnError(f"{OP}: its anchors input is not a constant (A, 4) tensor; --postprocess numpy needs it")
    return {"kind": "tflite_ssd",
            "anchors": [[float(v) for v in row] for row in np.asarray(anchors, np.float32)],
            "scales": [float(opts.get(k, d)) for k, d in (("y_scale", 10.0), ("x_scale", 10.0),
                                                           ("h_scale", 5.0), ("w_scale", 5.0))],
            "num_classes": int(opts.get("num_classes", 0)),
            "max_detections": int(opts.get("max_detections", 100)),
            "iou": float(opts.get("nms_iou_threshold", 0.6))}


def cut(model) -> tuple[bytes, dict] | None:
    """(the model without the op, its box encodings and class scores as the outputs; the head that decodes them),
    or None when there is no such op."""
    from edgecnn.tflite.detect import without_postprocess

    op = find(model)
    if op is None:
        return None
    return without_postprocess(model), head(model, op)
