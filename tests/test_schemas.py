"""The preprocessing spec's schema: a spec read back from a model file is checked, one line naming the file."""

import json
import zipfile

import numpy as np
import pytest

from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError
from edgecnn.modelfile import SPEC_ENTRY, read_keras_spec
from edgecnn.tflite import metadata

GOOD = {"height": 8, "width": 8, "channels": 1, "scale": 1 / 255, "offset": 0, "resize": "nearest",
        "labels": ["a", "b"], "dataset": "digits"}


def _keras_with_spec(path, text: str):
    """A stand-in .keras zip holding only edgecnn's spec entry (the spec reader needs nothing else)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(SPEC_ENTRY, text)
    return path


def test_spec_read_back_from_json(tmp_path):
    """JSON gives lists and ints: labels become a tuple, an int offset a float; the dataclass-era API holds."""
    spec = read_keras_spec(_keras_with_spec(tmp_path / "m.keras", json.dumps(GOOD)))
    assert spec.labels == ("a", "b") and spec.offset == 0.0 and spec.input_shape == (8, 8, 1)
    assert spec == PreprocessSpec(8, 8, 1, 1 / 255, 0.0, "nearest", ("a", "b"), "digits")
    assert spec.to_dict() == {**GOOD, "offset": 0.0}
    assert spec.replace(channels=3).input_shape == (8, 8, 3) and spec.input_shape == (8, 8, 1)
    assert PreprocessSpec.from_json(spec.to_json()) == spec and hash(spec) == hash(spec.replace())
    x = spec.apply(np.full((2, 4, 4), 255, np.uint8))
    assert x.shape == (2, 8, 8, 1) and np.allclose(x, 1.0)


@pytest.mark.parametrize("change, line", [
    ({"mean": 0.5}, "unknown field 'mean'"),
    ({"chanels": 3}, "unknown field 'chanels' (did you mean 'channels'?)"),
    ({"channels": 4}, "field 'channels' must be one of 1, 3, got 4"),
    ({"height": "32"}, "field 'height' must be int, got '32'"),
    ({"width": 0}, "field 'width' must be at least 1, got 0"),
    ({"resize": "cubic"}, "field 'resize' must be one of bilinear, nearest, got 'cubic'"),
    ({"labels": "ab"}, "field 'labels' must be a list, got 'ab'"),
    ({"labels": ["a", 2]}, "field 'labels[1]' must be str, got 2"),
    ({"scale": None}, "field 'scale' must be a number, got None"),
])
def test_corrupt_spec_in_keras_file_is_one_line(tmp_path, change, line):
    path = _keras_with_spec(tmp_path / "m.keras", json.dumps({**GOOD, **change}))
    with pytest.raises(EdgecnnError) as exc:
        read_keras_spec(path)
    assert str(exc.value) == f"{path}: {line}"


def test_corrupt_spec_in_tflite_names_the_file(tmp_path):
    good = metadata.embed(b"\x00" * 64, PreprocessSpec(**GOOD))
    assert metadata.read_spec(good) == PreprocessSpec(**GOOD)
    zipped = _keras_with_spec(tmp_path / "spec.zip", json.dumps({**GOOD, "channels": 4})).read_bytes()
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\x00" * 64 + zipped)  # a flatbuffer with the spec zip appended, as `embed` writes it
    with pytest.raises(EdgecnnError) as exc:
        metadata.read_spec(path)
    assert str(exc.value) == f"{path}: field 'channels' must be one of 1, 3, got 4"
    missing = _keras_with_spec(tmp_path / "old.keras", json.dumps({"height": 8, "width": 8}))
    with pytest.raises(EdgecnnError, match=r"old\.keras: missing field 'channels'$"):
        read_keras_spec(missing)
    with pytest.raises(EdgecnnError, match=r"bad\.keras: preprocessing spec must be a JSON object, got list$"):
        read_keras_spec(_keras_with_spec(tmp_path / "bad.keras", "[8, 8, 1]"))


def test_positional_construction_is_checked():
    assert PreprocessSpec(32, 32, 3).input_shape == (32, 32, 3)
    with pytest.raises(TypeError):
        PreprocessSpec(32, 32, 3, height=16)
