"""`convert_model`: one model file in (Keras, or a float32 .tflite), one .tflite out, and a report of what it holds.

Steps: load (.keras/.h5/SavedModel) -> float32 flatbuffer at batch 1 (frontend.py), or a float .tflite taken as
that flatbuffer (tflite_source.py) -> per mode: float16 / dynamic via the public converter flags (float16 from a
.tflite: float16_weights.py; dynamic from a .tflite: not supported); int8 = calibrate once (calibration.py) then
quantize with the MLIR pass (layers matching --keep-float stay float), or, with --precision, with ai-edge-quantizer
per the plan's int8/int16/float rules (mixed.py, precision.py), then the target's rewrite passes (rewrite/, each
checked on the calibration samples; they and --bias-correction touch int8 layers only); int16x8 via the stock 16x8
path -> load check -> integer-only check -> spec and labels embedded -> atomic write -> report.
"""

from __future__ import annotations

import fnmatch
import re
import time
from pathlib import Path

from edgecnn.convert.request import ConversionRequest
from edgecnn.data.spec import spec_for
from edgecnn.errors import EdgecnnError


def match_keep_float(info, patterns: tuple[str, ...]) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Split --keep-float patterns into op types (UPPER_CASE, e.g. HARD_SWISH) and node names.

    A name pattern matches an op whose output tensor name fnmatches it, or whose any '/'-separated part does
    (so the Keras layer name `expanded_conv_6_project` matches `model/expanded_conv_6_project/Conv2D`).
    Returns (ops, nodes, matches per pattern); a pattern that matches nothing is an error.
    """
    ops, nodes, matches = [], [], {}
    present = {op.op for op in info.ops}
    for pat in patterns:
        if re.fullmatch(r"[A-Z0-9_]+", pat):
            if pat not in present:
                raise EdgecnnError(f"--keep-float {pat}: the model has no {pat} op (ops: {', '.join(sorted(present))})")
            ops.append(pat)
            matches[pat] = [pat]
            continue
        hit = []
        for op in info.ops:
            for name in op.output_names:
                parts = [re.sub(r"_\d+$", "", p) for p in name.split("/")] + name.split("/")
                if fnmatch.fnmatch(name, pat) or any(fnmatch.fnmatch(p, pat) for p in parts):
                    hit.append(name)
        if not hit:
            raise EdgecnnError(f"--keep-float {pat!r} matches no layer or op in the model")
        nodes.extend(hit)
        matches[pat] = hit
    return ops, sorted(set(nodes)), matches


def _convert_with_flags(model, mode: str, verbose: bool) -> bytes:
    import tensorflow as tf

    from edgecnn.convert.frontend import _first_line, add_signature, converter_quiet, make_converter

    conv = make_converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        conv.target_spec.supported_types = [tf.float16]
    with converter_quiet(verbose):
        try:
            return add_signature(conv.convert())
        except Exception as exc:
            raise EdgecnnError(f"{model.name}: {mode} conversion failed: {_first_line(exc)}") from None


def quantize_int8(calibrated: bytes, req: ConversionRequest, nodes=(), ops=(), verbose: bool = False) -> bytes:
    from edgecnn.tflite import private as tflite_private
    from edgecnn.convert.frontend import _first_line, add_signature, converter_quiet

    with converter_quiet(verbose):
        try:
            out = tflite_private.mlir_quantize(calibrated, req.per_tensor, req.io_type, nodes, ops)
        except Exception as exc:
            raise EdgecnnError(f"int8 quantization failed: {_first_line(exc)}") from None
    return add_signature(out)


def check_integer_only(info, req: ConversionRequest, kept_nodes: list[str], kept_ops: list[str]) -> list[str]:
    """Ops left computing in float; an error for --quant int8 unless allowed or asked for with --keep-float."""
    left = [f"{op.op}({op.output_names[0] if op.output_names else op.index})" for op in info.float_ops()
            if not (op.op in kept_ops or set(op.output_names) & set(kept_nodes))]
    if left and req.mode == "int8" and not req.allow_float_fallback:
        raise EdgecnnError(f"--quant int8 is integer-only but {len(left)} op(s) could not be quantized: "
                           f"{', '.join(left[:5])}{' ...' if len(left) > 5 else ''}; pass --allow-float-fallback "
                           "to keep them in float")
    return [f"{op.op}({op.output_names[0] if op.output_names else op.index})" for op in info.float_ops()]


def check_loads(data: bytes, model_path, mode: str) -> None:
    """Refuse to write a model that LiteRT cannot load: the converter can emit one (int16x8 MobileNets overflow a
    kernel's integer range and fail at allocate_tensors: measured on untrained MobileNet V1/V2 224)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgecnn._tf import silenced_fd

    try:
        with silenced_fd(2):
            Interpreter(model_content=data, num_threads=1,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                        ).allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        msg = " ".join(str(exc).split())[:240]
        raise EdgecnnError(f"{model_path}: the {mode} model converts but LiteRT cannot load it ({msg})") from None


class Prepared:
    """What every int8 variant of one model shares: the float flatbuffer, the spec, calibration, timings."""

    def __init__(self, model_path, req: ConversionRequest, verbose: bool = False):
        from edgecnn import _tf
        from edgecnn.convert.sources import FLATBUFFER_SOURCES, kind as source_kind

        self.t0 = time.perf_counter()
        self.model_path, self.req, self.verbose = model_path, req, verbose
        self.timings = {}
        _tf.quiet()
        t = time.perf_counter()
        kind = source_kind(model_path)
        self.qat = None  # the ranges `edgecnn train --qat` learned (a .keras file)
        if kind in FLATBUFFER_SOURCES:  # read straight to the float flatbuffer; no Keras object
            self.model = None
            self.f32, spec, shape, self.source_notes, head = FLATBUFFER_SOURCES[kind](model_path, req)
            self.timings["float_read_s" if kind == "tflite" else "float_convert_s"] = time.perf_counter() - t
        else:
            from edgecnn.convert.frontend import float_tflite
            from edgecnn.modelfile import load_model, read_keras_qat

            self.source_notes, head = [], {}
            self.qat = read_keras_qat(model_path)
            if self.qat is not None and req.mode == "int8":  # refused before any work
                from edgecnn.convert import qat_ranges

                qat_ranges.check_request(req, self.qat, model_path)
            self.model, spec = load_model(model_path, self.source_notes)
            shape = self.model.input_shape[1:]
            self.f32 = float_tflite(self.model, verbose, signature=False)
            self.timings["float_convert_s"] = time.perf_counter() - t
        self.spec = spec_for(shape, spec, req.scaling, str(model_path), req.needs_calibration)
        if head:  # a TFLite_Detection_PostProcess cut off: its anchors and options decode the outputs
            from edgecnn.tasks.detection.postprocess import TASK as DETECTION

            self.spec = self.spec.replace(task=DETECTION, head=head)
        self.original_f32 = self.f32  # the float model as given: what --equalize and dead_inputs.py leave out
        self._f32_info = None
        self._task = None
        self.kept_ops, self.kept_nodes, self.matches = (match_keep_float(self.f32_info, req.keep_float)
                                                        if req.keep_float else ([], [], {}))
        self._keep_detection_postprocess()
        self.calib_desc = None
        self.samples = None
        self.calibrated = None
        self.rewrites: dict[int, list[dict]] = {}  # rewrite report of each int8 variant made, by hash of its bytes
        self.corrections: dict[int, dict | None] = {}  # bias-correction report of each, likewise
        self.equalization: dict | None = None
        self.dead_inputs: dict | None = None  # per tensor: the weights reading always-zero channels, zeroed
        self.plan = None  # --precision: (planned {output name: precision}, rule rows, warnings), set on calibration

    def _keep_detection_postprocess(self) -> None:
        """An SSD's TFLite_Detection_PostProcess left in the graph (--postprocess graph) stays in float after the int8
        body: the standard recipe, said in the report."""
        from edgecnn.convert import detection_postprocess as dp

        if self.model is not None or not self.req.needs_calibration or dp.KEPT_OP not in {
                op.op for op in self.f32_info.ops}:
            return
        self.kept_ops = [*self.kept_ops, dp.KEPT_OP]
        self.source_notes.append(f"{dp.OP} kept in float after the {self.req.mode} body (the standard SSD recipe; "
                                 "--postprocess numpy cuts it off for an integer-only model)")

    @property
    def task(self) -> tuple:
        """(task, context) of the model (`edgecnn.tasks.for_model`): what the quality checks judge it by."""
        from edgecnn import tasks

        if self._task is None:  # a foreign model is recognised from the float flatbuffer (a .pb, .onnx too)
            task, ctx = tasks.for_model(self.spec, self.f32 if self.model is None else self.model_path)
            self._task = (task, {**ctx, "model": str(self.model_path)})
        return self._task

    @property
    def f32_info(self):
        """The parsed float model (parsed only when needed: a large float flatbuffer takes a while)."""
        from edgecnn.tflite.reader import TfliteInfo

        if self._f32_info is None:
            self._f32_info = TfliteInfo(self.f32)
        return self._f32_info

    def calibrate(self) -> None:
        from edgecnn.data.calibration import calibration_samples

        if not self.req.calibration:
            raise EdgecnnError(f"--quant {self.req.mode} needs --calibration SRC (a calibration/ set, a data set, "
                               "or an image folder)")
        self.samples, self.calib_desc = calibration_samples(self.req.calibration, self.spec,
                                                            self.req.num_calibration, self.req.seed)
        if self.req.mode == "int8" and self.req.quality != "auto":  # convert/auto.py calibrates each option itself
            self.calibrate_int8()

    def calibrate_int8(self) -> None:
        """The int8 ranges of the float model on `samples` as `req` asks: --equalize first, dead inputs zeroed,
        then the range method (or a QAT model's learned ranges)."""
        from edgecnn.convert.calibrate import calibrate

        if self.req.equalize and self.equalization is None:  # before calibration: every later step sees it
            from edgecnn.convert.equalize import equalize

            t = time.perf_counter()
            f32, self.equalization = equalize(self.f32, self.samples)
            self.use_float(f32)
            self.timings["equalize_s"] = time.perf_counter() - t
        self.zero_dead_inputs()
        t = time.perf_counter()
        method = self.req.calibration_method
        if method == "best":
            from edgecnn.convert.choose import choose

            if self.req.calibrator != "fast":
                raise EdgecnnError("--calibration-method best needs the fast calibrator (--calibrator fast)")
            method, self.calib_desc["best"] = choose(self.f32, self.samples, self._quantize, *self.task)
        self.calibrated = calibrate(self.f32, self.samples, self.req.calibrator, method)
        self.calib_desc["method"] = method
        if self.qat is not None:  # trained with --qat: its learned ranges replace the calibrated ones
            from edgecnn.convert import qat_ranges

            self.calibrated, self.calib_desc["qat"] = qat_ranges.apply(self.calibrated, self.qat, self.model,
                                                                       self.samples)
            self.calib_desc["method"] = "learned (QAT)"
        self.timings["calibrate_s"] = time.perf_counter() - t

    def zero_dead_inputs(self) -> None:
        """Per tensor (not with --no-rewrite, not on a QAT model), the weights that read channels which are 0 on every
        calibration sample are zeroed where they set their layer's step (`dead_inputs.py`), after --equalize (which
        can grow them), before calibration; layers --keep-float or the --precision plan keep in float are left."""
        if not (self.req.mode == "int8" and self.req.per_tensor and self.req.rewrite and self.qat is None):
            return
        from edgecnn.convert.dead_inputs import zero_dead_inputs

        t = time.perf_counter()
        skip = set(self.kept_nodes)
        if self.req.precision is not None:
            from edgecnn.convert import precision

            skip |= {n for n, (_, p) in precision.assign(self.req.precision, self.f32_info)[0].items() if p == "float"}
        f32, self.dead_inputs = zero_dead_inputs(self.f32, self.samples, skip)
        if f32 is not self.f32:
            self.use_float(f32)
        self.timings["dead_inputs_s"] = self.timings.get("dead_inputs_s", 0.0) + time.perf_counter() - t

    def use_float(self, f32: bytes) -> None:
        """Go on from the float model `f32` (the same function: equalized): what was read off the old one is redone."""
        self.f32, self._f32_info, self.plan = f32, None, None
        if self.req.keep_float:  # tensors between equalized layers were renamed
            from edgecnn.convert import detection_postprocess as dp

            post = [o for o in self.kept_ops if o == dp.KEPT_OP]
            self.kept_ops, self.kept_nodes, self.matches = match_keep_float(self.f32_info, self.req.keep_float)
            self.kept_ops = [*self.kept_ops, *post]

    def _quantize(self, calibrated: bytes, nodes=(), ops=()) -> bytes:
        """int8 by the MLIR pass, or per the --precision plan by ai-edge-quantizer, from `calibrated`'s ranges."""
        from edgecnn.convert import detection_postprocess as dp

        if dp.KEPT_OP in self.kept_ops:  # its outputs stay float (class ids and a count are no int8 tensors)
            calibrated = dp.unranged_outputs(calibrated)
        if self.req.precision is None:
            return quantize_int8(calibrated, self.req, sorted(set(self.kept_nodes) | set(nodes)),
                                 sorted(set(self.kept_ops) | set(ops)), self.verbose)
        from edgecnn.convert import precision
        from edgecnn.convert.mixed import quantize_mixed

        if self.plan is None:  # matched to the float graph as calibrated (--equalize renames tensors)
            self.plan = precision.assign(self.req.precision, self.f32_info)
            precision.check_target([(op, n, p) for n, (op, p) in self.plan[0].items()], self.req.target)
        return quantize_mixed(self.f32, calibrated, self.plan[0], self.req.per_tensor, self.req.io_type,
                              self.verbose)

    def quantized(self, nodes=(), ops=(), rewrite: bool = True) -> bytes:
        """The int8 model with these nodes/op types (plus --keep-float ones) left in float, rewritten for the
        target (unless --no-rewrite, or `rewrite` False: `rewritten` then does it): what is measured (guided mode) is
        what is written."""
        t = time.perf_counter()
        data = self._quantize(self.calibrated, nodes, ops)
        self.timings["quantize_s"] = time.perf_counter() - t
        correction = None
        if self.req.bias_correction:
            from edgecnn.convert.bias_correction import correct

            t = time.perf_counter()
            data, correction = correct(self.f32, data, self.samples)
            self.timings["bias_correction_s"] = time.perf_counter() - t
        self.corrections[hash(data)] = correction
        return self.rewritten(data) if rewrite else data

    def rewritten(self, data: bytes) -> bytes:
        """`data` (an int8 model `quantized` made) through the target's rewrite passes, unless --no-rewrite."""
        if not self.req.rewrite:
            return data
        from edgecnn.convert.rewrite import run_passes
        from edgecnn.convert.rewrite.check import judge

        t = time.perf_counter()
        correction = self.corrections.get(hash(data))
        data, rows = run_passes(data, self.req.target, self.samples, self.f32, judge(*self.task))
        self.rewrites[hash(data)] = rows
        self.corrections[hash(data)] = correction
        self.timings["rewrite_s"] = time.perf_counter() - t
        return data

    def build(self) -> bytes:
        req = self.req
        if req.mode == "float32":
            from edgecnn.convert.frontend import add_signature

            return add_signature(self.f32)
        if req.mode in ("float16", "dynamic") and self.model is None:
            return self._from_flatbuffer(req.mode)
        if req.mode in ("float16", "dynamic"):
            return _convert_with_flags(self.model, req.mode, self.verbose)
        self.calibrate()
        if req.mode == "int8" and req.quality == "auto":
            from edgecnn.convert.auto import auto

            t = time.perf_counter()
            data = auto(self)
            self.timings["quality_auto_s"] = time.perf_counter() - t
            return data
        if req.mode == "int8":
            return self.quantized()
        from edgecnn.tflite import private as tflite_private
        from edgecnn.convert.frontend import _first_line, add_signature, converter_quiet

        t = time.perf_counter()
        with converter_quiet(self.verbose):
            try:
                data = add_signature(tflite_private.quantize_16x8(self.f32, self.samples, req.io_type,
                                                                  req.allow_float_fallback or bool(self.kept_ops)))
            except Exception as exc:
                raise EdgecnnError(f"{self.model_path}: int16x8 quantization failed: {_first_line(exc)}") from None
        self.timings["calibrate_quantize_s"] = time.perf_counter() - t
        return data

    def _from_flatbuffer(self, mode: str) -> bytes:
        """float16 / dynamic for a .tflite source (TF's public converter takes Keras or SavedModel only)."""
        if mode == "dynamic":
            raise EdgecnnError(f"{self.model_path}: --quant dynamic from a .tflite is not supported yet: convert the "
                               "source model, or use --quant int8 or float16")
        from edgecnn.convert.float16_weights import float16_weights
        from edgecnn.convert.frontend import add_signature

        t = time.perf_counter()
        data = add_signature(float16_weights(self.f32))
        self.timings["float16_s"] = time.perf_counter() - t
        return data

    def finish(self, data: bytes, out_path, extra_nodes=(), extra_ops=()) -> dict:
        """Integer-only check, embed spec and labels, write atomically, and report."""
        from edgecnn.atomic import write_bytes_atomic
        from edgecnn.tflite import metadata
        from edgecnn.tflite.reader import TfliteInfo

        rewrites, correction = self.rewrites.get(hash(data)), self.corrections.get(hash(data))
        info = TfliteInfo(data)
        plan_report = None
        if self.plan is not None:  # the precision the written model holds, checked against the target
            from edgecnn.convert.precision import check_target, read_back

            plan_report = read_back(info, *self.plan)
            check_target([(r["op"], r["output"], r["precision"]) for r in plan_report["ops"]], self.req.target,
                         "converted model")
            extra_nodes = list(extra_nodes) + [n for n, (_, p) in self.plan[0].items() if p == "float"]
        check_loads(data, self.model_path, self.req.mode)
        float_ops = check_integer_only(info, self.req, list(self.kept_nodes) + list(extra_nodes),
                                       list(self.kept_ops) + list(extra_ops)) if self.req.needs_calibration else []
        data = metadata.embed(data, self.spec)
        write_bytes_atomic(out_path, data)
        return {
            "output": str(out_path), "model": str(self.model_path), "source_notes": self.source_notes,
            "request": self.req.to_dict(),
            "size_bytes": len(data), "float32_size_bytes": len(self.f32),
            "size_ratio_to_float32": len(data) / len(self.f32),
            "op_histogram": info.op_histogram(), "ops_in_float": float_ops, "keep_float_matches": self.matches,
            "weight_dtypes": info.weight_dtypes(),
            "inputs": [t.to_dict() for t in info.inputs], "outputs": [t.to_dict() for t in info.outputs],
            "calibration": self.calib_desc, "preprocessing": self.spec.to_dict(), "rewrites": rewrites,
            "bias_correction": correction, "equalization": self.equalization, "dead_inputs": self.dead_inputs,
            "precision": plan_report,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "wall_seconds": round(time.perf_counter() - self.t0, 3),
        }


def check_output(out_path) -> Path:
    from edgecnn.atomic import check_output_dir

    out_path = check_output_dir(out_path)
    if out_path.suffix != ".tflite":
        raise EdgecnnError(f"{out_path}: output must end in .tflite")
    return out_path


def convert_model(model_path: str | Path, out_path: str | Path, req: ConversionRequest,
                  verbose: bool = False) -> dict:
    """Convert per `req`, write `out_path` atomically, return the report dict (keys documented in docs/json.md)."""
    out_path = check_output(out_path)
    prep = Prepared(model_path, req, verbose)
    return prep.finish(prep.build(), out_path)
