"""Trained, int8-converted models for the deploy tests (mcu-check, flash), made once per test process.

`trained_int8(directory, "lenet5", "digits", epochs=3, input_size=32)` trains with the lead's trainer and converts
with the lead's converter (`convert_model`, int8 IO, calibrated on the same data); the spec rides in the .tflite.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

_CACHE: dict[tuple, Path] = {}
_TRAINED: dict[tuple, Path] = {}  # trained_keras's trainings this session, by configuration


def trained_keras(directory: Path, model: str, data: str, epochs: int, input_size: int | None = None,
                  knobs: dict | None = None, max_train_samples: int | None = None) -> Path:
    from edgecnn.train.trainer import TrainConfig, train

    out = Path(directory) / f"{model}-{data.replace(':', '_')}.keras"
    key = (model, data, epochs, input_size, tuple(sorted((knobs or {}).items())), max_train_samples)
    if not out.is_file():
        if key in _TRAINED and _TRAINED[key].is_file():  # training is bit-reproducible (seeded): a copy of the
            shutil.copy(_TRAINED[key], out)  # session's earlier training is what a new one would write
            return out
        cfg = TrainConfig(model, data, epochs=epochs, input_size=input_size, knobs=dict(knobs or {}),
                          max_train_samples=max_train_samples)
        with contextlib.redirect_stdout(io.StringIO()):
            train(cfg, out, progress=False)
        _TRAINED[key] = out
    return out


def to_int8(keras_path: Path, out: Path, calibration: str, num_calibration: int = 100, io_type: str = "int8") -> Path:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest

    req = ConversionRequest(mode="int8", io=io_type, calibration=calibration, num_calibration=num_calibration)
    with contextlib.redirect_stdout(io.StringIO()):
        convert_model(keras_path, out, req)
    return out


def to_float32(keras_path: Path, out: Path) -> Path:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest

    with contextlib.redirect_stdout(io.StringIO()):
        convert_model(keras_path, out, ConversionRequest(mode="float32"))
    return out


def trained_int8(directory: Path, model: str = "lenet5", data: str = "digits", epochs: int = 3,
                 input_size: int | None = 32, knobs: dict | None = None) -> Path:
    """A trained int8 .tflite (cached per process and directory)."""
    key = (str(directory), model, data, epochs, input_size, tuple(sorted((knobs or {}).items())))
    if key not in _CACHE:
        Path(directory).mkdir(parents=True, exist_ok=True)
        k = trained_keras(directory, model, data, epochs, input_size, knobs)
        _CACHE[key] = to_int8(k, Path(directory) / f"{model}-{data}-int8.tflite", data)
    return _CACHE[key]
