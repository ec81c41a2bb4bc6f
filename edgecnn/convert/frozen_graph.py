"""A TF1 frozen graph (`.pb`, a GraphDef with its weights as constants) as what `convert` starts from: the TF Object
Detection API's `frozen_inference_graph.pb` (what Coral's and many Raspberry Pi detection tutorials start from), a
`retrain.py` classifier, any graph with one image input.

The graph becomes a float32 flatbuffer at batch 1 through TF's own v1 converter (`from_frozen_graph`), cut where the
field cuts it:

- a TF OD API SSD export (recognised by its node names, `SSD_EXPORT`): from the preprocessed image
  (`Preprocessor/sub`, batch 1 at the size its resize op holds) to the raw box encodings (`Squeeze`) and the class
  scores after the score conversion (`Postprocessor/convert_scores`) — the tensors the TF OD API's own TFLite export
  (`export_tflite_ssd_graph`) feeds TFLite_Detection_PostProcess. The preprocessing of the graph (x * mul - sub)
  becomes the model's spec, the anchors (corners in 0..1, evaluated once) and the box coder's scales (read from the
  decoder's divisions) become the post-processing: with `--postprocess graph` the TFLite_Detection_PostProcess op is
  appended (`detection_postprocess.attach`, then the model converts like a float SSD `.tflite`), with `numpy` they
  are stored as a `tflite_ssd` head. Its `while` loops, NMS and the uint8 `image_tensor` stay behind;
- any other graph: its one float Placeholder of shape (?, H, W, 1|3) in, and its one output (a node nothing reads,
  not a constant) out; `--graph-input` / `--graph-outputs` name them when that is ambiguous.

A `.pb` that is not a GraphDef, or whose input or outputs cannot be found, is one line naming the file and what to
pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError

# the TF OD API's SSD export (object_detection/exporter.py, TF1): role -> node name
SSD_EXPORT = {"input": "Preprocessor/sub", "boxes": "Squeeze", "scores": "Postprocessor/convert_scores",
              "anchors": "Concatenate/concat", "size": "Preprocessor/map/while/ResizeImage/stack",
              "mul": "Preprocessor/mul/x", "sub": "Preprocessor/sub/y",
              "scales": ("Postprocessor/Decode/truediv/y", "Postprocessor/Decode/truediv_1/y",
                         "Postprocessor/Decode/truediv_2/y", "Postprocessor/Decode/truediv_3/y")}
NOT_OUTPUTS = {"Const", "NoOp", "Assert", "Placeholder", "PlaceholderWithDefault"}


def read_graph_def(path: Path):
    """The GraphDef in `path` (a `.pb`, or the first MetaGraph of a TF1 SavedModel directory: the TF OD API's TF1
    exporter writes the same frozen graph there), or one line saying it is not one."""
    import tensorflow as tf

    path = Path(path)
    if path.is_dir():
        from tensorflow.core.protobuf import saved_model_pb2

        sm = saved_model_pb2.SavedModel()
        try:
            sm.ParseFromString((path / "saved_model.pb").read_bytes())
        except Exception:
            raise EdgecnnError(f"{path}: saved_model.pb cannot be read (truncated or not a SavedModel)") from None
        if not sm.meta_graphs or not sm.meta_graphs[0].graph_def.node:
            raise EdgecnnError(f"{path}: a SavedModel without a graph")
        return sm.meta_graphs[0].graph_def
    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(Path(path).read_bytes())
    except Exception:  # protobuf's DecodeError and friends
        raise EdgecnnError(f"{path}: not a TF1 frozen graph (cannot be read as a GraphDef)") from None
    if not gd.node:
        raise EdgecnnError(f"{path}: not a TF1 frozen graph (no nodes)")
    return gd


def _const(nodes: dict, name: str):
    from tensorflow.python.framework import tensor_util

    n = nodes.get(name)
    if n is None or n.op != "Const":
        return None
    return tensor_util.MakeNdarray(n.attr["value"].tensor)


def _is_ssd_export(nodes: dict) -> bool:
    return all(SSD_EXPORT[k] in nodes for k in ("input", "boxes", "scores", "anchors", "size"))


def is_ssd_export_savedmodel(path) -> bool:
    """A SavedModel directory written by the TF OD API's TF1 exporter (its graph is a frozen SSD export)."""
    try:
        gd = read_graph_def(Path(path))
    except EdgecnnError:
        return False
    return _is_ssd_export({n.name: n for n in gd.node})


