"""Trained, int8-converted models for the deploy tests (mcu-check, flash) and the detector tests, made once per
test process.

`trained_int8(directory, "lenet5", "digits", epochs=3, input_size=32)` trains with the lead's trainer and converts
with the lead's converter (`convert_model`, int8 IO, calibrated on the same data); the spec rides in the .tflite.
`detector(directory)` is the suite's one small trained CenterNet (DETECTOR), its int8 conversion and its training
summary.
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
_TRAINED: dict[tuple, tuple[Path, dict]] = {}  # trained()'s trainings this session, by configuration: file, summary

# The suite's small trained detector, shared by the tests that need one (train -> convert -> eval/compare end to
# end, bench --data, guided, the Ray shards): a CenterNet one epoch on 160 flipped scenes at 64x64. What it reaches
# is never asserted; the tests check that boxes are found and that two paths give the same numbers.
DETECTOR = {"model": "centernet_mobilenet_v2", "data": "scenes:digits", "epochs": 1, "input_size": 64,
            "knobs": {"alpha": 0.35, "head_channels": 32}, "max_train_samples": 160, "batch_size": 32,
            "augment": ("flip",)}


def trained(directory: Path, model: str, data: str, epochs: int, input_size: int | None = None,
            knobs: dict | None = None, max_train_samples: int | None = None, **config) -> tuple[Path, dict]:
    """`model` trained on `data` into DIRECTORY/MODEL-DATA.keras, and `train`'s summary of it; `config`: more
    TrainConfig fields (batch_size, augment...). Training is bit-reproducible (seeded): a configuration trained
    earlier in the session is copied, as a new training would write the same weights."""
    from edgecnn.train.trainer import TrainConfig, train

    out = Path(directory) / f"{model}-{data.replace(':', '_')}.keras"
    key = (model, data, epochs, input_size, tuple(sorted((knobs or {}).items())), max_train_samples,
           tuple(sorted(config.items())))
    if key in _TRAINED and _TRAINED[key][0].is_file():
        done, summary = _TRAINED[key]
        if done != out:
            shutil.copy(done, out)
        return out, summary
    cfg = TrainConfig(model, data, epochs=epochs, input_size=input_size, knobs=dict(knobs or {}),
                      max_train_samples=max_train_samples, **config)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = train(cfg, out, progress=False)
    _TRAINED[key] = out, summary
    return out, summary


def trained_keras(directory: Path, model: str, data: str, epochs: int, input_size: int | None = None,
                  knobs: dict | None = None, max_train_samples: int | None = None) -> Path:
    return trained(directory, model, data, epochs, input_size, knobs, max_train_samples)[0]


def detector(directory: Path) -> tuple[Path, Path, dict]:
    """DETECTOR in `directory`: (.keras, its int8 .tflite calibrated on 32 scenes, the training summary); trained and
    converted once per session, copied for each caller."""
    keras, summary = trained(directory, **DETECTOR)
    int8 = Path(directory) / "det_int8.tflite"
    key = ("detector-int8",)
    if key not in _CACHE or not _CACHE[key].is_file():
        _CACHE[key] = to_int8(keras, int8, "scenes:digits", num_calibration=32)
    elif _CACHE[key] != int8:
        shutil.copy(_CACHE[key], int8)
    return keras, int8, summary


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
