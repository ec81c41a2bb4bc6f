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


MAX_DETECTIONS = 100  # what `attach` gives the op: enough for mAP (the TF OD API's TFLite export defaults to 10)
SCORE_THRESHOLD = 1e-8  # the op's nms_score_threshold in the TF OD API's SSD configs
IOU = 0.6  # its nms_iou_threshold there


def make_head(anchors: np.ndarray, scales, num_classes: int, max_detections: int = MAX_DETECTIONS,
              iou: float = IOU, score_threshold: float = SCORE_THRESHOLD, regular_nms: bool = False) -> dict:
    """The `tflite_ssd` head (`tasks/detection/postprocess.tflite_ssd`): anchors (A, 4) [ycenter, xcenter, h, w] in
    0..1, scales [y, x, h, w], the class count (without the background) and the op's NMS settings."""
    return {"kind": "tflite_ssd", "anchors": [[float(v) for v in row] for row in np.asarray(anchors, np.float32)],
            "scales": [float(v) for v in scales], "num_classes": int(num_classes),
            "max_detections": int(max_detections), "iou": float(iou), "score_threshold": float(score_threshold),
            "nms": "regular" if regular_nms else "fast"}


def head(model, op) -> dict:
    """The `tflite_ssd` head that decodes the op's inputs in numpy as the op does: its anchors (the op's third
    input, a constant), scales, class count and thresholds."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.tflite.reader import constant_array

    opts = options(op)
    anchors = constant_array(model, model.subgraphs[0].tensors[int(op.inputs[2])])
    if anchors is None or anchors.ndim != 2 or anchors.shape[1] != 4:
        raise EdgecnnError(f"{OP}: its anchors input is not a constant (A, 4) tensor; --postprocess numpy needs it")
    return make_head(anchors, [opts.get(k, d) for k, d in (("y_scale", 10.0), ("x_scale", 10.0), ("h_scale", 5.0),
                                                             ("w_scale", 5.0))],
                     opts.get("num_classes", 0), opts.get("max_detections", MAX_DETECTIONS),
                     opts.get("nms_iou_threshold", IOU), opts.get("nms_score_threshold", SCORE_THRESHOLD),
                     bool(opts.get("use_regular_nms", False)))


def attach(data: bytes, head: dict) -> bytes:
    """A float model whose outputs are box encodings (1, A, 4) and class scores (1, A, C + 1), with the op appended
    as the TF OD API's TFLite export makes it: its four outputs (boxes, classes, scores, count) are the model's."""
    from flatbuffers import flexbuffers

    from edgecnn.convert.frontend import add_signature
    from edgecnn.convert.rewrite.graph import Graph
    from edgecnn.tflite.reader import parse, serialize

    g = Graph(parse(data))
    boxes, scores = (int(t) for t in g.sg.outputs)
    m = int(head["max_detections"])
    anchors = g.add_tensor("anchors", [len(head["anchors"]), 4], "float32",
                           data=np.asarray(head["anchors"], np.float32))
    outs = [g.add_tensor(f"{OP}{':' + str(k) if k else ''}", shape, "float32")
            for k, shape in enumerate(([1, m, 4], [1, m], [1, m], [1]))]
    code = g.fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = g.fb.BuiltinOperator.CUSTOM
    code.customCode, code.version = OP, 1
    g.model.operatorCodes.append(code)
    op = g.fb.OperatorT()
    op.opcodeIndex = len(g.model.operatorCodes) - 1
    op.inputs, op.outputs = np.asarray([boxes, scores, anchors], np.int32), np.asarray(outs, np.int32)
    y, x, h, w = head["scales"]
    opts = {"max_detections": m, "max_classes_per_detection": 1, "detections_per_class": 100,
            "use_regular_nms": head.get("nms") == "regular",
            "nms_score_threshold": float(head.get("score_threshold", SCORE_THRESHOLD)),
            "nms_iou_threshold": float(head["iou"]),
            "num_classes": int(head["num_classes"]), "y_scale": float(y), "x_scale": float(x), "h_scale": float(h),
            "w_scale": float(w)}
    op.customOptions = list(flexbuffers.Dumps(opts))
    op.customOptionsFormat = g.fb.CustomOptionsFormat.FLEXBUFFERS
    g.sg.operators.append(op)
    g.sg.outputs = np.asarray(outs, np.int32)
    g.model.signatureDefs = []
    return add_signature(serialize(g.model))


def unranged_outputs(calibrated: bytes) -> bytes:
    """`calibrated` with no recorded range on the op's outputs, so the quantizer leaves them float whatever the
    --io type (with a range, int8 outputs would round its class ids to 1/255 steps)."""
    from edgecnn.tflite.reader import parse, serialize

    model = parse(calibrated)
    op = find(model)
    if op is None:
        return calibrated
    for t in op.outputs:
        model.subgraphs[0].tensors[int(t)].quantization = None
    return serialize(model)


def cut(model) -> tuple[bytes, dict] | None:
    """(the model without the op, its box encodings and class scores as the outputs; the head that decodes them),
    or None when there is no such op."""
    from edgecnn.tflite.detect import without_postprocess

    op = find(model)
    if op is None:
        return None
    return without_postprocess(model), head(model, op)