def _shape(node) -> list[int] | None:
    if "shape" not in node.attr:
        return None
    dims = node.attr["shape"].shape
    return None if dims.unknown_rank else [int(d.size) for d in dims.dim]


def _generic_io(path, gd, nodes, graph_input, graph_outputs) -> tuple[str, list[int], list[str]]:
    """(input name, its (H, W, C), output names) of a graph that is not a known export."""
    graph_input = graph_input.split(":")[0] if graph_input else graph_input
    graph_outputs = [o.split(":")[0] for o in graph_outputs]
    if graph_input:
        if graph_input not in nodes:
            raise EdgecnnError(f"{path}: has no node {graph_input!r} (--graph-input)")
        inp = graph_input
    else:
        images = [n.name for n in gd.node if n.op == "Placeholder" and n.attr["dtype"].type == 1  # DT_FLOAT
                  and (s := _shape(n)) is not None and len(s) == 4 and s[3] in (1, 3)]
        if len(images) != 1:
            found = ", ".join(n.name for n in gd.node if n.op == "Placeholder") or "none"
            raise EdgecnnError(f"{path}: cannot tell the image input (float Placeholders (?, H, W, 1|3): "
                               f"{len(images)}; Placeholders: {found}); name it with --graph-input NODE")
        inp = images[0]
    shape = _shape(nodes[inp]) if nodes[inp].op == "Placeholder" else None
    if not shape or len(shape) != 4 or min(shape[1:3]) < 1:
        raise EdgecnnError(f"{path}: input {inp!r} has shape {shape}, not a fixed-size image (?, H, W, 1|3)")
    if graph_outputs:
        missing = [o for o in graph_outputs if o not in nodes]
        if missing:
            raise EdgecnnError(f"{path}: has no node {missing[0]!r} (--graph-outputs)")
        return inp, shape[1:], list(graph_outputs)
    read = {i.split(":")[0].lstrip("^") for n in gd.node for i in n.input}
    consts = {n.name for n in gd.node if n.op == "Const"}
    ends = [n.name for n in gd.node if n.name not in read and n.op not in NOT_OUTPUTS
            and not (n.op == "Identity" and n.input and n.input[0].split(":")[0] in consts)]
    if len(ends) != 1:
        raise EdgecnnError(f"{path}: cannot tell the output ({len(ends)} nodes nothing reads: "
                           f"{', '.join(ends[:5]) or 'none'}); name it with --graph-outputs NODE[,NODE]")
    return inp, shape[1:], ends


