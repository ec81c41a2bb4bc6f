"""The preprocessing spec: one description of how raw pixels become model input, saved with every model.

A model is never fed differently at training, calibration, evaluation and benchmark time because every stage
calls `PreprocessSpec.apply` on the same raw uint8 images. The spec travels inside the `.keras` file (an extra
zip entry) and inside the `.tflite` file (an associated-file zip appended to the flatbuffer).

raw uint8 image (any size, 1/3/4 channels) --resize(method)--> (height, width) --channels--> C
    --> float32 x * scale + offset
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from edgecnn.errors import EdgecnnError

RESIZE_METHODS = ("bilinear", "nearest")


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn raw uint8 images into the model's float input, plus the class labels.

    `scale`/`offset` map uint8 to the model's range: 1/255, 0 gives [0, 1]; 2/255, -1 gives [-1, 1]
    (MobileNet); 1, 0 keeps 0..255 (models with their own Rescaling layer).
    """

    height: int
    width: int
    channels: int
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    resize: str = "bilinear"
    labels: tuple[str, ...] = field(default_factory=tuple)
    dataset: str = ""

    def __post_init__(self):
        if self.height < 1 or self.width < 1:
            raise EdgecnnError(f"preprocessing spec: bad input size {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise EdgecnnError(f"preprocessing spec: channels must be 1 or 3, got {self.channels}")
        if self.resize not in RESIZE_METHODS:
            raise EdgecnnError(f"preprocessing spec: resize must be one of {RESIZE_METHODS}, got {self.resize!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def geometry(self, images) -> np.ndarray:
        """Resize and convert channels; returns uint8-valued float32 (N, H, W, C) before scaling."""
        from edgecnn.data.transform import convert_channels, resize_batch

        out = resize_batch(images, self.height, self.width, self.resize)
        return convert_channels(out, self.channels)

    def apply(self, images) -> np.ndarray:
        """Raw uint8 images (an (N,H,W[,C]) array or a list of differently sized HxW[xC] arrays) -> float32 input."""
        x = self.geometry(images)
        return (x * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict, source: str = "spec") -> "PreprocessSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EdgecnnError(f"{source}: unknown preprocessing field(s): {', '.join(unknown)}")
        try:
            d = dict(d)
            d["labels"] = tuple(str(x) for x in d.get("labels", ()))
            return cls(**d)
        except TypeError as exc:
            raise EdgecnnError(f"{source}: bad preprocessing spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> "PreprocessSpec":
        try:
            return cls.from_dict(json.loads(text), source)
        except json.JSONDecodeError as exc:
            raise EdgecnnError(f"{source}: preprocessing spec is not valid JSON ({exc.msg})") from None

    def replace(self, **changes) -> "PreprocessSpec":
        return dataclasses.replace(self, **changes)
