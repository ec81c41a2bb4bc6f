"""Where a converted model runs: the target table. Every stage reads it; adding a target is one entry here (plus
its own rewrite pass modules and hooks), not an edit in the stages.

| target    | runs on            | `--quant` modes        | plan precisions    | rewrite passes, in order        |
|-----------|--------------------|------------------------|--------------------|---------------------------------|
| `cpu`     | LiteRT, XNNPACK    | all five               | int8, int16, float | hard_swish, avg_pool, minimum, relu, concat_split |
| `edgetpu` | Coral Edge TPU     | int8, full-integer     | int8               | hard_swish, leaky_relu, minimum |
| `tflm`    | TFLite Micro (MCU) | float32, int8, int16x8 | int8, int16        | minimum                         |

| target    | after `convert` (report key)           | device kinds (delegate)    | bench on an SSH board           |
|-----------|----------------------------------------|----------------------------|---------------------------------|
| `cpu`     | int8: delegate partitions (`delegate`) | local; ssh (xnnpack, none) | the plain SSH runner            |
| `edgetpu` | preflight, compile once (`edgetpu`)    | edgetpu; ssh (edgetpu)     | compile, run with libedgetpu    |
| `tflm`    | -                                      | mcu                        | -                               |

Who reads which column: the CLI's `--target` choice and the request check (`convert/request.py`: modes, the
full-integer rule) read the names and modes; the per-op precision check of a `--precision` plan
(`convert/precision.py`) reads `precisions` and `no_int16`; the rewrite stage (`convert/rewrite`) runs `passes`;
`edgecnn convert` runs `after_convert` on the written model; a device profile's `target` defaults from its kind and
delegate (`target_of`), the bench routes an SSH board to the target's `board_runner`, and `edgecnn run` converts each
model once per (precision, target) its recipe's devices need.

Why the tflm modes exclude float16 and dynamic: TFLite Micro has no hybrid (int8-weight, float-activation) kernels
and its DEQUANTIZE reads int8/int16/uint8 only, so neither model would load on the board.

Hooks are "module:function" strings, resolved when called (`hook`), so this module imports nothing of the stages
(and no TensorFlow): `edgecnn --help` stays instant, and the shared device profiles can read it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Mapping

from edgecnn.errors import EdgecnnError

DEFAULT = "cpu"  # the target of `convert` without --target, and the one `edgecnn run`'s files are named without


@dataclass(frozen=True)
class Target:
    """One place a converted model runs (see the module table)."""

    name: str
    runs_on: str  # the hardware, in a few words (the --target help)
    modes: tuple[str, ...]  # the --quant modes it takes
    modes_need: str  # what the refusal of another mode says it needs ("a full-integer model")
    full_integer: str | None  # why it refuses ops left in float (--keep-float, --allow-float-fallback), or None
    precisions: tuple[str, ...]  # the op precisions a --precision plan may put on it
    precision_rule: str  # how a refusal of another precision names the rule ("runs int8 only")
    no_int16: Mapping[str, str]  # op -> why it has no int16 kernel here (docs/design/precision-plans-research.md §4)
    passes: tuple[str, ...]  # int8 rewrite passes (edgecnn.convert.rewrite.PASSES), in the order they run
    after_convert: str | None = None  # hook(path) -> dict run by `convert` on the written model...
    report_key: str | None = None  # ... kept under this key of the report ...
    after_convert_modes: tuple[str, ...] = ()  # ... for these modes
    device_kinds: tuple[str, ...] = ()  # the device-profile kinds that run it
    delegates: tuple[str, ...] = ()  # the profile `delegate:` values that choose it on a kind several targets share
    board_runner: str | None = None  # hook(profile, model, settings, samples) -> bench document; None: the SSH runner

    def check_mode(self, mode: str) -> None:
        """Refuse, in one line, a --quant mode this target does not run."""
        if mode not in self.modes:
            raise EdgecnnError(f"--target {self.name} needs {self.modes_need}: --quant {_either(self.modes)}, "
                               f"not {mode}")


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target(name="cpu", runs_on="LiteRT's CPU kernels and XNNPACK",
           modes=("float32", "float16", "dynamic", "int8", "int16x8"), modes_need="a mode LiteRT runs",
           full_integer=None, precisions=("int8", "int16", "float"), precision_rule="runs int8, int16 and float",
           no_int16={"HARD_SWISH": "LiteRT has no int16 HARD_SWISH kernel (activations.cc: float32/uint8/int8 only)"},
           passes=("hard_swish", "avg_pool", "minimum", "relu", "concat_split"),
           after_convert="edgecnn.bench.delegation:measure", report_key="delegate", after_convert_modes=("int8",),
           device_kinds=("local", "ssh"), delegates=("xnnpack", "none")),
    Target(name="edgetpu", runs_on="a Coral Edge TPU, with the preflight and edgetpu_compiler when installed",
           modes=("int8",), modes_need="a full-integer model",
           full_integer="the Edge TPU compiler cuts the graph at the first float op",
           precisions=("int8",), precision_rule="runs int8 only", no_int16={},
           passes=("hard_swish", "leaky_relu", "minimum", "float_tail"),
           after_convert="edgecnn.convert.edgetpu:for_edgetpu", report_key="edgetpu", after_convert_modes=("int8",),
           device_kinds=("edgetpu", "ssh"), delegates=("edgetpu",),
           board_runner="edgecnn.bench.edgetpu:run_edgetpu"),
    Target(name="tflm", runs_on="TFLite Micro on a microcontroller",
           modes=("float32", "int8", "int16x8"), modes_need="a model TFLite Micro has kernels for",
           full_integer=None, precisions=("int8", "int16"), precision_rule="is integer-only",
           no_int16={"HARD_SWISH": "TFLite Micro has no int16 HARD_SWISH kernel (int8 only)",
                     "RESIZE_BILINEAR": "TFLite Micro has no int16 RESIZE_BILINEAR kernel (float32/int8 only)",
                     "ARG_MAX": "TFLite Micro has no int16 ARG_MAX kernel"},
           passes=("minimum",), device_kinds=("mcu",)),
)}

DEVICE_KINDS = tuple(dict.fromkeys(k for t in TARGETS.values() for k in t.device_kinds))
DELEGATES = tuple(dict.fromkeys(d for t in TARGETS.values() for d in t.delegates))


def _either(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def get(name: str) -> Target:
    """The target called `name`, or one line naming the known ones."""
    if name not in TARGETS:
        raise EdgecnnError(f"--target {name!r}: use one of {', '.join(TARGETS)}")
    return TARGETS[name]


def target_of(kind: str, delegate: str) -> str:
    """The target a device profile of `kind` with `delegate` runs: the one target of its kind, or, where several
    share the kind (ssh: a CPU board or an Edge TPU host), the one that `delegate` chooses."""
    found = [t.name for t in TARGETS.values() if kind in t.device_kinds]
    if len(found) > 1:
        found = [n for n in found if delegate in TARGETS[n].delegates]
    if len(found) != 1:
        raise ValueError(f"no target runs kind {kind} with delegate {delegate}")
    return found[0]


def check_profile(kind: str, delegate: str, target: str) -> None:
    """Raise ValueError (the profile schema's one line) when `target` is unknown or does not run this kind and
    delegate."""
    if target not in TARGETS:
        raise ValueError(f"target {target!r}: use one of {', '.join(TARGETS)}")
    t = TARGETS[target]
    shared = sum(kind in u.device_kinds for u in TARGETS.values()) > 1
    if kind not in t.device_kinds or (shared and delegate not in t.delegates):
        raise ValueError(f"target {target} does not run on kind {kind} with delegate {delegate} "
                         f"(it runs on kind {_either(t.device_kinds)}"
                         + (f", delegate {_either(t.delegates)})" if t.delegates else ")"))


def hook(spec: str) -> Callable:
    """The function a "module:function" hook of the table names, imported now."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
