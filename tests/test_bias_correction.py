"""Empirical bias correction (`--bias-correction`, edgecnn/convert/bias_correction.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.convert.bias_correction import _channel_means
from edgecnn.convert.converter import Prepared
from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.tflite import reader
from test_rewrite import _save


def _spread_net():
    """Conv (no activation) whose 8 output channels' weights span 4 orders of magnitude, as batch-norm folding
    leaves them: per-tensor int8 rounds the narrow channels to (almost) nothing, a systematic error."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(8, 3, padding="same")
    x = conv(inp)
    w, b = conv.get_weights()
    conv.set_weights([(np.abs(w) * np.logspace(-2, 2, 8)[None, None, None, :]).astype("float32"), b])
    x = keras.layers.Activation("relu")(keras.layers.Conv2D(8, 1)(x))
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))


def _first_layer_error(prep, quant: bytes) -> float:
    """Mean |per-channel mean error| of the first convolution's output, int8 vs float, on the samples."""
    m = reader.parse(quant)
    op = next(o for o in m.subgraphs[0].operators if reader.op_name(m, o) == "CONV_2D")
    name = reader.tensor_name(m.subgraphs[0].tensors[int(op.outputs[0])])
    f = reader.parse(prep.f32)
    ft = next(i for i, t in enumerate(f.subgraphs[0].tensors) if reader.tensor_name(t) == name)
    x = prep.samples[:16]
    q = _channel_means(quant, x, [int(op.outputs[0])], dequantize=True)[int(op.outputs[0])]
    return float(np.mean(np.abs(q - _channel_means(prep.f32, x, [ft], dequantize=False)[ft])))


@pytest.mark.parametrize("per_tensor", [True, False])
def test_the_first_layers_mean_error_shrinks(tmp_path, per_tensor):
    """The first layer sees the same input in both models, so its correction is measured cleanly (a linear layer:
    no activation clips the shift); what remains is what the output's own int8 step cannot show."""
    src = _save(_spread_net(), tmp_path / "m.keras")
    plain = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=16, per_tensor=per_tensor,
                                            rewrite=False))
    plain.calibrate()
    before = _first_layer_error(plain, plain.quantized())
    fixed = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=16, per_tensor=per_tensor,
                                            rewrite=False, bias_correction=True))
    fixed.calibrate()
    q = fixed.quantized()
    after = _first_layer_error(fixed, q)
    if per_tensor:  # the narrow channels' lost output is back on average, as far as the output's own int8 step allows
        assert after < 0.8 * before, (before, after)
    else:  # per-channel weights leave little to correct: it must not get worse
        assert after <= before * 1.05 + 1e-6, (before, after)
    report = fixed.corrections[hash(q)]
    assert report["layers"] >= 2 and report["samples"] == 16


def test_bias_correction_is_for_int8_only():
    with pytest.raises(EdgecnnError, match="--bias-correction needs --quant int8"):
        ConversionRequest("float16", bias_correction=True)
