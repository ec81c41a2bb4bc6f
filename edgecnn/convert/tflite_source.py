"""A float `.tflite` as what `convert` starts from (a MediaPipe, DeepLab, ... model that has no Keras original).

`Prepared` needs two things from any source: the float32 flatbuffer at batch 1 and the input's (H, W, C). A
.tflite already *is* that flatbuffer, so it is checked and used as it is (its appended edgecnn zip stripped, its
signature kept). The checks say in one line what convert cannot take, before any calibration runs:

- already quantized (integer activations, int8/int16 weights): quantizing twice compounds the rounding, and the
  float source is what should be converted. float16 weights (how MediaPipe ships its models) are not refused: they
  are widened back to float32 (exact; `float16_weights.widen_float16_weights`) and the model converts as float;
- custom ops (nothing can calibrate or quantize them) other than an SSD's TFLite_Detection_PostProcess (kept in
  float or cut off: `detection_postprocess`), several subgraphs (control flow: the calibrator sees the
  main graph only), several inputs, a non-float or non-image input (H, W, 1|3), dynamic H/W;
- a batch other than 1: a dynamic batch (-1) is fixed to 1 (what the Keras path traces at), a fixed batch > 1 is
  refused.

A segmenter that ends in ARG_MAX (a DeepLab export) loses it here: the converted model outputs its class scores
(`arg_max_head`).
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError

ADVICE = "convert takes a float32 .tflite; convert the model's float source instead"


def quantized_content(model) -> str | None:
    """What makes a parsed model already quantized ("int8 activations, int8 weights"), or None for float32
    (only tensors an op or the graph input uses count: leftovers in a file say nothing about what it computes)."""
    from edgecnn.tflite.reader import is_constant, tensor_dtype

    acts, weights = set(), set()
    for sub in model.subgraphs:
        used = {int(i) for op in sub.operators or [] for ts in (op.inputs, op.outputs) if ts is not None
                for i in ts if i >= 0} | {int(i) for i in (sub.inputs if sub.inputs is not None else [])}
        for t in (sub.tensors[i] for i in sorted(used)):
            dt = tensor_dtype(t)
            q = t.quantization
            scaled = q is not None and q.scale is not None and len(q.scale) > 0
            if dt == "float16" or (dt in ("int8", "uint8", "int16") and scaled):
                (weights if is_constant(model, t) else acts).add(dt)
    if not acts and not weights:
        return None
    parts = ([f"{'/'.join(sorted(acts))} activations"] if acts else []) + \
            ([f"{'/'.join(sorted(weights))} weights"] if weights else [])
    return ", ".join(parts)


def _fix_batch(model, path) -> bool:
    """Batch 1 everywhere: a dynamic batch (shape signature -1 in front) becomes 1; a fixed batch > 1 is refused."""
    sub = model.subgraphs[0]
    t = sub.tensors[sub.inputs[0]]
    shape = [int(d) for d in t.shape]
    sig = [int(d) for d in t.shapeSignature] if t.shapeSignature is not None and len(t.shapeSignature) else shape
    if any(d < 0 for d in sig[1:]):
        raise EdgecnnError(f"{path}: input shape {sig} has dynamic dimensions; static shapes are required "
                           "(integer accelerators need them): re-export it with a fixed input size")
    if sig[0] > 1:
        raise EdgecnnError(f"{path}: input batch is {sig[0]}; convert makes batch-1 models: re-export it with "
                           "batch 1 (or a dynamic batch)")
    for tensor in sub.tensors:  # -1 only in front: the batch, whose stored shape is already 1
        s = tensor.shapeSignature
        if s is not None and len(s) and int(s[0]) == -1 and all(int(d) >= 0 for d in s[1:]):
            tensor.shapeSignature = None
    return sig[0] < 0


def read_float_tflite(path: str | Path, postprocess: str = "graph") -> tuple[bytes, PreprocessSpec | None,
                                                                          tuple[int, int, int], list[str], dict]:
    """(float32 flatbuffer at batch 1, its embedded spec or None, input (H, W, C), notes on what was changed, the
    detection head that decodes its outputs when `postprocess` "numpy" cut a TFLite_Detection_PostProcess op off,
    else {}), or one line on what is wrong."""
    from edgecnn.convert import arg_max_head, detection_postprocess
    from edgecnn.convert.float16_weights import widen_float16_weights
    from edgecnn.tflite import metadata
    from edgecnn.tflite.reader import op_name, parse, read_tflite, serialize, tensor_dtype, tensor_name

    data = read_tflite(path)
    spec = metadata.read_spec(data)
    model = parse(metadata.strip(data), str(path))
    widened = widen_float16_weights(model)
    notes = [f"{widened} float16 weight tensor(s) widened to float32 (exact)"] if widened else []
    held = quantized_content(model)
    if held:
        raise EdgecnnError(f"{path}: is already quantized ({held}); {ADVICE}")
    custom = sorted({op_name(model, op) for sub in model.subgraphs for op in sub.operators or []
                     if op_name(model, op).startswith("CUSTOM:")} - {detection_postprocess.KEPT_OP})
    if custom:
        raise EdgecnnError(f"{path}: has custom op(s) {', '.join(c[7:] for c in custom)}, which cannot be "
                           "calibrated or quantized; convert takes builtin ops only")
    if len(model.subgraphs) != 1:
        raise EdgecnnError(f"{path}: has {len(model.subgraphs)} subgraphs (control flow); convert takes "
                           "single-graph models")
    sub = model.subgraphs[0]
    inputs = [] if sub.inputs is None else [int(i) for i in sub.inputs]
    if len(inputs) != 1:
        names = ", ".join(tensor_name(sub.tensors[i]) for i in inputs)
        raise EdgecnnError(f"{path}: has {len(inputs)} inputs ({names}); convert takes models with one image input")
    t = sub.tensors[inputs[0]]
    shape = [int(d) for d in t.shape] if t.shape is not None else []
    if tensor_dtype(t) != "float32" or len(shape) != 4 or shape[3] not in (1, 3):
        raise EdgecnnError(f"{path}: input {tensor_name(t)} is {tensor_dtype(t)} {shape}, not an image "
                           "(float32 [batch, H, W, 1|3])")
    if _fix_batch(model, path):
        notes.append("dynamic batch fixed to 1")
    if arg_max_head.cut(model):
        notes.append("the trailing ARG_MAX cut off: the model outputs its class scores, the arg-max is numpy's "
                      "(no XNNPACK or Edge TPU ARG_MAX)")
    head = {}
    if detection_postprocess.find(model) is not None and postprocess == "numpy":
        data, head = detection_postprocess.cut(model)
        notes.append(f"{detection_postprocess.OP} cut off: the model outputs its box encodings and class scores, "
                     f"edgecnn's numpy post-processing decodes them with the op's {len(head['anchors'])} anchors "
                     "(stored in the model's spec)")
        return data, spec, (shape[1], shape[2], shape[3]), notes, head
    return serialize(model), spec, (shape[1], shape[2], shape[3]), notes, head


def read_converted(data: bytes, source, postprocess: str = "graph"):
    """`read_float_tflite` of a float flatbuffer another converter made from `source` (onnx2tf, TF's converter on a
    SavedModel); its one-line errors name `source`, the file the user gave, not a temporary one."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgecnn-float-") as tmp:
        f32 = Path(tmp) / "float32.tflite"
        f32.write_bytes(data)
        try:
            return read_float_tflite(f32, postprocess)
        except EdgecnnError as exc:
            raise EdgecnnError(str(exc).replace(str(f32), str(source))) from None
