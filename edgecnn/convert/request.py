"""A conversion request is data (after ai-edge-quantizer's recipes): the CLI builds it, the converter consumes it,
and the JSON report is this request plus measurements."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgecnn.convert.precision import PrecisionPlan
from edgecnn.data.spec import InputScaling
from edgecnn.errors import EdgecnnError
from edgecnn.targets import DEFAULT as DEFAULT_TARGET, get as get_target

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
IO_TYPES = ("int8", "uint8", "float32", "int16")
QUALITY = ("default", "auto")


@dataclass(frozen=True)
class ConversionRequest:
    mode: str = "float32"
    io: str | None = None  # None: int8 for --quant int8, int16 for int16x8, float32 otherwise
    per_tensor: bool = False
    calibration: str | None = None  # calibration set, dataset name, image folder, recipe
    num_calibration: int = 100
    seed: int = 0
    keep_float: tuple[str, ...] = ()  # layer-name patterns or op types (e.g. HARD_SWISH) left in float
    allow_float_fallback: bool = False
    scale: float | None = None  # preprocessing for foreign models without a spec: x*scale + offset
    offset: float | None = None
    mean: float | None = None  # ... or (x - mean) / std
    std: float | None = None
    target: str = DEFAULT_TARGET  # where the model runs (edgecnn.targets): its modes, rewrite passes and checks
    rewrite: bool = True  # False (--no-rewrite): the converter's plain int8 output
    calibrator: str = "fast"  # "fast" (LiteRT+XNNPACK, batched) or "stock" (TF's calibrator)
    bias_correction: bool = False  # --bias-correction: fold int8's mean output shift into the biases
    equalize: bool = False  # --equalize: cross-layer equalization of the float graph before calibration
    calibration_method: str = "minmax"  # how each activation range is chosen: edgecnn.convert.ranges.METHODS, or
    # "best": try them all on held-out calibration samples and keep the closest to float (convert/choose.py)
    quality: str = "default"  # "auto": ranges, CLE and bias correction chosen on held-out samples (convert/auto.py)
    precision: PrecisionPlan | None = None  # --precision: per-op int8/int16/float rules (convert/precision.py)
    postprocess: str = "graph"  # an SSD's TFLite_Detection_PostProcess: kept in float (graph) or cut (numpy)
    graph_input: str | None = None  # a TF1 frozen graph's input node, when it cannot be found (convert/frozen_graph)
    graph_outputs: tuple[str, ...] = ()  # ... and its output nodes

    def __post_init__(self):
        if self.mode not in MODES:
            raise EdgecnnError(f"--quant {self.mode!r}: use one of {', '.join(MODES)}")
        if self.io is not None and self.io not in IO_TYPES:
            raise EdgecnnError(f"--io {self.io!r}: use one of {', '.join(IO_TYPES)}")
        if self.io in ("int8", "uint8") and self.mode != "int8":
            raise EdgecnnError(f"--io {self.io} needs --quant int8 (integer inputs need quantized activations)")
        if self.io == "int16" and self.mode != "int16x8":
            raise EdgecnnError("--io int16 needs --quant int16x8")
        if self.num_calibration < 1:
            raise EdgecnnError(f"--num-calibration must be >= 1, got {self.num_calibration}")
        target = get_target(self.target)
        target.check_mode(self.mode)
        if target.full_integer and (self.keep_float or self.allow_float_fallback):
            kept = f"--keep-float {' '.join(self.keep_float)}" if self.keep_float else "--allow-float-fallback"
            raise EdgecnnError(f"--target {self.target} needs a full-integer model: {kept} keeps ops in float, and "
                               f"{target.full_integer}; without it, ops that cannot be quantized are named")
        if self.bias_correction and self.mode != "int8":
            raise EdgecnnError(f"--bias-correction needs --quant int8, not {self.mode}")
        if self.equalize and self.mode != "int8":
            raise EdgecnnError(f"--equalize needs --quant int8, not {self.mode}")
        if self.calibration_method not in ("minmax", "percentile", "mse", "best"):
            raise EdgecnnError(f"--calibration-method {self.calibration_method!r}: use minmax, percentile, mse or best")
        if self.quality not in QUALITY:
            raise EdgecnnError(f"--quality {self.quality!r}: use one of {', '.join(QUALITY)}")
        if self.quality == "auto":
            if self.mode != "int8":
                raise EdgecnnError(f"--quality auto needs --quant int8, not {self.mode}")
            chosen = [f for f, on in (("--calibration-method", self.calibration_method != "minmax"),
                                      ("--equalize", self.equalize), ("--bias-correction", self.bias_correction))
                      if on]
            if chosen:
                raise EdgecnnError(f"--quality auto chooses {', '.join(chosen)} itself: drop "
                                   f"{'it' if len(chosen) == 1 else 'them'}, or drop --quality auto")
            from edgecnn.convert.auto import MIN_SAMPLES

            if self.num_calibration < MIN_SAMPLES:
                raise EdgecnnError(f"--quality auto needs at least {MIN_SAMPLES} calibration samples (it holds out "
                                   f"every second one to score the options on), got --num-calibration "
                                   f"{self.num_calibration}")
            if self.calibrator != "fast":
                raise EdgecnnError("--quality auto needs the fast calibrator (it calibrates every range method in "
                                   "one pass): drop --calibrator stock")
        if self.postprocess not in ("graph", "numpy"):
            raise EdgecnnError(f"--postprocess {self.postprocess!r}: use graph or numpy")
        if self.calibrator not in ("fast", "stock"):
            raise EdgecnnError(f"--calibrator {self.calibrator!r}: use fast or stock")
        if self.precision is not None:
            if self.mode != "int8":
                raise EdgecnnError(f"--precision needs --quant int8 (unmatched ops are int8), not {self.mode}")
            if self.io_type not in ("int8", "float32"):
                raise EdgecnnError(f"--precision makes int8 or float32 inputs/outputs, not --io {self.io_type}")
            if self.keep_float:
                raise EdgecnnError("--keep-float and --precision: put the layers in the plan as float rules "
                                   "(e.g. '.*head.*=float') instead")

    @property
    def io_type(self) -> str:
        if self.io:
            return self.io
        return {"int8": "int8", "int16x8": "int16"}.get(self.mode, "float32")

    @property
    def scaling(self) -> InputScaling:
        return InputScaling(self.scale, self.offset, self.mean, self.std)

    @property
    def needs_calibration(self) -> bool:
        return self.mode in ("int8", "int16x8")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["keep_float"] = list(self.keep_float)
        d["graph_outputs"] = list(self.graph_outputs)
        d["io"] = self.io_type
        d["precision"] = self.precision.to_dict() if self.precision is not None else None
        return d
