"""The `concat_split` rewrite pass (edgecnn/convert/rewrite/concat_split.py): an int8 CONCATENATION of 6 inputs,
which XNNPACK leaves to LiteRT's kernel, becomes a chain of at most 5 each, with the same outputs, and every op of
the model runs in XNNPACK."""

from __future__ import annotations

import json

import numpy as np

from helpers import run_cli_in_process


def _six_heads(path):
    """Six conv heads of different ranges, flattened and concatenated (an SSD's box predictor, in small)."""
    import keras

    i = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    parts = []
    for k in range(6):
        h = keras.layers.Conv2D(4, 1, kernel_initializer=keras.initializers.RandomNormal(0, 0.2 * (k + 1), seed=k))(x)
        parts.append(keras.layers.Reshape((-1, 4))(h))
    o = keras.layers.Concatenate(axis=1)(parts)
    keras.Model(i, o).save(path)
    return path


def test_a_six_input_concatenation_is_split_exactly_and_runs_in_one_partition(tmp_path):
    src = _six_heads(tmp_path / "six.keras")
    flags = ("--quant", "int8", "--calibration", "photos", "--num-calibration", "16", "--scale", str(1 / 255),
             "--offset", "0", "--json")
    plain = run_cli_in_process("convert", src, "-o", tmp_path / "plain.tflite", "--no-rewrite", *flags)
    assert plain.returncode == 0, plain.stderr[-2000:]
    before = json.loads(plain.stdout)["delegate"]  # what the pass is for: XNNPACK leaves the concatenation out
    assert [o["op"] for o in before["ops_outside"]] == ["CONCATENATION"]
    r = run_cli_in_process("convert", src, "-o", tmp_path / "split.tflite", *flags)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    row = next(x for x in rep["rewrites"] if x["pass"] == "concat_split")
    assert row["count"] == 1 and row["applied"] and row["max_diff_steps"] == 0 and row["samples"] > 0
    after = rep["delegate"]
    assert rep["op_histogram"]["CONCATENATION"] == 2 and after["partitions"] == 1 and not after["ops_outside"]
    assert after["ops_delegated"] == after["ops_total"]

    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(0).integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
    outs = []
    for name in ("plain", "split"):
        it = Interpreter(model_path=str(tmp_path / f"{name}.tflite"))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    assert outs[0].shape == (1, 6 * 16 * 16, 4) and np.ptp(outs[0].astype(np.int32)) > 0
    np.testing.assert_array_equal(outs[0], outs[1])
