"""Tiny .tflite models for tests, made with TensorFlow in a second or two each.

Each maker returns the flatbuffer bytes; `write(tmp_path, name, data)` puts them on disk. They cover what real
models throw at a runtime: float32/float16-weight/int8/uint8 IO, several inputs and outputs, and a model with
two subgraphs (a tf.cond) and a resource variable. The converter's stdout listing is swallowed.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _tf():
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _convert(converter) -> bytes:
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def write(directory: Path, name: str, data: bytes) -> Path:
    path = Path(directory) / name
    path.write_bytes(data)
    return path


def tiny_cnn(input_shape=(8, 8, 1), classes: int = 3, seed: int = 0):
    """A small conv net (conv, depthwise, pool, dense, softmax) with fixed random weights."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out)


def float32_model(input_shape=(8, 8, 1), classes: int = 3) -> bytes:
    tf = _tf()
    return _convert(tf.lite.TFLiteConverter.from_keras_model(tiny_cnn(input_shape, classes)))


def float16_model(input_shape=(8, 8, 1), classes: int = 3) -> bytes:
    """Float16 weights (DEQUANTIZE ops feed float32 compute), float32 IO."""
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(tiny_cnn(input_shape, classes))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return _convert(conv)


def _calibration(input_shape, n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)

    def gen():
        for _ in range(n):
            yield [rng.uniform(0.0, 1.0, (1, *input_shape)).astype(np.float32)]

    return gen


def quantized_model(io_dtype: str = "int8", input_shape=(8, 8, 1), classes: int = 3) -> bytes:
    """Full-integer model with `io_dtype` ('int8' or 'uint8') input and output, calibrated on [0, 1] inputs."""
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(tiny_cnn(input_shape, classes))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _calibration(input_shape)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = getattr(tf, io_dtype)
    conv.inference_output_type = getattr(tf, io_dtype)
    return _convert(conv)


def multi_io_model() -> bytes:
    """Two inputs (an image and a vector), two outputs (class scores and a regression value)."""
    import keras

    tf = _tf()
    keras.utils.set_random_seed(1)
    img = keras.Input((8, 8, 3), batch_size=1, name="image")
    vec = keras.Input((4,), batch_size=1, name="extra")
    x = keras.layers.Conv2D(4, 3, activation="relu")(img)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, vec])
    scores = keras.layers.Dense(5, activation="softmax", name="scores")(x)
    value = keras.layers.Dense(1, name="value")(x)
    model = keras.Model([img, vec], [scores, value])
    return _convert(tf.lite.TFLiteConverter.from_keras_model(model))


def control_flow_variable_model() -> bytes:
    """Several subgraphs (a tf.cond's branches) and a resource variable that each call updates.

    Converted from a concrete function with resource variables enabled, so the flatbuffer keeps
    VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE ops and an IF op with branch subgraphs.
    """
    tf = _tf()

    class Counter(tf.Module):
        def __init__(self):
            super().__init__()
            self.total = tf.Variable(tf.zeros([1, 4]), name="total")

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, x):
            y = tf.cond(tf.reduce_sum(x) > 0.0, lambda: x * 2.0, lambda: x - 1.0)
            self.total.assign_add(y)
            return self.total.read_value() + y

    module = Counter()
    cf = module.__call__.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    conv.experimental_enable_resource_variables = True
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return _convert(conv)


def custom_op_model(op_name: str = "EdgecnnMissingOp") -> bytes:
    """A valid flatbuffer whose one op is a custom op no runtime has (the float model with its op renamed)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.convert_bytearray_to_object(bytearray(float32_model()))
    from ai_edge_litert import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = op_name.encode()
    code.version = 1
    model.operatorCodes.append(code)
    model.subgraphs[0].operators[0].opcodeIndex = len(model.operatorCodes) - 1
    return bytes(fb.convert_object_to_bytearray(model))


MAKERS = {
    "float32": float32_model,
    "float16": float16_model,
    "int8": lambda: quantized_model("int8"),
    "uint8": lambda: quantized_model("uint8"),
    "multi_io": multi_io_model,
    "control_flow": control_flow_variable_model,
    "custom_op": custom_op_model,
}
_BUILT: dict[str, dict[str, Path]] = {}


def build_all(directory: Path) -> dict[str, Path]:
    """All MAKERS written to `directory` as NAME.tflite, made once per test process (TF conversion is slow)."""
    key = str(directory)
    if key not in _BUILT:
        directory.mkdir(parents=True, exist_ok=True)
        _BUILT[key] = {name: write(directory, f"{name}.tflite", make()) for name, make in MAKERS.items()}
    return _BUILT[key]


def zoo_fixture(tmp_path_factory) -> dict[str, Path]:
    """Body of a session fixture: `tflite_zoo = pytest.fixture(scope="session")(zoo_fixture)`."""
    return build_all(tmp_path_factory.getbasetemp() / "tflite_zoo")
