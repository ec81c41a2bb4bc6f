"""The model registry: one small, boring mechanism (after timm's `register_model` / `list_models`).

A builder is a function `name(input_shape=..., num_classes=..., **knobs) -> keras.Model`; `@register(...)`
records it under its function name with its default input shape and the smallest input it can take.
Adding a model is adding one decorated function; nothing else changes.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass
from typing import Callable

from edgecnn.errors import EdgecnnError
from edgecnn.zoo.backbone import KNOB, copy_backbone


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable
    default_input: tuple[int, int, int]
    min_size: int
    family: str
    doc: str
    input_range: tuple[float, float] = (0.0, 1.0)
    task: str = "classification"  # "detection": heatmap/size/offset maps (edgecnn.zoo.detectors); "segmentation":
    # per-pixel logits (N, H, W, classes) at the input size (edgecnn.zoo.segmenters)
    head: Callable | None = None  # a detector's built model -> its head description (PreprocessSpec.head)

    def knobs(self) -> dict[str, object]:
        """The builder's own keyword arguments (beyond input_shape/num_classes) and their defaults."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items()
                if k not in ("input_shape", "num_classes") and p.default is not inspect.Parameter.empty}


_REGISTRY: dict[str, ModelEntry] = {}


def register(default_input=(224, 224, 3), min_size: int = 32, family: str = "", input_range=(0.0, 1.0),
             task: str = "classification", head: Callable | None = None):
    """Decorator: record a builder under its function name.

    `task` is what the model's outputs mean: "classification" (class scores), "detection" (see
    `edgecnn.zoo.detectors`) or "segmentation" (class logits per pixel, `edgecnn.zoo.segmenters`); training,
    evaluation and the listing follow it. A detector's `head(model)` gives
    the description its boxes are decoded with (`edgecnn.tasks.detection.postprocess.decode`), saved in its spec.

    `input_range` is the float range the architecture expects pixels in ((-1, 1) for MobileNets, whose
    ImageNet weights were trained that way); it becomes the default preprocessing spec when training.
    """

    def deco(fn: Callable) -> Callable:
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        _REGISTRY[fn.__name__] = ModelEntry(fn.__name__, fn, tuple(default_input), min_size, family, doc,
                                            tuple(input_range), task, head)
        return fn

    return deco


def _ensure_loaded() -> None:
    # importing the builder modules runs their @register decorators
    from edgecnn.zoo import classic, compact, detectors, mobilenets, resnets, segmenters, ssdlite  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern (`mobilenet*`), sorted."""
    _ensure_loaded()
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see `edgecnn models`"
        raise EdgecnnError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def _example(key: str, default) -> str:
    """`key=VALUE` with the default written as a user types it (a list as `8,16`)."""
    if isinstance(default, (list, tuple)):
        return f"{key}={','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in default)}"
    return f"{key}={str(default).lower() if isinstance(default, bool) else default}"


def _number(text: str):
    """An int or float from a piece of `8,16` / `1.0,0.5`, or the text itself when it is neither."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def knob_value(name: str, key: str, value, default):
    """`value` for builder option `key`, checked against the type of its `default` (a list knob takes a list,
    `8,16` or `[8, 16]`; a whole-number knob a whole number; a flag true/false; a number a number), so a wrong
    type is one line naming the option and an example, not a TypeError deep in the builder."""
    def wrong(what: str) -> EdgecnnError:
        example = "" if default is None else f", e.g. {_example(key, default)}"
        return EdgecnnError(f"{name}: `{key}` takes {what}{example}; got {value!r}")

    def is_number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if isinstance(default, (list, tuple)):
        if isinstance(value, str) and "," in value:
            value = [_number(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise wrong("a list")
        if all(is_number(d) for d in default) and not all(is_number(v) for v in value):
            raise wrong("a list of numbers")
        return type(default)(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(default, int):
        if not is_number(value) or not float(value).is_integer():
            raise wrong("a whole number")
        return int(value)
    if isinstance(default, float):
        if not is_number(value):
            raise wrong("a number")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise wrong("a word")
    if default is None and value is not None and not isinstance(value, str):
        raise wrong("a name or a file path")
    return value


def check_knobs(name: str, knobs: dict) -> dict:
    """`knobs` for zoo model `name`, each checked (`knob_value`); an unknown one is one line listing the known."""
    defaults = {**get_entry(name).knobs(), KNOB: None}  # every model takes backbone weights (backbone.py)
    unknown = sorted(set(knobs) - set(defaults))
    if unknown:
        raise EdgecnnError(f"{name}: unknown option(s) {', '.join(unknown)}; it takes: "
                           f"{', '.join(defaults) or 'none'}")
    return {k: knob_value(name, k, v, defaults[k]) for k, v in knobs.items()}


def build(name: str, input_shape=None, num_classes: int = 1000, **knobs):
    """Build a registered model; bad shapes and knobs become one-line `EdgecnnError`s."""
    entry = get_entry(name)
    shape = tuple(int(v) for v in (input_shape or entry.default_input))
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise EdgecnnError(f"{name}: input shape must be (height, width, 1|3), got {shape}")
    if min(shape[:2]) < entry.min_size:
        raise EdgecnnError(f"{name}: input {shape[0]}x{shape[1]} is too small; this architecture needs at least "
                           f"{entry.min_size}x{entry.min_size}")
    if num_classes < 1:
        raise EdgecnnError(f"{name}: num_classes must be >= 1, got {num_classes}")
    knobs = check_knobs(name, knobs)
    backbone = knobs.pop(KNOB, None)
    from edgecnn import _tf

    _tf.quiet()
    try:
        model = entry.builder(input_shape=shape, num_classes=num_classes, **knobs)
    except (ValueError, TypeError) as exc:  # a value the builder or Keras refuses (types are checked above)
        msg = str(exc).strip().split("\n")[0]
        raise EdgecnnError(f"{name}: cannot build for input {shape} with {knobs or 'defaults'}: {msg}") from None
    if backbone is not None:
        copy_backbone(model, backbone)
    return model
