"""float16 weights on a flatbuffer, both ways: `float16_weights` for `--quant float16` from a .tflite source (TF's
public converter cannot take a flatbuffer), `widen_float16_weights` to read a float16-weight .tflite (how MediaPipe
ships its models) as the float32 model it stands for.

`float16_weights` writes what TF's own float16 converter emits (checked against it in tests/test_convert_tflite.py):
every float32 constant tensor an op reads is stored as a float16 constant of the same name and shape, and a
DEQUANTIZE op (version 3, float16 -> float32), placed before all other ops, feeds the original float32 tensor, which
the consumers keep reading. Compute stays float32; CPUs widen the weights once at load, GPU delegates use them as they
are. The values are exactly `np.float16(w)`, as TF rounds them.

`widen_float16_weights` undoes that structure: each DEQUANTIZE of a float16 constant is folded into a float32
constant (float16 -> float32 is exact, and it is what a CPU computes with after widening at load), so calibration
and int8 quantization see a plain float32 model.
"""

from __future__ import annotations

import numpy as np

DEQUANTIZE_FLOAT16_VERSION = 3  # the DEQUANTIZE version TF writes for a float16 input


def float16_weights(f32: bytes) -> bytes:
    """The model with its float32 constant operands stored as float16 behind DEQUANTIZE ops."""
    from edgecnn.convert.rewrite.graph import opcode_index
    from edgecnn.tflite.reader import is_constant, parse, schema, serialize

    fb = schema()
    model = parse(f32)
    deq = opcode_index(model, "DEQUANTIZE", DEQUANTIZE_FLOAT16_VERSION)
    halved: set[int] = set()  # buffers already rewritten to float16 (tensors may share one)
    for sub in model.subgraphs:
        read = {int(t) for op in sub.operators or [] for t in (op.inputs if op.inputs is not None else []) if t >= 0}
        new_ops = []
        for i in sorted(read):
            t = sub.tensors[i]
            if t.type != fb.TensorType.FLOAT32 or not is_constant(model, t):
                continue
            buf = model.buffers[t.buffer]
            if t.buffer not in halved:
                w = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.float32)
                buf.data = np.frombuffer(w.astype(np.float16).tobytes(), dtype=np.uint8)
                halved.add(t.buffer)
            half = fb.TensorT()
            half.name, half.shape, half.type, half.buffer = t.name, t.shape, fb.TensorType.FLOAT16, t.buffer
            sub.tensors.append(half)
            empty = fb.BufferT()
            model.buffers.append(empty)
            t.buffer = len(model.buffers) - 1  # the float32 tensor is now DEQUANTIZE's output
            op = fb.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = deq, [len(sub.tensors) - 1], [i]
            new_ops.append(op)
        sub.operators = new_ops + list(sub.operators or [])
    return serialize(model)


def widen_float16_weights(model) -> int:
    """Fold every DEQUANTIZE of a float16 constant into a float32 constant, in place on a parsed model (`ModelT`);
    returns how many were folded."""
    from edgecnn.tflite.reader import is_constant, op_name, schema

    fb = schema()
    folded = 0
    for sub in model.subgraphs:
        kept = []
        for op in sub.operators or []:
            src = sub.tensors[int(op.inputs[0])] if op.inputs is not None and len(op.inputs) else None
            if not (op_name(model, op) == "DEQUANTIZE" and src is not None and src.type == fb.TensorType.FLOAT16
                    and is_constant(model, src)):
                kept.append(op)
                continue
            w = np.frombuffer(bytes(bytearray(model.buffers[src.buffer].data)), dtype=np.float16)
            wide = fb.BufferT()
            wide.data = np.frombuffer(w.astype(np.float32).tobytes(), dtype=np.uint8)
            model.buffers.append(wide)
            sub.tensors[int(op.outputs[0])].buffer = len(model.buffers) - 1
            folded += 1
        sub.operators = kept
    if folded:
        _drop_unused_tensors(model)
        _drop_unused_opcodes(model)
    return folded


def _drop_unused_opcodes(model) -> None:
    """Remove operator codes no op uses any more (a DEQUANTIZE version an interpreter may not register)."""
    ops = [op for sub in model.subgraphs for op in sub.operators or []]
    used = sorted({int(op.opcodeIndex) for op in ops})
    new_index = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for op in ops:
        op.opcodeIndex = new_index[int(op.opcodeIndex)]


def _drop_unused_tensors(model) -> None:
    """Remove tensors no op, subgraph IO or signature refers to (the float16 copies left by widening), renumbering
    the rest; their buffers are emptied (buffer indices stay: other tensors may share them)."""
    for si, sub in enumerate(model.subgraphs):
        sigs = [m for sig in model.signatureDefs or [] if int(sig.subgraphIndex or 0) == si
                for m in list(sig.inputs or []) + list(sig.outputs or [])]
        lists = [op.inputs for op in sub.operators or []] + [op.outputs for op in sub.operators or []] + \
                [op.intermediates for op in sub.operators or []] + [sub.inputs, sub.outputs]
        used = {int(i) for ts in lists if ts is not None for i in ts if i >= 0} | {int(m.tensorIndex) for m in sigs}
        new_index = {old: new for new, old in enumerate(sorted(used))}
        for i, t in enumerate(sub.tensors):
            if i not in used and t.buffer:
                model.buffers[t.buffer].data = None
        sub.tensors = [sub.tensors[i] for i in sorted(used)]
        for op in sub.operators or []:
            for name in ("inputs", "outputs", "intermediates"):
                ts = getattr(op, name)
                if ts is not None:
                    setattr(op, name, [new_index[int(i)] if i >= 0 else int(i) for i in ts])
        sub.inputs = [new_index[int(i)] for i in (sub.inputs if sub.inputs is not None else [])]
        sub.outputs = [new_index[int(i)] for i in (sub.outputs if sub.outputs is not None else [])]
        for m in sigs:
            m.tensorIndex = new_index[int(m.tensorIndex)]
