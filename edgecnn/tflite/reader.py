"""The one `.tflite` reader: TensorFlow-free, on the flatbuffer schema that ships with `ai_edge_litert`.

| function / class | what it gives                                                                        |
|------------------|--------------------------------------------------------------------------------------|
| `read_tflite`    | the file's bytes, or one clear error (missing, or not a TFLite flatbuffer)            |
| `parse`          | bytes -> the schema's object API (`ModelT`), or one clear error for a corrupt buffer   |
| `read_model`     | `parse(read_tflite(path))`                                                             |
| `serialize`      | `ModelT` -> bytes (the rewrite and calibration steps edit the object and write it back) |
| `op_name`        | an operator's builtin name (`CONV_2D`, `CUSTOM:name` for custom ops)                  |
| `const_ints`     | the int values of a constant tensor (axes, paddings), or None                          |
| `TfliteInfo`     | op histogram, ops computing in float, IO tensors with scale/zero-point, weight dtypes  |

Used by convert (report, integer-only check, Edge TPU preflight), evaluate, bench and deploy (mcu-check, export-c).
Importing it costs numpy and the generated schema module (~0.1 s), never TensorFlow.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

QUANT_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
NON_COMPUTE_OPS = {"RESHAPE", "SQUEEZE", "SHAPE", "STRIDED_SLICE", "PACK", "TRANSPOSE"}


def schema():
    """The generated flatbuffer schema module (object API: ModelT, SubGraphT, ...)."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite(path: str | Path) -> bytes:
    """The bytes of a .tflite file, or one clear error (missing, or not a TFLite flatbuffer)."""
    p = Path(path)
    if not p.is_file():
        raise EdgecnnError(f"{p}: model file does not exist")
    data = p.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgecnnError(f"{p}: not a .tflite flatbuffer (no TFL3 identifier)")
    return data


def parse(data: bytes, source: str = "model"):
    """The flatbuffer's object API (`ModelT`) for `data`, or one clear error naming `source`."""
    s = schema()
    try:
        model = s.ModelT.InitFromObj(s.Model.GetRootAs(bytearray(data), 0))
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises anything from struct to IndexError
        raise EdgecnnError(f"{source}: cannot parse the .tflite flatbuffer ({type(exc).__name__})") from None
    if not model.subgraphs:  # garbage after a TFL3 header parses as an empty model: every real one has a graph
        raise EdgecnnError(f"{source}: the model has no subgraph (a corrupt or truncated .tflite?)")
    for buf in model.buffers or ():
        # data stored after the flatbuffer, by offset and size (ai-edge-quantizer writes its models so): taken into
        # the buffer, as `serialize` writes one flatbuffer (it kept the offsets and lost the data: "Constant buffer
        # 82 specified an out of range offset" on LiteRT's load of a rewritten --precision model)
        if (getattr(buf, "offset", 0) or 0) > 1:
            end = int(buf.offset) + int(buf.size)
            if end > len(data):
                raise EdgecnnError(f"{source}: a constant buffer points past the end of the file (truncated .tflite?)")
            buf.data, buf.offset, buf.size = np.frombuffer(bytes(data[int(buf.offset):end]), np.uint8), 0, 0
    return model


def read_model(path: str | Path):
    """`parse(read_tflite(path))`."""
    return parse(read_tflite(path), str(path))


def serialize(model) -> bytes:
    """A `ModelT` back to .tflite bytes (with the TFL3 file identifier)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_name(model, op) -> str:
    """The builtin name of `op` (`CONV_2D`, ...), `CUSTOM:name` for a custom op."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
    name = enum_names(schema().BuiltinOperator).get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        return f"CUSTOM:{custom}"
    return name


def tensor_dtype(tensor) -> str:
    """A tensor's element type as numpy spells it: "float32", "int8", ..."""
    return enum_names(schema().TensorType).get(tensor.type, str(tensor.type)).lower()


def tensor_name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def is_constant(model, tensor) -> bool:
    """A tensor backed by a non-empty buffer (weights, biases, shape/axis operands)."""
    b = tensor.buffer
    return b is not None and 0 < b < len(model.buffers) and model.buffers[b].data is not None \
        and len(model.buffers[b].data) > 0


def constant_array(model, tensor) -> np.ndarray | None:
    """A constant tensor's values as a writable array of its dtype and shape, or None when it is not constant."""
    try:
        dtype = np.dtype(tensor_dtype(tensor))
    except TypeError:  # STRING, RESOURCE, ...: no numpy array of numbers
        return None
    if not is_constant(model, tensor):
        return None
    data = np.frombuffer(bytearray(model.buffers[tensor.buffer].data), dtype=dtype)
    shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
    return data.reshape(shape) if shape and int(np.prod(shape)) == data.size else data


