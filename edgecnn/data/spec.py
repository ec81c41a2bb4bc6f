"""The preprocessing spec: one description of how raw pixels become model input, saved with every model.

A model that carries no spec (a foreign .tflite, a Keras .h5 or SavedModel) gets one from the user's
--scale/--offset or --mean/--std flags (`InputScaling`) and its input shape: `spec_for`, shared by convert, eval
and compare.

A model is never fed differently at training, calibration, evaluation and benchmark time because every stage
calls `PreprocessSpec.apply` on the same raw uint8 images. The spec travels inside the `.keras` file (an extra
zip entry) and inside the `.tflite` file (an associated-file zip appended to the flatbuffer).

raw uint8 image (any size, 1/3/4 channels) --resize(method)--> (height, width) --channels--> C
    --> float32 x * scale + offset

`PreprocessSpec` is itself the pydantic schema (`edgecnn.schema.Strict`) rather than a dataclass checked through a
pydantic mirror: one list of fields, nothing to keep in sync. Its dataclass-era API stays (positional
construction, `replace`, `to_dict`/`from_dict`, JSON); a bad spec read back from a model file is one EdgecnnError
line: `<model file>: field 'channels' must be one of 1, 3, got 4`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from edgecnn.errors import EdgecnnError
from edgecnn.schema import Strict, validate
from edgecnn.tasks import DEFAULT as DEFAULT_TASK

RESIZE_METHODS = ("bilinear", "nearest")


class PreprocessSpec(Strict):
    """How to turn raw uint8 images into the model's float input, plus the class labels.

    `scale`/`offset` map uint8 to the model's range: 1/255, 0 gives [0, 1]; 2/255, -1 gives [-1, 1]
    (MobileNet); 1, 0 keeps 0..255 (models with their own Rescaling layer).
    """

    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: Literal[1, 3]
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    resize: Literal[RESIZE_METHODS] = "bilinear"
    labels: tuple[str, ...] = Field((), strict=False)  # JSON gives a list; each label must still be a str
    dataset: str = ""
    task: str = DEFAULT_TASK  # a name in the task table (edgecnn.tasks); a detector's labels are its box classes
    # a detector's outputs -> boxes: {"kind": "centernet"} etc. (edgecnn.tasks.detection.postprocess.HEADS), read on boards too
    head: dict = Field(default_factory=dict)

    def __init__(self, *args, **fields):
        """Fields by keyword, or positionally in declaration order (`PreprocessSpec(32, 32, 3)`).

        pydantic also runs this when validating a file's dict, so it only maps arguments: the caller names the
        source of a bad value (`from_dict`); a bad value from code is a bug and raises pydantic's error.
        """
        names = list(type(self).model_fields)
        if len(args) > len(names) or set(names[:len(args)]) & set(fields):
            raise TypeError(f"PreprocessSpec: too many or repeated arguments {args} {sorted(fields)}")
        super().__init__(**dict(zip(names, args)), **fields)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        from edgecnn import tasks

        if v not in tasks.names():
            raise ValueError(f"must be one of {', '.join(tasks.names())}")
        return v

    def __hash__(self) -> int:  # `head` is a dict: hash the spec by its JSON, equal specs alike
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def geometry(self, images) -> np.ndarray:
        """Resize and convert channels; returns uint8-valued float32 (N, H, W, C) before scaling, always in memory of
        its own (`apply` scales it in place): never the caller's array or a view of it."""
        from edgecnn.data.transform import convert_channels, resize_batch

        out = resize_batch(images, self.height, self.width, self.resize)
        return convert_channels(out, self.channels)

    def apply(self, images) -> np.ndarray:
        """Raw uint8 images (an (N,H,W[,C]) array or a list of differently sized HxW[xC] arrays) -> float32 input."""
        x = self.geometry(images)  # a new float32 array: scaled in place (a 6,000-scene set is 1.2 GB per copy)
        x *= np.float32(self.scale)
        x += np.float32(self.offset)
        return np.ascontiguousarray(x)  # RGBA -> RGB is a view of the 4-channel array

    def to_dict(self) -> dict:
        """The spec as JSON-ready data; `task` and `head` only for detectors, so a classifier's spec reads as before."""
        d = self.model_dump()
        d["labels"] = list(self.labels)
        if d["task"] == DEFAULT_TASK:
            del d["task"]
        if not d["head"]:
            del d["head"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict, source: str = "spec") -> "PreprocessSpec":
        """The spec in `d` (as read back from a model file), or one line naming `source` and the bad field."""
        if not isinstance(d, dict):
            raise EdgecnnError(f"{source}: preprocessing spec must be a JSON object, got {type(d).__name__}")
        return validate(cls, d, source)

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> "PreprocessSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EdgecnnError(f"{source}: preprocessing spec is not valid JSON ({exc.msg})") from None
        return cls.from_dict(data, source)

    def replace(self, **changes) -> "PreprocessSpec":
        """A copy with `changes` applied, validated like a new spec."""
        return type(self)(**{**self.model_dump(), **changes})


NO_SPEC_HINT = ("no saved preprocessing spec; say how inputs are scaled with --scale/--offset (x*scale+offset on "
                "0..255 pixels) or --mean/--std ((x-mean)/std)")


@dataclass(frozen=True)
class InputScaling:
    """The --scale/--offset or --mean/--std flags for a foreign model's inputs (None: flag not given)."""

    scale: float | None = None
    offset: float | None = None
    mean: float | None = None
    std: float | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.scale, self.offset, self.mean, self.std))

    def scale_offset(self) -> tuple[float, float]:
        """(scale, offset) of `x*scale + offset`; --mean/--std is `(x - mean) / std`. One pair, not both."""
        by_mean = self.mean is not None or self.std is not None
        if by_mean and (self.scale is not None or self.offset is not None):
            raise EdgecnnError("--scale/--offset and --mean/--std both given; pass one pair")
        if by_mean:
            std = self.std if self.std is not None else 1.0
            if std == 0:
                raise EdgecnnError("--std 0: inputs would be divided by zero")
            return 1.0 / std, -(self.mean or 0.0) / std
        return (self.scale if self.scale is not None else 1.0), self.offset or 0.0


def spec_for(input_shape, saved: PreprocessSpec | None, scaling: InputScaling | None, source: str,
             required: bool = True) -> PreprocessSpec:
    """The spec to feed a model with input shape (H, W, C): `saved` as is, or with the flags' scaling.

    Flags override the saved scale/offset (labels and resize method stay). Without a saved spec and without flags
    it is one line naming the flags when `required`, else [0, 1] inputs (1/255) are assumed (a conversion without
    calibration, which never feeds the model).
    """
    scaling = scaling or InputScaling()
    if saved is not None and not scaling.given:
        return saved
    shape = tuple(-1 if d is None else int(d) for d in input_shape)  # None/-1: a dynamic size
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 1:
        raise EdgecnnError(f"{source}: input shape {list(shape)} is not a fixed-size image (H, W, 1|3)")
    if not scaling.given and required:
        raise EdgecnnError(f"{source}: {NO_SPEC_HINT}")
    scale, offset = scaling.scale_offset() if scaling.given else (1.0 / 255.0, 0.0)
    base = saved or PreprocessSpec(shape[0], shape[1], shape[2])
    return base.replace(height=shape[0], width=shape[1], channels=shape[2], scale=float(scale), offset=float(offset))
