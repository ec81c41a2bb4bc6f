"""The private TensorFlow Lite APIs edgecnn pins (edgecnn/tflite/private.py): fail loudly on upgrade."""

import inspect

import numpy as np


def test_mlir_quantize_signature():
    from tensorflow.lite.python import convert

    from edgecnn.tflite.private import MLIR_QUANTIZE_PARAMS

    params = list(inspect.signature(convert.mlir_quantize).parameters)
    missing = [p for p in MLIR_QUANTIZE_PARAMS if p not in params]
    assert not missing, f"TensorFlow changed convert.mlir_quantize: missing {missing}; have {params}"


def test_calibrator_api():
    from tensorflow.lite.python.optimize import calibrator

    assert callable(calibrator.add_intermediate_tensors)
    sig = inspect.signature(calibrator.Calibrator.calibrate_and_quantize)
    for p in ("dataset_gen", "input_type", "output_type", "allow_float", "activations_type", "bias_type"):
        assert p in sig.parameters, f"Calibrator.calibrate_and_quantize lost {p}: {sig}"
    assert hasattr(calibrator.Calibrator, "calibrate")


def test_litert_private_helpers_used():
    """`_get_ops_details` (delegate partitions, in-place analysis) and tensor views must stay available."""
    from ai_edge_litert.interpreter import Interpreter

    assert hasattr(Interpreter, "_get_ops_details")
    assert hasattr(Interpreter, "tensor")


def test_round_trip_on_a_real_model():
    """Calibrate + quantize through the pinned calls on a tiny real conv net."""
    import keras

    from edgecnn.tflite import private as tflite_private
    from edgecnn.convert.frontend import float_tflite

    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Conv2D(3, 3, activation="relu")(inp)))
    f32 = float_tflite(keras.Model(inp, out))
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)).astype(np.float32)
    q = tflite_private.mlir_quantize(tflite_private.stock_calibrate(f32, x), False, "int8")
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=q)
    assert it.get_input_details()[0]["dtype"] == np.int8