def const_ints(model, tensor) -> list[int] | None:
    """The int values of a constant tensor (axis, paddings, strides), or None when it is not constant."""
    if tensor_dtype(tensor) not in ("int32", "int64"):
        return None
    values = constant_array(model, tensor)
    return None if values is None else [int(v) for v in values.reshape(-1)]


def consumers(subgraph) -> dict[int, list]:
    """tensor index -> the operators of `subgraph` that read it, in graph order."""
    found: dict[int, list] = {}
    for op in subgraph.operators or []:
        for i in op.inputs:
            found.setdefault(int(i), []).append(op)
    return found


def expose(model, tensors, operators: list | None = None, inputs: list[int] | None = None) -> bytes:
    """`model` serialized with `tensors` (subgraph 0) as its outputs and no signature, so an interpreter returns
    them (and, given, with only `operators`, fed `inputs`: a part of the graph); `model` itself is left as it was."""
    sub = model.subgraphs[0]
    saved = sub.outputs, model.signatureDefs, sub.operators, sub.inputs
    sub.outputs, model.signatureDefs = np.asarray(tensors, dtype=np.int32), []
    if operators is not None:
        sub.operators, sub.inputs = operators, np.asarray(inputs, dtype=np.int32)
    try:
        return serialize(model)
    finally:
        sub.outputs, model.signatureDefs, sub.operators, sub.inputs = saved


@dataclass
class OpInfo:
    index: int
    op: str
    inputs: list[int]
    outputs: list[int]
    output_names: list[str]
    float_compute: bool


@dataclass
class TensorIO:
    name: str
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def describe_io(t: dict) -> str:
    """One line for a tensor's `TensorIO.to_dict()`: `name: int8 [1x32x32x1], scale 0.0039, zero point -128`."""
    shape = "x".join(str(v) for v in t["shape"])
    q = f", scale {t['scale']:.9g}, zero point {t['zero_point']}" if t.get("scale") else ", not quantized"
    return f"{t['name']}: {t['dtype']} [{shape}]{q}"


class TfliteInfo:
    """Parsed view of one .tflite (first subgraph for ops; all subgraphs counted)."""

    def __init__(self, data: bytes, source: str = "model"):
        self.model = parse(data, source)
        sub = self.model.subgraphs[0]
        self.tensors = sub.tensors or []
        self.ops: list[OpInfo] = []
        for i, op in enumerate(sub.operators or []):
            name = op_name(self.model, op)
            ins = [int(t) for t in (op.inputs if op.inputs is not None else []) if t >= 0]
            outs = [int(t) for t in (op.outputs if op.outputs is not None else [])]
            float_compute = name not in QUANT_BOUNDARY_OPS | NON_COMPUTE_OPS and any(
                self.dtype(t) in ("float32", "float16") and not self._is_constant(t) for t in outs)
            self.ops.append(OpInfo(i, name, ins, outs, [self.tensor_name(t) for t in outs], float_compute))
        self.inputs = [self._io(t) for t in (sub.inputs if sub.inputs is not None else [])]
        self.outputs = [self._io(t) for t in (sub.outputs if sub.outputs is not None else [])]
        self.num_subgraphs = len(self.model.subgraphs)

    def _is_constant(self, t: int) -> bool:
        return is_constant(self.model, self.tensors[t])

    def tensor_name(self, t: int) -> str:
        return tensor_name(self.tensors[t])

    def dtype(self, t: int) -> str:
        return tensor_dtype(self.tensors[t])

    def _io(self, t: int) -> TensorIO:
        q = self.tensors[t].quantization
        scale = zp = None
        if q is not None and q.scale is not None and len(q.scale):
            scale, zp = float(np.asarray(q.scale)[0]), int(np.asarray(q.zeroPoint)[0])
        shape = [int(d) for d in (self.tensors[t].shape if self.tensors[t].shape is not None else [])]
        return TensorIO(self.tensor_name(t), shape, self.dtype(t), scale, zp)

    def op_histogram(self) -> dict[str, int]:
        return dict(Counter(op.op for op in self.ops).most_common())

    def float_ops(self) -> list[OpInfo]:
        """Ops that compute in float (QUANTIZE/DEQUANTIZE boundaries and pure reshapes excluded)."""
        return [op for op in self.ops if op.float_compute]

    def weight_dtypes(self) -> dict[str, int]:
        """Constant tensors by dtype (what the weights are stored as)."""
        return dict(Counter(self.dtype(t) for t in range(len(self.tensors)) if self._is_constant(t)))
