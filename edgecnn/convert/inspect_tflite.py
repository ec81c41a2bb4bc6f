"""Read a .tflite flatbuffer: op histogram, which ops compute in float, IO dtypes with scale/zero-point.

Used by the convert report, the integer-only check and the per-layer comparison.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

QUANT_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
NON_COMPUTE_OPS = {"RESHAPE", "SQUEEZE", "SHAPE", "STRIDED_SLICE", "PACK", "TRANSPOSE"}


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


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


class TfliteInfo:
    """Parsed view of one .tflite (first subgraph for ops; all subgraphs counted)."""

    def __init__(self, data: bytes):
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils

        self.model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
        op_names = _enum_names(schema.BuiltinOperator)
        self.type_names = {k: v.lower() for k, v in _enum_names(schema.TensorType).items()}
        sub = self.model.subgraphs[0]
        self.tensors = sub.tensors
        self.ops: list[OpInfo] = []
        for i, op in enumerate(sub.operators or []):
            code = self.model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = op_names.get(builtin, f"OP_{builtin}")
            if name == "CUSTOM":
                name = f"CUSTOM:{code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode}"
            ins = [int(t) for t in (op.inputs if op.inputs is not None else []) if t >= 0]
            outs = [int(t) for t in (op.outputs if op.outputs is not None else [])]
            float_compute = name not in QUANT_BOUNDARY_OPS | NON_COMPUTE_OPS and any(
                self.dtype(t) in ("float32", "float16") and not self._is_constant(t) for t in outs)
            self.ops.append(OpInfo(i, name, ins, outs, [self.tensor_name(t) for t in outs], float_compute))
        self.inputs = [self._io(t) for t in sub.inputs]
        self.outputs = [self._io(t) for t in sub.outputs]
        self.num_subgraphs = len(self.model.subgraphs)

    def _is_constant(self, t: int) -> bool:
        buf = self.model.buffers[self.tensors[t].buffer]
        return buf.data is not None and len(buf.data) > 0

    def tensor_name(self, t: int) -> str:
        n = self.tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def dtype(self, t: int) -> str:
        return self.type_names.get(self.tensors[t].type, str(self.tensors[t].type))

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
