"""Segmentation models of the zoo (edgecnn/zoo/segmenters.py): logits at the input resolution, the input-size check,
the listing (task, MACs counted from the graph), and an int8 conversion that runs whole on XNNPACK and maps on the
Edge TPU."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.zoo import build, get_entry, list_models
from edgecnn.zoo.counting import count_macs, summarize
from helpers import assert_one_line_error, run_cli_in_process

SEGMENTERS = ["deeplabv3_mobilenet_v2", "lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_small"]


def test_registered_as_segmentation():
    assert [n for n in list_models() if get_entry(n).task == "segmentation"] == SEGMENTERS
    for name in SEGMENTERS:
        entry = get_entry(name)
        assert entry.input_range == (-1.0, 1.0) and entry.default_input == (128, 128, 3)
        assert entry.knobs()["weights"] is None and entry.knobs()["alpha"] < 1


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("shape,kw", [((64, 96, 3), {"alpha": 0.35}), ((32, 48, 1), {"alpha": 0.5})])
def test_logits_at_the_input_resolution(name, shape, kw):
    if name.startswith("lraspp") and shape[2] == 1:
        kw = {**kw, "minimalistic": True}
    model = build(name, shape, num_classes=5, **kw)
    x = np.random.default_rng(0).uniform(-1, 1, (2, *shape)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert y.shape == (2, shape[0], shape[1], 5) and model.output_shape == (None, shape[0], shape[1], 5)
    assert model.layers[-1].name == "logits" and np.isfinite(y).all()
    assert y.min() < 0 and not np.allclose(y.sum(axis=-1), 1.0)  # logits, not a softmax
    assert {type(layer).__name__ for layer in model.layers}.isdisjoint({"Softmax", "UpSampling2D", "AveragePooling2D"})


@pytest.mark.parametrize("name", SEGMENTERS)
def test_input_must_be_a_multiple_of_16(name):
    with pytest.raises(EdgecnnError, match=rf"^{name}: input 72x64 must be a multiple of 16 on each side"):
        build(name, (72, 64, 3), 11)
    proc = run_cli_in_process("build", name, "--input-shape", "64x40x3", "-o", "never.keras")
    assert_one_line_error(proc, name, "64x40", "multiple of 16")


def test_lraspp_head_macs_by_hand():
    """Resizing, Multiply and GlobalAveragePooling2D count no MACs; the head's 1x1 convolutions do (the one on the
    pooled 1x1 map once per channel pair)."""
    import keras

    model = build("lraspp_mobilenet_v3_small", (64, 64, 3), 7, alpha=0.35, head_channels=16)
    low = model.get_layer("expanded_conv_2_add").output
    high = model.get_layer("aspp_pool").input  # block 8's expansion (its depthwise_pad is cut off)
    backbone = keras.Model(model.input, [low, high])
    (_, h8, w8, c8), (_, h16, w16, c16) = low.shape, high.shape
    assert (h8, w8, h16, w16) == (8, 8, 4, 4)
    head = h16 * w16 * c16 * 16 + c16 * 16 + h8 * w8 * c8 * 7 + h8 * w8 * 16 * 7
    assert count_macs(model) == count_macs(backbone) + head


@pytest.mark.parametrize("name,tap", [("lraspp_mobilenet_v3_small", "expanded_conv_1_depthwise_pad"),
                                      ("lraspp_mobilenet_v3_large", "expanded_conv_3_depthwise_pad")])
def test_lraspp_refined_at_stride_4(name, tap):
    """`refine_channels`: the stride-8 logits go up to stride 4 and get a residual from them and the stride-4
    feature; what it adds to the plain head, by hand (1x1 conv over the concatenation, 3x3 depthwise, 1x1 conv to
    the classes)."""
    shape, classes, rc = (64, 96, 3), 7, 8
    plain = build(name, shape, classes, alpha=0.35, head_channels=16)
    model = build(name, shape, classes, alpha=0.35, head_channels=16, refine_channels=rc)
    _, h4, w4, c4 = model.get_layer(tap).input.shape
    assert (h4, w4) == (16, 24) and model.get_layer("refine_up").output.shape[1:] == (16, 24, classes)
    assert model.get_layer("refine").output.shape[1:] == (16, 24, classes) and "refine" not in {
        layer.name for layer in plain.layers}
    added = h4 * w4 * (classes + c4) * rc + h4 * w4 * rc * 9 + h4 * w4 * rc * classes
    assert count_macs(model) == count_macs(plain) + added
    y = model(np.random.default_rng(0).uniform(-1, 1, (2, *shape)).astype(np.float32), training=False).numpy()
    assert y.shape == (2, 64, 96, classes) and np.isfinite(y).all() and y.std() > 0


@pytest.mark.parametrize("name,block", [("lraspp_mobilenet_v3_small", "expanded_conv_3"),
                                        ("lraspp_mobilenet_v3_large", "expanded_conv_6")])
def test_lraspp_output_stride_8_keeps_the_weights_and_runs_the_stage_at_stride_8(name, block):
    """`output_stride=8`: the block that began stride 16 no longer strides, so the high-level feature is at stride
    8 like the low-level one (no resize between them); the same weights (a stride has none), copied over by
    `_unstrided`; any other stride is one line."""
    from keras.applications import MobileNetV3Large, MobileNetV3Small

    from edgecnn.zoo.segmenters import _unstrided

    shape = (64, 96, 3)
    os16 = build(name, shape, 7, alpha=0.35, minimalistic=True)
    os8 = build(name, shape, 7, alpha=0.35, minimalistic=True, output_stride=8)
    assert os16.get_layer("aspp_pool").input.shape[1:3] == (4, 6)
    assert os8.get_layer("aspp_pool").input.shape[1:3] == (8, 12) == os8.get_layer("classifier").output.shape[1:3]
    assert "aspp_up" in {layer.name for layer in os16.layers} and "aspp_up" not in {layer.name for layer in os8.layers}
    assert os8.count_params() == os16.count_params() and count_macs(os8) > 2 * count_macs(os16)
    full = build(name, shape, 7, alpha=0.35, output_stride=8)  # hard-swish and squeeze-excite blocks cloned too
    assert full.get_layer("aspp_pool").input.shape[1:3] == (8, 12)
    app = MobileNetV3Small if name.endswith("small") else MobileNetV3Large
    base = app(input_shape=shape, include_top=False, alpha=0.35, minimalistic=False, include_preprocessing=False,
               weights=None)
    moved = _unstrided(base, block)
    assert base.get_layer(f"{block}_depthwise").output.shape[1:3] == (4, 6)
    assert moved.get_layer(f"{block}_depthwise").output.shape[1:3] == (8, 12)
    with_weights = [layer for layer in base.layers if layer.weights]
    assert len(with_weights) > 20
    for layer in with_weights:  # by name: each layer's own weights, not just the same list in the same order
        for a, b in zip(layer.get_weights(), moved.get_layer(layer.name).get_weights(), strict=True):
            assert np.array_equal(a, b), layer.name
    with pytest.raises(EdgecnnError, match=rf"^{name}: output_stride 32: use 16 \(the paper's\) or 8$"):
        build(name, shape, 7, output_stride=32)
    with pytest.raises(EdgecnnError, match=rf"^{name}: refine_channels -1: use 0 \(no refinement\) or more$"):
        build(name, shape, 7, refine_channels=-1)


def test_deeplab_head_macs_by_hand():
    import keras

    model = build("deeplabv3_mobilenet_v2", (64, 64, 3), 7, alpha=0.35, head_channels=16)
    feat = model.get_layer("block_13_expand_relu").output
    _, h, w, c = feat.shape
    assert (h, w) == (4, 4)
    head = c * 16 + h * w * c * 16 + h * w * 32 * 16 + h * w * 16 * 7  # pool branch, 1x1 branch, projection, classifier
    assert count_macs(model) == count_macs(keras.Model(model.input, feat)) + head


def test_models_json_lists_them_with_counts():
    rows = []
    for pattern in ("lraspp*", "deeplab*"):
        proc = run_cli_in_process("models", pattern, "--input-shape", "64x64x3", "--num-classes", "11", "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows += json.loads(proc.stdout)
    assert sorted(r["name"] for r in rows) == SEGMENTERS
    for r in rows:
        assert r["task"] == "segmentation" and r["input_shape"] == [64, 64, 3] and r["num_classes"] == 11
        assert r["macs"] > 0 and r["params"] > 0 and "alpha" in r["options"], r
    by = {r["name"]: r for r in rows}
    assert by["lraspp_mobilenet_v3_small"]["macs"] < by["lraspp_mobilenet_v3_large"]["macs"]


# ---- int8 on target ------------------------------------------------------------------------------------------


def _with_batch_statistics(model, shape):
    """`model` with each BatchNormalization's moving statistics set from one batch, as training would leave them.

    Freshly built, every BN layer is the identity and activations shrink layer by layer; a deep MobileNetV3 then
    reaches tensors whose calibrated range is ~1e-5, and XNNPACK refuses an int8 MUL whose scales differ that much
    (it ran outside the delegate: 2 partitions). A trained model has no such tensors."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(np.random.default_rng(0).uniform(-1, 1, (8, *shape)).astype(np.float32), training=True)
    return model