def _anchors(path, gd, name: str) -> np.ndarray:
    """The anchors tensor evaluated once (a constant subgraph), as [ycenter, xcenter, h, w] from its corners."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    try:
        with tf.compat.v1.Session(graph=g) as sess:
            corners = np.asarray(sess.run(f"{name}:0"), np.float32)
    except Exception as exc:  # anchors that depend on the image (a graph exported without a fixed resize)
        msg = " ".join(str(exc).split())[:160]
        raise EdgecnnError(f"{path}: its anchors ({name}) cannot be computed without an image ({msg}); name the "
                           "input and outputs with --graph-input/--graph-outputs") from None
    if corners.ndim != 2 or corners.shape[1] != 4:
        raise EdgecnnError(f"{path}: its anchors ({name}) are {list(corners.shape)}, not (A, 4) corners")
    ymin, xmin, ymax, xmax = corners.T
    return np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=1)


def _convert(path, inp: str, shape: list[int], outputs: list[str]) -> bytes:
    import tensorflow as tf

    from edgecnn.convert.frontend import add_signature, converter_quiet

    try:  # from_frozen_graph itself refuses a graph that was not frozen, or an output without a tensor 0
        conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(path), input_arrays=[inp], output_arrays=outputs, input_shapes={inp: [1, *shape]})
        with converter_quiet():
            data = conv.convert()
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise EdgecnnError(f"{path}: TF's converter cannot convert the graph from {inp!r} to "
                           f"{', '.join(outputs)} ({msg[:240]})") from None
    return add_signature(data)


def read_frozen_graph(path: str | Path, postprocess: str = "graph", graph_input: str | None = None,
                      graph_outputs: tuple[str, ...] = ()) -> tuple[bytes, PreprocessSpec | None,
                                                                   tuple[int, int, int], list[str], dict]:
    """(float32 flatbuffer at batch 1, the spec the graph's own preprocessing gives or None, input (H, W, C), notes,
    the detection head for `--postprocess numpy` else {}), as `tflite_source.read_float_tflite` gives for a .tflite."""
    from edgecnn.convert import detection_postprocess

    path = Path(path)
    gd = read_graph_def(path)
    if path.is_dir():  # TF's v1 converter reads a GraphDef file: the SavedModel's graph written to one
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgecnn-tf1-") as tmp:
            pb = Path(tmp) / "frozen_inference_graph.pb"
            pb.write_bytes(gd.SerializeToString())
            try:
                return read_frozen_graph(pb, postprocess, graph_input, graph_outputs)
            except EdgecnnError as exc:
                raise EdgecnnError(str(exc).replace(str(pb), str(path))) from None
    nodes = {n.name: n for n in gd.node}
    if not (_is_ssd_export(nodes) and not graph_input and not graph_outputs):
        inp, shape, outputs = _generic_io(path, gd, nodes, graph_input, graph_outputs)
        data = _convert(path, inp, shape, outputs)
        return data, None, tuple(shape), [f"TF1 frozen graph: {inp} -> {', '.join(outputs)}"], {}
    size = _const(nodes, SSD_EXPORT["size"])
    if size is None or np.size(size) < 2:
        raise EdgecnnError(f"{path}: a TF Object Detection API SSD export without a fixed resize "
                           f"({SSD_EXPORT['size']}); name the input and outputs with --graph-input/--graph-outputs")
    h, w = (int(v) for v in np.asarray(size).reshape(-1)[:2])
    data = _convert(path, SSD_EXPORT["input"], [h, w, 3], [SSD_EXPORT["boxes"], SSD_EXPORT["scores"]])
    anchors = _anchors(path, gd, SSD_EXPORT["anchors"])
    found = [_const(nodes, n) for n in SSD_EXPORT["scales"]]
    if any(v is None or np.size(v) != 1 for v in found):
        raise EdgecnnError(f"{path}: a TF Object Detection API SSD export whose box coder has no scale constants "
                           f"({', '.join(SSD_EXPORT['scales'])}); name the input and outputs with --graph-input/"
                           "--graph-outputs and decode the raw outputs yourself")
    scales = [float(np.reshape(v, ())) for v in found]
    mul, sub = _const(nodes, SSD_EXPORT["mul"]), _const(nodes, SSD_EXPORT["sub"])
    spec = None
    if mul is not None and sub is not None and np.size(mul) == 1 and np.size(sub) == 1:
        spec = PreprocessSpec(h, w, 3).replace(scale=float(np.reshape(mul, ())), offset=-float(np.reshape(sub, ())))
    from edgecnn.tflite.reader import TfliteInfo

    info = TfliteInfo(data)
    shapes = [list(o.shape) for o in info.outputs]
    if len(shapes) != 2 or shapes[0][-1] != 4 or shapes[1][-1] < 2 or shapes[0][1] != len(anchors):
        raise EdgecnnError(f"{path}: its raw heads are {shapes}, not box encodings (1, {len(anchors)}, 4) and "
                           "class scores (1, A, classes + background)")
    head = detection_postprocess.make_head(anchors, scales, num_classes=shapes[1][-1] - 1)
    notes = [f"TF Object Detection API SSD export: {SSD_EXPORT['input']} ({h}x{w}) -> raw box encodings and "
             f"class scores, {len(anchors)} anchors read from the graph (box coder scales {scales})"]
    if postprocess == "numpy":
        notes.append("post-processing by edgecnn's numpy decoder (the anchors stored in the model's spec)")
        return data, spec, (h, w, 3), notes, head
    notes.append(f"{detection_postprocess.OP} appended with the graph's anchors (the TF OD API's TFLite route)")
    return detection_postprocess.attach(data, head), spec, (h, w, 3), notes, {}
