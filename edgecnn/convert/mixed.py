"""The mixed-precision quantizer: ai-edge-quantizer (AEQ) driven by a precision plan and by edgecnn's own ranges.

Why AEQ: TF 2.21's converter cannot mix int8 and int16 per op (every route was tried: `mlir_quantize` int16 gives
a model LiteRT refuses, `denylisted_nodes` means float, the 16x8 calibrator is whole-model, fake-quant at 16 bits
fails the MLIR verifier: docs/design/precision-plans-research.md §1). AEQ 0.10.0 quantizes each op as its
recipe says and inserts the int8 <-> int16 <-> float conversions (QUANTIZE / DEQUANTIZE) wherever a producer and
a consumer disagree; the result loads and runs in LiteRT 2.3 and in TFLite Micro.

Why edgecnn's ranges: AEQ's own calibrator keeps an exponential moving average of per-sample min/max (it clips the
calibration data's extremes: MobileNetV2 a8w8 20.7 dB against 28.5 dB with edgecnn's ranges) and costs ~13 ms
per sample against 3 for the fast calibrator. Fed the same ranges, AEQ's all-int8 model equals edgecnn's MLIR
int8 model: all 66 activation scales and zero points identical on MobileNetV2, outputs within 1 LSB (research
report §2). So the ranges come from `--calibrator` / `--calibration-method` as for plain int8 (the min/max the
calibrated flatbuffer carries per tensor, keyed by tensor name), and AEQ's `calibrate()` is never run.

The recipe: `.*` (every op) int8 first, then one rule per op the plan moves off int8, matched by that op's exact
output tensor name (AEQ matches a regex against "name;" of each op; rules are tried in order of first insertion
and the last match wins, so unique per-op regexes need no ordering tricks). int8: activations asymmetric per
tensor, weights symmetric per channel (`--per-tensor`: per tensor); int16: activations symmetric (TFLite's 16x8
kernels require zero point 0), weights as int8; float: `no_quantize`. `--io float32` adds no_quantize on the
graph's INPUT and OUTPUT (AEQ's default model IO is int8).

AEQ silently falls back to an earlier rule when a config is not supported for an op (`recipe_manager.py`), so the
caller reads the precision back from the model (`precision.read_back`), never from this recipe. AEQ is imported
here only: its API is young and pinned (`ai-edge-quantizer==0.10.0` pins `ai-edge-litert==2.3.0`).
"""

from __future__ import annotations

import re

import numpy as np

from edgecnn.errors import EdgecnnError

INSTALL = "pip install 'edgecnn[precision]' (ai-edge-quantizer 0.10.0)"


def _op_config(bits: int, per_tensor: bool) -> dict:
    return {"activation_tensor_config": {"num_bits": bits, "symmetric": bits == 16, "granularity": "TENSORWISE",
                                         "dtype": "INT"},
            "weight_tensor_config": {"num_bits": 8, "symmetric": True,
                                     "granularity": "TENSORWISE" if per_tensor else "CHANNELWISE", "dtype": "INT"},
            "compute_precision": "INTEGER", "explicit_dequantize": False}


def _rule(regex: str, operation: str, precision: str, per_tensor: bool) -> dict:
    if precision == "float":
        return {"regex": regex, "operation": operation, "algorithm_key": "no_quantize"}
    return {"regex": regex, "operation": operation, "algorithm_key": "min_max_uniform_quantize",
            "op_config": _op_config(16 if precision == "int16" else 8, per_tensor)}


def recipe(ops: dict[str, tuple[str, str]], per_tensor: bool, io_float: bool) -> list[dict]:
    """The AEQ recipe for `ops` ({first output tensor name: (op type, precision)} of the ops off int8)."""
    out = [_rule(".*", "*", "int8", per_tensor)]
    if io_float:
        out += [_rule(".*", io, "float", per_tensor) for io in ("INPUT", "OUTPUT")]
    out += [_rule("^" + re.escape(name) + ";", op, prec, per_tensor) for name, (op, prec) in ops.items()]
    return out


def ranges_by_name(calibrated: bytes) -> dict[str, dict[str, np.ndarray]]:
    """AEQ's calibration result ({tensor name: {"min": [lo], "max": [hi]}}) from the min/max that edgecnn's
    calibrators write into each tensor of the calibrated flatbuffer."""
    from edgecnn.tflite.reader import parse, tensor_name

    out = {}
    for t in parse(calibrated).subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) and q.max is not None and len(q.max):
            out[tensor_name(t)] = {"min": np.asarray(q.min[:1], np.float32), "max": np.asarray(q.max[:1], np.float32)}
    return out


def with_builtin_codes(float_model: bytes) -> bytes:
    """`float_model` with each operator code's `builtinCode` set to max(builtinCode, deprecatedBuiltinCode), as the
    TFLite schema tells readers to take it. Files written by old converters (MediaPipe's BlazeFace) carry the op in
    `deprecatedBuiltinCode` only, with `builtinCode` 0 (= ADD); AEQ 0.10.0 reads `builtinCode` alone, so it took
    every op of BlazeFace for an ADD and quantized the conv weights as activations (asymmetric: LiteRT refuses)."""
    from edgecnn.tflite.reader import parse, serialize

    model = parse(float_model)
    stale = [c for c in model.operatorCodes if int(c.deprecatedBuiltinCode or 0) > int(c.builtinCode or 0)]
    for code in stale:
        code.builtinCode = int(code.deprecatedBuiltinCode)
    return serialize(model) if stale else float_model


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_quantizer") is not None


def quantize_mixed(float_model: bytes, calibrated: bytes, ops: dict[str, tuple[str, str]], per_tensor: bool,
                   io_type: str, verbose: bool = False) -> bytes:
    """`float_model` quantized per `ops` (see `recipe`) with the ranges of `calibrated`; int8 elsewhere."""
    if io_type not in ("int8", "float32"):
        raise EdgecnnError(f"--precision makes int8 or float32 model inputs/outputs, not --io {io_type}")
    if not available():
        raise EdgecnnError(f"--precision needs ai-edge-quantizer: {INSTALL}")
    from edgecnn.convert.frontend import _first_line, add_signature, converter_quiet

    with converter_quiet(verbose):
        from ai_edge_quantizer import quantizer

        try:
            # with a signature: AEQ 0.10.0 rewrites signatures when an output's tensor changes (an int16 head gets
            # a requantize) and fails with "'NoneType' object is not iterable" on a model without any
            q = quantizer.Quantizer(bytearray(add_signature(with_builtin_codes(float_model))),
                                    recipe(ops, per_tensor, io_type == "float32"))
            result = q.quantize(ranges_by_name(calibrated), enable_progress_report=False)
        except Exception as exc:  # noqa: BLE001 - AEQ raises anything from ValueError to KeyError
            raise EdgecnnError(f"mixed-precision quantization (ai-edge-quantizer) failed: {_first_line(exc)}") from None
    return bytes(result.quantized_model)