@pytest.fixture(scope="module")
def segmenter_files(tmp_path_factory):
    import keras

    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec

    d = tmp_path_factory.mktemp("segmenters")
    shape = (64, 64, 3)
    out = {}
    for key, name, kw in (("lraspp_mobilenet_v3_small", "lraspp_mobilenet_v3_small", {}),
                          ("lraspp_refined", "lraspp_mobilenet_v3_small",
                           {"refine_channels": 16, "minimalistic": True, "output_stride": 8}),
                          ("deeplabv3_mobilenet_v2", "deeplabv3_mobilenet_v2", {})):
        keras.utils.set_random_seed(0)
        model = _with_batch_statistics(build(name, shape, 11, alpha=0.35, **kw), shape)
        out[key] = save_model(model, d / f"{key}.keras", default_spec(name, shape, [str(i) for i in range(11)], ""))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name,target", [("lraspp_mobilenet_v3_small", "cpu"), ("lraspp_mobilenet_v3_small", "edgetpu"),
                                         ("lraspp_refined", "cpu"), ("lraspp_refined", "edgetpu"),
                                         ("deeplabv3_mobilenet_v2", "cpu")])
def test_int8_runs_whole_on_xnnpack_and_maps_on_the_edgetpu(segmenter_files, tmp_path, name, target):
    """`edgecnn convert --quant int8 --target cpu|edgetpu`: one XNNPACK partition with no op outside it (the cpu
    target's report, measured again for the edgetpu file) and every op mapped by the Edge TPU preflight."""
    from edgecnn.bench.delegation import measure
    from edgecnn.convert.edgetpu import preflight
    from edgecnn.tflite.reader import TfliteInfo, read_tflite

    out = tmp_path / "int8.tflite"
    proc = run_cli_in_process("convert", segmenter_files[name], "-o", out, "--quant", "int8", "--calibration", "photos",
                              "--num-calibration", "8", "--target", target, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    ops = Counter(op.op for op in TfliteInfo(read_tflite(out)).ops)
    assert ops["RESIZE_BILINEAR"] == 2 and ops["MEAN"] >= 1 and ops["CONV_2D"] > 0
    assert not {"ARG_MAX", "SOFTMAX", "AVERAGE_POOL_2D", "HARD_SWISH", "TILE", "RESIZE_NEAREST_NEIGHBOR",
                "QUANTIZE", "DEQUANTIZE"} & set(ops), ops
    if name.startswith("lraspp"):
        assert ops["LOGISTIC"] == 1 and ops["MUL"] > 0
        assert next(r for r in report["rewrites"] if r["pass"] == "hard_swish")["applied"] == (name != "lraspp_refined")
    delegate = report["delegate"] if target == "cpu" else measure(out)
    assert delegate["partitions"] == 1 and delegate["ops_outside"] == [], delegate
    assert delegate["ops_delegated"] == delegate["ops_total"] == sum(ops.values())
    tpu = report["edgetpu"]["preflight"] if target == "edgetpu" else preflight(out)
    assert tpu["maps_fully"] and tpu["ops_edgetpu"] == sum(ops.values()) and tpu["ops_cpu"] == 0, tpu["first_cpu_op"]
