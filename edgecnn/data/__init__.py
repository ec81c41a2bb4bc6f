"""Data sources and the preprocessing spec.

`load_split(src, split)` -> `Dataset` of raw uint8 images; `PreprocessSpec.apply(images)` -> model input.
"""

from edgecnn.data.dataset import Dataset
from edgecnn.data.sources import load_split
from edgecnn.data.spec import PreprocessSpec

__all__ = ["Dataset", "PreprocessSpec", "load_split"]
