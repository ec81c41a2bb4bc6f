"""Keras 2 `.h5` files (edgecnn/keras2_h5.py): a file Keras 2 wrote converts to the same float function, by the
route the report names; what no route takes is one line.

Files are made here: by Keras 2 itself (`tf-keras`, the `keras2` extra, in the dev install) and, for the repairs on
any machine, by Keras 3 with its config rewritten to Keras 2's spelling of the same layers.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from conftest import require
from helpers import assert_one_line_error, run_cli_in_process

X = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")


def _tf_keras():
    try:
        import tf_keras
    except ImportError:
        require(False, "tf-keras is not installed (pip install 'edgecnn[keras2]'): Keras 2 files cannot be made")
    return tf_keras


def _mobilenet_like(L, hard_sigmoid=False):
    """The layers a MobileNet-era classifier uses, with the Keras 2 configs Keras 3 refuses (DepthwiseConv2D groups,
    SeparableConv2D kernel_*, LeakyReLU alpha, SpatialDropout2D trainable/noise_shape, InputLayer ragged)."""
    i = L.Input((32, 32, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(i)
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.LeakyReLU(alpha=0.1)(x)
    y = L.SeparableConv2D(8, 3, padding="same")(x)
    x = L.Add()([x, y])
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(8, 1, activation="hard_sigmoid" if hard_sigmoid else "sigmoid")(s)
    x = L.Multiply()([x, s])
    u = L.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = L.Concatenate()([x, L.MaxPooling2D(2)(u)])
    x = L.SpatialDropout2D(0.1)(x)
    x = L.GlobalAveragePooling2D()(x)
    return i, L.Dense(5, activation="softmax")(x)


def _keras2_file(tmp_path, name="k2.h5", **kw):
    """A Keras 2 .h5 saved by tf-keras, with trained-looking (random, non-trivial) BN statistics; (path, outputs)."""
    tf_keras = _tf_keras()
    i, o = _mobilenet_like(tf_keras.layers, **kw)
    m = tf_keras.Model(i, o)
    rng = np.random.default_rng(1)
    for layer in m.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            g, b, mu, var = layer.get_weights()
            layer.set_weights([g * 1.5, b + 0.1, rng.normal(0, 0.5, mu.shape), var + rng.uniform(0.5, 2, var.shape)])
    path = tmp_path / name
    m.save(path)
    return path, m(X, training=False).numpy()


def _tflite_outputs(path) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for x in X:
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0])
    return np.stack(ys)


def test_a_keras2_file_that_keras3_refuses_converts_repaired_to_the_same_float_function(tmp_path):
    path, want = _keras2_file(tmp_path)
    import keras

    with pytest.raises(Exception, match="groups"):  # what a user of plain Keras 3 meets
        keras.models.load_model(path, compile=False)
    out = tmp_path / "k2.tflite"
    r = run_cli_in_process("convert", path, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    notes = json.loads(r.stdout)["source_notes"]
    assert any("keras 2 config repaired" in n and "groups=1" in n for n in notes), notes
    got = _tflite_outputs(out)
    assert got.shape == want.shape == (3, 5) and np.ptp(want) > 1e-3  # not a constant output
    np.testing.assert_allclose(got, want, atol=1e-5)
    text = run_cli_in_process("convert", path, "-o", tmp_path / "again.tflite")
    assert text.returncode == 0 and "source: keras 2 config repaired" in text.stdout


def test_a_keras2_file_with_tf_ops_goes_through_tf_keras_and_computes_the_same(tmp_path):
    tf_keras = _tf_keras()
    import tensorflow as tf

    i = tf_keras.Input((32, 32, 3))
    x = tf_keras.layers.Conv2D(6, 3, strides=2)(i / 255.0)
    x = tf.nn.relu6(x) * 0.5  # TFOpLambda layers: Keras 3 has no such layer
    o = tf_keras.layers.Dense(3)(tf_keras.layers.GlobalAveragePooling2D()(x))
    m = tf_keras.Model(i, o)
    path = tmp_path / "tfop.h5"
    m.save(path)
    want = m(X).numpy()

    _converts_through_tf_keras_to(path, want)

    from edgecnn import keras2_h5
    from edgecnn.errors import EdgecnnError

    with pytest.raises(EdgecnnError) as exc:  # without tf-keras: one line naming the layer and the extra
        keras2_h5.load_h5(path, routes=("keras 3", "repaired"))
    assert "TFOpLambda" in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_keras2_hard_sigmoid_is_computed_by_keras2_not_loaded_as_keras3s(tmp_path):
    """Keras 3 loads such a file (after repairs) but computes relu6(x + 3) / 6 where Keras 2 computed
    clip(0.2x + 0.5): the file goes through tf-keras, and the float .tflite computes what Keras 2 did."""
    path, want = _keras2_file(tmp_path, name="hs.h5", hard_sigmoid=True)
    _converts_through_tf_keras_to(path, want)


def _converts_through_tf_keras_to(path, want):
    """`edgecnn convert path` takes the tf-keras route and the float .tflite computes `want` (not a constant)."""
    out = path.with_suffix(".tflite")
    r = run_cli_in_process("convert", path, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    assert any("tf-keras" in n for n in json.loads(r.stdout)["source_notes"])
    assert np.ptp(want) > 1e-4
    np.testing.assert_allclose(_tflite_outputs(out), want, atol=1e-5)


def test_without_tf_keras_a_file_that_needs_it_says_what_to_install(tmp_path, monkeypatch):
    from edgecnn import keras2_h5
    from edgecnn.errors import EdgecnnError

    monkeypatch.setattr(keras2_h5, "_tf_keras", lambda: None)
    path, _ = _keras3_file_as_keras2(tmp_path, activation="hard_sigmoid")
    with pytest.raises(EdgecnnError) as exc:
        keras2_h5.load_h5(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and "edgecnn[keras2]" in msg
    assert "hard_sigmoid" in msg and "0.2x" in msg  # the reason no repair is exact


def _keras3_file_as_keras2(tmp_path, activation="sigmoid"):
    """A model saved by Keras 3 as .h5, its config rewritten the way Keras 2 spelled it (initializers with a dtype,
    DepthwiseConv2D with groups=1, LeakyReLU alpha, Policy dtypes, InputLayer ragged)."""
    import keras

    i = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2)(i)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
    x = keras.layers.Conv2D(8, 1, activation=activation)(x)
    o = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "k3as2.h5"
    model = keras.Model(i, o)
    model.save(path)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            c, cls = layer["config"], layer["class_name"]
            c["dtype"] = {"class_name": "Policy", "config": {"name": "float32"}}
            if cls == "InputLayer":
                c["ragged"] = False
            if cls == "DepthwiseConv2D":
                c["groups"] = 1
            if cls == "LeakyReLU":
                c["alpha"] = c.pop("negative_slope")
            for key in ("kernel_initializer", "depthwise_initializer"):
                if key in c:
                    c[key] = {"class_name": "GlorotUniform", "config": {"seed": None, "dtype": "float32"}}
        f.attrs["model_config"] = json.dumps(cfg)
        f.attrs["keras_version"] = "2.13.1"
    return path, model(X).numpy()


def test_the_known_keras2_differences_are_repaired_exactly_on_any_machine(tmp_path):
    import keras

    from edgecnn import keras2_h5

    path, want = _keras3_file_as_keras2(tmp_path)
    with pytest.raises(Exception):
        keras.models.load_model(path, compile=False)
    model, route = keras2_h5.load_h5(path, routes=("keras 3", "repaired"))
    for repair in ("groups=1", "initializer dtype", "LeakyReLU alpha", "dtype policy", "InputLayer ragged"):
        assert repair in route, route
    leaky = next(layer for layer in model.layers if layer.__class__.__name__ == "LeakyReLU")
    assert abs(float(leaky.negative_slope) - 0.2) < 1e-7
    got = model(X).numpy()
    assert got.shape == want.shape == (3, 4) and np.ptp(want) > 0
    np.testing.assert_array_equal(got, want)


def test_a_truncated_or_weights_only_h5_is_one_line(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    whole = tmp_path / "m.h5"
    m.save(whole)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole.read_bytes()[:3000])
    weights = tmp_path / "only.weights.h5"
    m.save_weights(weights)
    for bad, words in ((cut, "truncated"), (weights, "without a model config")):
        out = tmp_path / f"{bad.stem}.tflite"
        r = run_cli_in_process("convert", bad, "-o", out)
        assert_one_line_error(r, str(bad))
        assert words in r.stderr and not out.exists()
