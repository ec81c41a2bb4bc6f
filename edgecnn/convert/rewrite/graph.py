"""Editing a quantized .tflite graph in place: the few primitives every rewrite pass needs.

A pass works on the flatbuffer's object API (`ModelT`, from `edgecnn.tflite.reader.parse`): it adds constant and
activation tensors, finds or adds an operator code, and replaces one operator by a short sequence at the same
position (so execution order stays topological). Nothing here decides *what* to rewrite: that is each pass's module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.tflite import reader

_TYPES = {"int8": "INT8", "uint8": "UINT8", "int32": "INT32", "int16": "INT16", "float32": "FLOAT32"}


@dataclass
class Quant:
    """Per-tensor (one scale) or per-channel (`axis` set) affine quantization."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    @classmethod
    def of(cls, tensor) -> "Quant | None":
        q = tensor.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        return cls(np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64), int(q.quantizedDimension))

    @property
    def per_tensor(self) -> tuple[float, int]:
        return float(self.scale[0]), int(self.zero_point[0])


def opcode_index(model, name: str, version: int) -> int:
    """Index of the operator code for builtin `name` in `model` (added if missing; its version raised to
    `version`, the lowest that runs what the caller adds)."""
    fb = reader.schema()
    code = getattr(fb.BuiltinOperator, name)
    for i, c in enumerate(model.operatorCodes):
        if max(int(c.builtinCode or 0), int(c.deprecatedBuiltinCode or 0)) == code and not c.customCode:
            c.version = max(int(c.version or 1), version)
            return i
    c = fb.OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
    model.operatorCodes.append(c)
    return len(model.operatorCodes) - 1


class Graph:
    """Subgraph 0 of a model, with helpers to add what a rewrite needs."""

    def __init__(self, model):
        self.model = model
        self.sg = model.subgraphs[0]
        self.fb = reader.schema()
        self.notes: dict = {}  # what a pass wants in its report row, besides the count

    # ---- reading ---------------------------------------------------------------------------------------------
    def op_name(self, op) -> str:
        return reader.op_name(self.model, op)

    def tensor(self, i: int):
        return self.sg.tensors[i]

    def shape(self, i: int) -> list[int]:
        return [int(d) for d in self.sg.tensors[i].shape]

    def dtype(self, i: int) -> str:
        return reader.tensor_dtype(self.sg.tensors[i])

    def quant(self, i: int) -> Quant | None:
        return Quant.of(self.sg.tensors[i])

    def ops(self, name: str) -> list:
        return [op for op in self.sg.operators if self.op_name(op) == name]

    # ---- adding ----------------------------------------------------------------------------------------------
    def opcode(self, name: str, version: int) -> int:
        return opcode_index(self.model, name, version)

    def add_tensor(self, name: str, shape, dtype: str, quant: Quant | None = None, data: np.ndarray | None = None) -> int:
        """A new tensor (a constant when `data` is given); returns its index."""
        t = self.fb.TensorT()
        t.name = name.encode()
        t.shape = np.asarray(shape, np.int32)
        t.type = getattr(self.fb.TensorType, _TYPES[dtype])
        if data is not None:
            buf = self.fb.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        else:
            t.buffer = 0
        if quant is not None:
            q = self.fb.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(quant.scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(quant.zero_point)]
            q.quantizedDimension = int(quant.axis)
            t.quantization = q
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def make_op(self, name: str, version: int, inputs, outputs, options_name: str | None = None, **options):
        """An operator of builtin `name` with `<options_name>T` options set from keyword arguments."""
        op = self.fb.OperatorT()
        op.opcodeIndex = self.opcode(name, version)
        op.inputs = np.asarray(inputs, np.int32)
        op.outputs = np.asarray(outputs, np.int32)
        if options_name:
            opts = getattr(self.fb, f"{options_name}T")()
            for k, v in options.items():
                setattr(opts, k, v)
            op.builtinOptionsType = getattr(self.fb.BuiltinOptions, options_name)
            op.builtinOptions = opts
        return op

    def producers(self) -> dict[int, object]:
        """Tensor index -> the op that writes it."""
        return {int(o): op for op in self.sg.operators for o in op.outputs}

    def bypass(self, op, src, x: int) -> None:
        """Remove `op`, whose input `x` `src` writes: `src` writes `op`'s output 0 instead (minimum.py, relu.py)."""
        y = int(op.outputs[0])
        src.outputs = np.asarray([y if int(o) == x else int(o) for o in src.outputs], np.int32)
        self.replace(op, [])

    def replace(self, old, new_ops: list) -> None:
        """Put `new_ops` where `old` was (same position, so the order stays topological)."""
        i = next(k for k, op in enumerate(self.sg.operators) if op is old)
        self.sg.operators[i:i + 1] = new_ops

    def serialize(self) -> bytes:
        return reader.serialize(self.model)


def usable_int8(g: Graph, i: int, rank: int | None = 4) -> bool:
    """Tensor `i` is int8 with a positive per-tensor scale (and of rank `rank`): what the passes can rewrite."""
    q = g.quant(i)
    return (g.dtype(i) == "int8" and q is not None and len(q.scale) == 1 and float(q.scale[0]) > 0
            and (rank is None or len(g.shape(i)) == rank))


def depthwise_constant(g: Graph, x: int, name: str, weight: float, bias: float, kh: int = 1,
                       kw: int = 1) -> tuple[int, int]:
    """Weights (1, kh, kw, C) all equal to `weight` and a bias of `bias`, int8 per channel, for an int8 depthwise
    convolution reading tensor `x` (whose scale the caller checked is positive: `usable_int8`).

    The weight is exact (127 steps of weight/127) unless x's scale is so small that the bias would not fit int32
    at that weight scale (a near-zero activation range, e.g. a dead channel of an untrained net: seen on 13 of
    MobileNetV3-Small's 19 hard-swish inputs untrained). Then the bias is kept exact and the weight gets the coarse
    scale instead: x is so small there that x * weight moves the output by less than 1e-5 of a step either way.
    """
    c = g.shape(x)[-1]
    sx, _ = g.quant(x).per_tensor
    w_scale = abs(weight) / 127.0 if weight else 1.0
    if bias and abs(bias) / (sx * w_scale) >= 2 ** 31 - 1:
        w_scale = abs(bias) / (sx * 2 ** 24)
    q_w = int(np.clip(np.round(weight / w_scale), -127, 127))
    w_scales = np.full(c, w_scale, np.float32)
    w = np.full((1, kh, kw, c), q_w, np.int8)
    b_scale = (sx * w_scales).astype(np.float32)
    b = np.round(np.full(c, bias, np.float64) / b_scale).astype(np.int32)
    wi = g.add_tensor(f"{name}/weights", w.shape, "int8", Quant(w_scales, np.zeros(c, np.int64), 3), w)
    bi = g.add_tensor(f"{name}/bias", b.shape, "int32", Quant(b_scale, np.zeros(c, np.int64), 0), b)
    return wi, bi
