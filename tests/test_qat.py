"""Quantization-aware training (edgecnn/train/qat.py) and the conversion of its ranges (convert/qat_ranges.py).

What must hold on any machine: the int8 simulation the model trains through is the int8 model the converter writes
(same outputs to within the int8 kernels' rounding on inputs on the int8 grid), the learned ranges are the ones in
the .tflite, the int8 graph is the post-training one, a run from a fixed seed is reproducible, and what cannot be
simulated or would undo the training is one line. Nothing here asserts what a short training reaches."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli, run_cli_in_process
from edgecnn.data import PreprocessSpec
from edgecnn.modelfile import QAT_ENTRY, load_model, read_keras_qat, save_model


def _train(out, *args, epochs=1):
    r = run_cli("train", *args, "--data", "digits", "--epochs", str(epochs), "--qat", "-o", out, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def _convert(model, out, *extra):
    r = run_cli("convert", model, "--quant", "int8", "--calibration", "digits", "--num-calibration", "64", "-o", out,
                "--json", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    d = tmp_path_factory.mktemp("qat_lenet")
    summary = _train(d / "q.keras", "lenet5")
    return d, summary, _convert(d / "q.keras", d / "q.tflite")


def _bn_start(d):
    """A small MobileNetV2-like block (conv, depthwise and projection each with a batch norm of moved statistics,
    ReLU6, a residual add, a pooling mean, a softmax dense) on [-1, 1] inputs: start.keras.
    One depthwise channel's variance is near zero, as a pretrained net's dead channels' are: its folded kernel is
    ~300x the others', which sets a per-tensor weight scale (and the bias grid: input scale x weight scale)."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="c1_bn")(x)
    a = keras.layers.ReLU(6.0, name="c1_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(a)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0, name="dw_relu")(x)
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="project")(x)
    x = keras.layers.BatchNormalization(name="project_bn")(x)
    x = keras.layers.Add(name="add")([x, a])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="predictions")(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mean, var = layer.get_weights()
            var = rng.uniform(0.3, 3, var.shape).astype("float32")
            if layer.name == "dw_bn":
                var[3] = 1e-5
            layer.set_weights([rng.uniform(0.5, 2, g.shape).astype("float32"), rng.normal(0, 0.2, b.shape).astype(
                "float32"), rng.normal(0, 0.3, mean.shape).astype("float32"), var])
    save_model(model, d / "start.keras", PreprocessSpec(16, 16, 1, scale=2 / 255, offset=-1.0,
                                                        labels=tuple("0123456789")))


def _bn_block(d, *flags):
    """The block above through one QAT epoch, converted."""
    _bn_start(d)
    _train(d / "q.keras", d / "start.keras", *flags)
    # one QAT epoch with the batch's statistics moved the depthwise channel's variance to its real one: put back, as
    # a pretrained net's dead channel keeps it (its batch variance is ~0 too), so that per tensor it sets the scale.
    # The tests on this model then compare a simulation and an int8 model of the same edited weights and learned
    # ranges (learned with the channel's real variance): faithfulness, not what the run produced
    trained, spec = load_model(d / "q.keras")
    g, b, mean, var = trained.get_layer("dw_bn").get_weights()
    var[3] = 1e-5
    trained.get_layer("dw_bn").set_weights([g, b, mean, var])
    save_model(trained, d / "q.keras", spec, qat=read_keras_qat(d / "q.keras"))
    return d, _convert(d / "q.keras", d / "q.tflite", *flags)


@pytest.fixture(scope="module")
def bn_net(tmp_path_factory):
    return _bn_block(tmp_path_factory.mktemp("qat_bn"))


@pytest.fixture(scope="module")
def bn_net_per_tensor(tmp_path_factory):
    return _bn_block(tmp_path_factory.mktemp("qat_bn_pt"), "--per-tensor")


def _nested_classifier(path):
    """A keras.applications-shaped transfer model: a functional backbone (conv, batch norm of moved statistics,
    ReLU6, depthwise) nested in the model, then a pooling mean and a softmax dense; saved with a [-1, 1] spec."""
    import keras

    keras.utils.set_random_seed(7)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="n_c1")(inp)
    x = keras.layers.BatchNormalization(name="n_c1_bn")(x)
    x = keras.layers.ReLU(6.0, name="n_c1_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="n_dw")(x)
    backbone = keras.Model(inp, x, name="backbone")
    bn = backbone.get_layer("n_c1_bn")
    rng = np.random.default_rng(1)
    g, b, mean, var = bn.get_weights()
    bn.set_weights([rng.uniform(0.5, 2, g.shape).astype("float32"), rng.normal(0, 0.2, b.shape).astype("float32"),
                    rng.normal(0, 0.3, mean.shape).astype("float32"), rng.uniform(0.3, 3, var.shape).astype("float32")])
    top = keras.Input((16, 16, 1))
    y = keras.layers.GlobalAveragePooling2D(name="n_pool")(backbone(top))
    model = keras.Model(top, keras.layers.Dense(10, activation="softmax", name="n_predictions")(y))
    save_model(model, path, PreprocessSpec(16, 16, 1, scale=2 / 255, offset=-1.0, labels=tuple("0123456789")))
    return model


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    """The nested classifier through one QAT epoch (flattened first), converted."""
    d = tmp_path_factory.mktemp("qat_nested")
    _nested_classifier(d / "start.keras")
    summary = _train(d / "q.keras", d / "start.keras")
    assert summary["qat"]["ranges"] >= 4
    saved, _ = load_model(d / "q.keras")
    assert "backbone" not in [layer.name for layer in saved.layers]  # saved flat: the graph the ranges name
    report = _convert(d / "q.keras", d / "q.tflite")
    assert report["calibration"]["qat"]["unmatched_ranges"] == []
    return d, report


def test_a_nested_model_is_flattened_into_one_graph_of_the_same_layers(tmp_path):
    from edgecnn.train import qat

    model = _nested_classifier(tmp_path / "n.keras")
    flat = qat.flatten(model)
    assert "backbone" in [l.name for l in model.layers]
    names = [l.name for l in flat.layers]
    assert "backbone" not in names and {"n_c1", "n_c1_bn", "n_dw", "n_pool", "n_predictions"} <= set(names)
    inner = model.get_layer("backbone").get_layer("n_c1").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(flat.get_layer("n_c1").get_weights(), inner))
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)).astype("float32")
    want = model.predict(x, verbose=0)
    assert want.shape == (4, 10) and np.array_equal(want, flat.predict(x, verbose=0))
    qat.check(flat)
    assert qat.flatten(flat) is flat  # nothing nested: the model itself


def _bn_after(kind):
    """A kernel layer of `kind` and a batch norm after it whose moving statistics are far from the data's (one
    channel's gamma 0 where the norm scales), a ReLU, a softmax dense; its simulation and [0, 1) images."""
    import keras

    from edgecnn.train import qat

    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    x = {"conv": lambda t: keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="k")(t),
         "conv_bias": lambda t: keras.layers.Conv2D(4, 3, padding="same", bias_initializer="ones", name="k")(t),
         "no_gamma": lambda t: keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="k")(t),
         "depthwise": lambda t: keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False,
                                                             name="k")(t),
         "dense": lambda t: keras.layers.Dense(6, use_bias=False, name="k")(keras.layers.Flatten(name="f")(t)),
         }[kind](inp)
    x = keras.layers.BatchNormalization(scale=kind != "no_gamma", name="bn")(x)
    x = keras.layers.ReLU(name="r")(x)
    if kind != "dense":
        x = keras.layers.GlobalAveragePooling2D(name="g")(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="p")(x))
    bn = model.get_layer("bn")
    rng = np.random.default_rng(0)
    n = bn.moving_mean.shape[0]
    gamma = rng.uniform(0.5, 2, n).astype("float32")
    gamma[1] = 0.0  # folds to a kernel of 0: the channel is its beta
    bn.set_weights(([gamma] if kind != "no_gamma" else []) + [
        rng.normal(0, 0.2, n).astype("float32"), np.full(n, 5.0, "float32"), np.full(n, 9.0, "float32")])
    images = rng.uniform(0, 1, (16, 8, 8, 3)).astype("float32")
    sim, _ = qat.simulate(model, PreprocessSpec(8, 8, 3, labels=("a", "b", "c")), images)
    return model, sim, images


@pytest.mark.parametrize("kind", ["conv", "conv_bias", "no_gamma", "depthwise", "dense"])
def test_qat_trains_with_the_batch_s_statistics_then_folds_the_frozen_ones(kind):
    """While training, a kernel's batch norm normalizes by the batch's statistics (of the kernel's own output, from
    its quantized weights) and updates its moving ones; from the last epoch on (of 2 or more) it folds the frozen
    moving statistics, as the converter and the simulation at inference do. The moving statistics here are far
    from the data's, so the two paths differ by much more than the int8 weights' rounding."""
    import keras

    from edgecnn.train import qat

    model, sim, images = _bn_after(kind)
    bn, fused = model.get_layer("bn"), sim.get_layer("qat_fused_k")
    (freeze,) = qat.callbacks(sim, 3)
    inner = images.reshape(16, -1) if kind == "dense" else images
    raw = keras.ops.convert_to_numpy(model.get_layer("k")(inner))
    weights = bn.get_weights()
    g, (beta, mean0, var0) = (weights[0] if kind != "no_gamma" else 1.0), weights[-3:]
    axes = tuple(range(raw.ndim - 1))
    batch = np.maximum(g * (raw - raw.mean(axes)) / np.sqrt(raw.var(axes) + bn.epsilon) + beta, 0)
    moving = np.maximum(g * (raw - mean0) / np.sqrt(var0 + bn.epsilon) + beta, 0)
    assert np.ptp(batch) > 1.0 and np.abs(batch - moving).max() > 0.5  # the two paths differ, by far
    for epoch in (0, 1):
        freeze.on_epoch_begin(epoch)
        got = keras.ops.convert_to_numpy(fused(inner, training=True))
        assert np.isfinite(got).all() and np.abs(got - batch).max() < 0.02 * np.ptp(batch)  # int8 rounding only
    assert np.isfinite(bn.get_weights()[-2:]).all() and not np.allclose(bn.get_weights()[-2], mean0)  # followed
    freeze.on_epoch_begin(2)
    moved = bn.get_weights()
    got = keras.ops.convert_to_numpy(fused(inner, training=True))
    assert all(np.array_equal(a, b) for a, b in zip(moved, bn.get_weights()))  # frozen
    assert np.array_equal(got, keras.ops.convert_to_numpy(fused(inner, training=False)))  # the converter's fold
    assert qat.frozen_epochs(sim) == 1
    (one,) = qat.callbacks(sim, 1)
    one.on_epoch_begin(0)  # a one-epoch run trains with the batch's statistics throughout
    assert np.abs(keras.ops.convert_to_numpy(fused(inner, training=True)) - batch).max() < 0.02 * np.ptp(batch)
    assert qat.callbacks(model, 3) == [] and qat.frozen_epochs(model) == 0  # a float model: nothing to switch


def test_the_switch_holds_in_a_compiled_fit():
    """Keras compiles the train step once: the switch is a variable the graph reads, not a Python value it traced.
    Two epochs at learning rate 0: the moving statistics move in the first (the batch's) and not in the second."""
    import keras

    from edgecnn.train import qat

    model, sim, images = _bn_after("conv")
    bn = model.get_layer("bn")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(bn.get_weights()[-2].copy())

    start = bn.get_weights()[-2].copy()
    sim.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    sim.fit(images, np.arange(16) % 3, batch_size=4, epochs=2, verbose=0, callbacks=qat.callbacks(sim, 2) + [Record()])
    assert len(seen) == 2 and not np.allclose(seen[0], start)  # the batch's statistics, in the compiled step
    assert np.array_equal(seen[1], seen[0])  # frozen in the last epoch
    assert qat.frozen_epochs(sim) == 1


def test_a_qat_run_of_two_epochs_freezes_the_last(tmp_path):
    """`edgecnn train --qat` switches its batch norms to their frozen statistics for the last epoch (the summary
    counts the epochs that began frozen), having trained their moving statistics before it."""
    import keras

    _bn_start(tmp_path)  # the block with moved statistics, far from digits'
    summary = _train(tmp_path / "two.keras", tmp_path / "start.keras", epochs=2)
    assert summary["epochs"] == 2 and summary["qat"]["bn_frozen_epochs"] == 1
    start, _ = load_model(tmp_path / "start.keras")
    trained, _ = load_model(tmp_path / "two.keras")
    assert isinstance(trained.get_layer("c1_bn"), keras.layers.BatchNormalization)
    assert not np.allclose(trained.get_layer("c1_bn").get_weights()[2], start.get_layer("c1_bn").get_weights()[2])


def _on_grid(x, scale, zero):
    return ((np.clip(np.round(x / scale + zero), -128, 127) - zero) * scale).astype(np.float32)


@pytest.mark.parametrize("which", ["lenet", "bn_net", "bn_net_per_tensor", "nested"])
def test_the_simulation_is_the_int8_model(which, request):
    """LeNet-5: convs and dense layers with their own ReLU and softmax; the block: batch norms folded with moved
    statistics, depthwise, ReLU6, an add, a mean, and a [-1, 1] input whose zero point is a tie (and per-tensor: its
    coarse weight and bias grids); a backbone nested in the model (trained and saved flat)."""
    from edgecnn.data import load_split

    d, report = request.getfixturevalue(which)[0], request.getfixturevalue(which)[-1]
    want, got, scales = _sim_and_int8(d, report, load_split("digits", "test").images[:48])
    want, got, so = want[0], got[0], scales[0]
    assert want.shape == got.shape == (48, 10)  # class scores, not nothing: each image's sum to 1, and differ
    assert np.allclose(want.sum(1), 1.0, atol=0.05) and np.ptp(want, axis=0).max() > 0
    _within_a_step(want, got, so)


def test_a_per_tensor_layer_s_bias_is_simulated_on_its_int32_grid(bn_net_per_tensor):
    """Per-tensor weights make the bias grid coarse (input scale x weight scale, the weight scale set by the dead
    channel's ~300x kernel): the simulation rounds the folded bias onto it as the converter does. Checked on the
    depthwise layer's own output, before pooling averages the error away."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.data import load_split
    from edgecnn.train import qat

    d = bn_net_per_tensor[0]
    model, spec = load_model(d / "q.keras")
    ranges = read_keras_qat(d / "q.keras")
    assert ranges["weights"] == "per-tensor"
    sim, _ = qat.simulate(model, spec, None, True, ranges)
    it = Interpreter(model_path=str(d / "q.tflite"), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    i = it.get_input_details()[0]
    si, zi = i["quantization"]
    x = _on_grid(spec.apply(load_split("digits", "test").images[:32]), si, zi)
    want = keras.Model(sim.input, sim.get_layer("qat_dw_relu").output).predict(x, verbose=0)
    (t,) = [t for t in it.get_tensor_details() if "dw_relu" in t["name"] and t["dtype"] == np.int8]
    so, zo = t["quantization"]
    got = []
    for row in x:
        it.set_tensor(i["index"], np.round(row[None] / si + zi).astype(np.int8))
        it.invoke()
        got.append((it.get_tensor(t["index"]).astype(np.float32) - zo) * so)
    got = np.concatenate(got)
    assert want.shape == got.shape == (32, 16, 16, 8) and np.ptp(got) > 0
    _within_a_step(want, got, so)


def _sim_and_int8(d, report, images):
    """([each output of the simulation rebuilt from the saved model and ranges], [the int8 model's, dequantized],
    [each int8 output's scale]) on `images` moved onto the int8 input grid, which both then see exactly."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.train import qat

    assert report["calibration"]["method"] == "learned (QAT)"
    model, spec = load_model(d / "q.keras")
    ranges = read_keras_qat(d / "q.keras")
    sim, _ = qat.simulate(model, spec, None, ranges["weights"] == "per-tensor", ranges)
    it = Interpreter(model_path=str(d / "q.tflite"))
    it.allocate_tensors()
    i, outs = it.get_input_details()[0], it.get_output_details()
    si, zi = i["quantization"]
    x = _on_grid(spec.apply(images), si, zi)
    want = sim.predict(x, verbose=0)
    want = list(want) if isinstance(want, (list, tuple)) else [want]  # the model's outputs, in its order
    got = [[] for _ in outs]
    for row in x:
        it.set_tensor(i["index"], np.round(row[None] / si + zi).astype(np.int8))
        it.invoke()
        for k, o in enumerate(outs):
            so, zo = o["quantization"]
            got[k].append((it.get_tensor(o["index"]).astype(np.float32) - zo) * so)
    return want, [np.concatenate(g) for g in got], [o["quantization"][0] for o in outs]


def _within_a_step(want, got, step, most: float = 2.0):
    steps = np.abs(want - got) / step
    # float simulation and integer kernels round a few ties differently: measured 0.3% one step further, none more
    assert np.mean(steps <= 1.0 + 1e-3) >= 0.99, np.sort(steps.ravel())[-10:]
    assert steps.max() <= most + 1e-3


DETECTORS = {"centernet_mobilenet_v1": {"alpha": 0.25, "head_channels": 8}, "ssdlite_mobilenet_v2": {"alpha": 0.35}}


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def detector(tmp_path_factory, request):
    """A small CenterNet (MobileNet V1 0.25 backbone, up-sampling neck, sigmoid heat map, ReLU sizes, sigmoid
    offsets: three outputs) and SSDLite (MobileNetV2, boxes and class scores of every anchor, concatenated over
    two feature maps) through one QAT epoch on scenes:digits, converted."""
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build, get_entry

    import keras

    name = request.param
    keras.utils.set_random_seed(11)
    d = tmp_path_factory.mktemp("qat_det")
    names = [str(i) for i in range(10)]
    model = build(name, (32, 32, 3), 10, **DETECTORS[name])
    rng = np.random.default_rng(3)
    for layer in model.layers:  # maps that vary (a fresh head's kernels are zeros) and batch norms that fold
        w = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 2, x.shape).astype("float32") if i == 0 else
                               rng.normal(0, 0.2, x.shape).astype("float32") if i < 3 else
                               rng.uniform(0.3, 3, x.shape).astype("float32") for i, x in enumerate(w)])
        elif w and not np.any(w[0]):
            layer.set_weights([rng.normal(0, 0.1, w[0].shape).astype("float32")] + w[1:])
    spec = default_spec(name, (32, 32, 3), names, "scenes:digits")
    save_model(model, d / "start.keras", spec.replace(head=get_entry(name).head(model)))
    r = run_cli("train", d / "start.keras", "--data", "scenes:digits", "--epochs", "1", "--batch-size", "64", "--qat",
                "--lr", "1e-5", "--max-train-samples", "640", "-o", d / "q.keras", "--json")  # the varied maps kept
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["task"] == "detection" and summary["qat"]["ranges"] >= 20
    r = run_cli("convert", d / "q.keras", "--quant", "int8", "--calibration", "scenes:digits", "--num-calibration",
                "32", "-o", d / "q.tflite", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return d, summary, json.loads(r.stdout)


def test_a_detector_s_simulation_is_its_int8_model(detector):
    """Every output of a detector (heat map, sizes, offsets) as its int8 model gives it, to within a step."""
    from edgecnn.data import load_split

    from edgecnn.train import qat

    d, summary, report = detector
    assert report["ops_in_float"] == [] and report["delegate"]["partitions"] == 1
    model, spec = load_model(d / "q.keras")
    sim, _ = qat.simulate(model, spec, None, False, read_keras_qat(d / "q.keras"))
    assert sim.output_names == model.output_names and len(model.output_names) >= 2  # the losses' keys, in order
    want, got, scales = _sim_and_int8(d, report, load_split("scenes:digits", "test").images[:24])
    assert len(want) == len(got) >= 2
    for w, g, step in zip(want, got, scales):
        assert w.shape == g.shape and w.shape[0] == 24 and np.ptp(g) > 0  # maps, not nothing: values differ
        # 20-30 int8 ops deep, a tie rounded differently early can grow: measured 3 steps at one of 768 values
        _within_a_step(w, g, step, most=4.0)


def test_a_segmenter_trains_through_the_simulation_and_is_its_int8_model(tmp_path):
    """LR-ASPP (MobileNetV3-Small, minimalistic: convs, depthwise, ReLU, the pooled branch's sigmoid gate, a multiply,
    an add, bilinear resizes) fine-tuned through the simulation with its pixel-wise loss, converted with its learned
    ranges: one XNNPACK partition, and its logits as the int8 model gives them, to within a step."""
    import deploy_models

    from edgecnn.data import load_split
    from edgecnn.train import qat

    start = deploy_models.trained_keras(tmp_path, "lraspp_mobilenet_v3_small", "scenes:digits", epochs=1,
                                        input_size=64, knobs={"alpha": 0.35, "minimalistic": True},
                                        max_train_samples=512)  # test_segmentation_e2e's float model
    r = run_cli("train", start, "--data", "scenes:digits", "--epochs", "1", "--batch-size", "32", "--qat", "--lr",
                "1e-5", "--max-train-samples", "128", "-o", tmp_path / "q.keras", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["task"] == "segmentation" and summary["qat"]["ranges"] >= 20 and summary["test_miou"] is not None
    r = run_cli("convert", tmp_path / "q.keras", "--quant", "int8", "--calibration", "scenes:digits",
                "--num-calibration", "32", "-o", tmp_path / "q.tflite", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["ops_in_float"] == [] and report["delegate"]["partitions"] == 1
    assert report["calibration"]["qat"]["unmatched_ranges"] == []
    model, spec = load_model(tmp_path / "q.keras")
    assert qat.simulate(model, spec, None, False, read_keras_qat(tmp_path / "q.keras"))[0].output_names == ["logits"]
    (want,), (got,), (step,) = _sim_and_int8(tmp_path, report, load_split("scenes:digits", "test").images[:16])
    assert want.shape == got.shape == (16, 64, 64, 11) and np.ptp(got) > 0  # logits of every class, not nothing
    assert len(np.unique(got.argmax(-1))) >= 2  # class maps of more than one class
    _within_a_step(want, got, step, most=4.0)


def test_the_learned_ranges_are_the_ones_in_the_tflite(lenet):
    from ai_edge_litert.interpreter import Interpreter

    d, summary, report = lenet
    assert summary["qat"]["ranges"] == 7 and summary["qat"]["weights"] == "per-channel"
    learned = read_keras_qat(d / "q.keras")
    qat = report["calibration"]["qat"]
    assert qat["learned_tensors"] >= 7 and qat["unmatched_ranges"] == []
    it = Interpreter(model_path=str(d / "q.tflite"))
    scales = [t["quantization"][0] for t in it.get_tensor_details() if t["dtype"] == np.int8 and t["quantization"][0]]
    trained = [row for row in learned["ranges"] if not row["fixed"]]  # the input's and softmax's are set, not learned
    assert len(trained) == 5
    for row in trained:
        want = (row["max"] - row["min"]) / 255.0
        assert any(abs(s - want) <= 1e-6 * want for s in scales), (row, sorted(scales))


def test_a_qat_run_from_a_fixed_seed_is_reproducible(lenet, tmp_path):
    d, summary, _ = lenet
    again = _train(tmp_path / "q.keras", "lenet5")
    assert again["loss_last_epoch"] == summary["loss_last_epoch"]
    assert read_keras_qat(tmp_path / "q.keras") == read_keras_qat(d / "q.keras")
    a, _ = load_model(d / "q.keras")
    b, _ = load_model(tmp_path / "q.keras")
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) > 0
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """A MobileNetV3-Small (batch norm folded into every conv, residual adds, hard swish, and squeeze-excite gates
    whose hard sigmoid is written as raw ops, `x + 3.0` and `* (1 / 6)`, which no layer name owns in the converted
    graph) through one QAT epoch, and the same float weights without the ranges, both converted."""
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build

    d = tmp_path_factory.mktemp("qat_v3")
    save_model(build("mobilenet_v3_small", (32, 32, 1), 10, alpha=0.75), d / "start.keras",
               default_spec("mobilenet_v3_small", (32, 32, 1), [str(i) for i in range(10)], "digits"))
    _train(d / "q.keras", d / "start.keras")
    with zipfile.ZipFile(d / "q.keras") as zf:
        assert QAT_ENTRY in zf.namelist()
    model, spec = load_model(d / "q.keras")
    save_model(model, d / "float.keras", spec)
    return d, _convert(d / "q.keras", d / "q.tflite"), _convert(d / "float.keras", d / "ptq.tflite")


def test_the_qat_int8_graph_is_the_post_training_one(mobilenet):
    _, qat, ptq = mobilenet
    assert qat["op_histogram"] == ptq["op_histogram"] and qat["op_histogram"].get("ADD", 0) >= 5
    assert qat["ops_in_float"] == ptq["ops_in_float"] == []
    passes = [[(r["pass"], r["count"], r["applied"]) for r in rep["rewrites"] or []] for rep in (qat, ptq)]
    assert passes[0] == passes[1]


def test_raw_ops_get_their_learned_ranges_by_value(mobilenet):
    from ai_edge_litert.interpreter import Interpreter

    d, qat, _ = mobilenet
    rep = qat["calibration"]["qat"]
    assert rep["learned_tensors"] >= 80, rep
    assert rep["by_value"] >= 9, rep  # the squeeze-excite gates' hard sigmoids: raw ops
    it = Interpreter(model_path=str(d / "q.tflite"))
    scales = [t["quantization"][0] for t in it.get_tensor_details() if t["dtype"] == np.int8 and t["quantization"][0]]
    learned = read_keras_qat(d / "q.keras")
    raw = [row for row in learned["ranges"] if any(n.startswith(("add", "multiply")) for n in row["layers"])
           and not row["fixed"]]
    assert len(raw) >= 9
    for row in raw:
        want = (row["max"] - row["min"]) / 255.0
        assert any(abs(s - want) <= 1e-6 * want for s in scales), row


def test_a_qat_model_keeps_its_ranges_and_granularity(mobilenet, tmp_path):
    d, _, _ = mobilenet
    for extra, message in ((["--bias-correction"], "trained with --qat: drop --bias-correction"),
                           (["--per-tensor"], "for per-channel weights: convert it without --per-tensor"),
                           (["--calibration-method", "mse"], "drop --calibration-method mse")):
        r = run_cli_in_process("convert", d / "q.keras", "--quant", "int8", "--calibration", "digits",
                               "--num-calibration", "8", "-o", tmp_path / "x.tflite", *extra)
        assert_one_line_error(r, message)
        assert not (tmp_path / "x.tflite").exists()


def test_what_qat_cannot_simulate_is_one_line(tmp_path):
    import keras

    inp = keras.Input((8, 8, 1))
    x = keras.layers.SeparableConv2D(4, 3, name="sep")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))
    path = tmp_path / "sep.keras"
    save_model(model, path, PreprocessSpec(8, 8, 1, labels=tuple("0123456789")))
    out = tmp_path / "x.keras"
    r = run_cli_in_process("train", path, "--data", "digits", "--epochs", "1", "--qat", "-o", out)
    assert_one_line_error(r, "--qat cannot simulate layer 'sep' (SeparableConv2D)")
    r = run_cli_in_process("train", "lenet5", "--data", "digits", "--epochs", "1", "--per-tensor", "-o", out)
    assert_one_line_error(r, "--per-tensor goes with --qat")
    r = run_cli_in_process("train", "mobilenet_v2", "--data", "digits", "--epochs", "1", "--qat", "-o", out)
    assert_one_line_error(r, "--qat fine-tunes a trained model", "train it in float first")
    inp = keras.Input((8, 8, 1))
    shared = keras.layers.Conv2D(1, 3, padding="same", name="twice")
    x = shared(shared(inp))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))
    save_model(model, path, PreprocessSpec(8, 8, 1, labels=tuple("0123456789")))
    r = run_cli_in_process("train", path, "--data", "digits", "--epochs", "1", "--qat", "-o", out)
    assert_one_line_error(r, "--qat cannot simulate layer 'twice': it is called 2 times")
    assert not out.exists()
    from edgecnn import tasks
    from edgecnn.errors import EdgecnnError
    from edgecnn.train.trainer import TrainConfig, _check_qat

    untrained = type("NoQat", (type(tasks.get("segmentation")),), {"qat": False, "name": "no-qat"})()
    with pytest.raises(EdgecnnError, match="--qat trains classification, detection, segmentation models for now, "
                       "not no-qat"):  # a task the table does not mark: refused before the model is looked at
        _check_qat(TrainConfig("seg.keras", qat=True), [None], None, None, untrained)


def test_a_recipe_puts_qat_rows_beside_the_post_training_ones(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ndata: digits\nmodels:\n"
                      "  - {name: lenet5, input_size: 16, epochs: 1, qat: {epochs: 1}}\n"
                      "quant: [float32, int8]\ndevices: [local-cpu]\nbench_runs: 5\neval_samples: 100\n")
    p = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout)["rows"]
    assert [(r["model"], r["precision"], r["qat"]) for r in rows] == [
        ("lenet5", "float32", False), ("lenet5", "int8", False), ("lenet5-qat", "int8", True)]
    ptq, qat = rows[1], rows[2]
    assert qat["float_value"] == ptq["float_value"]  # both measured against the one float model
    assert qat["value"] > 0 and qat["bench_status"] == "ok" and qat["agreement"] is not None
    assert read_keras_qat(tmp_path / "run" / "lenet5-qat.keras") is not None
    assert "train lenet5-qat" in p.stderr and (tmp_path / "run" / "report.html").exists()


def test_a_damaged_range_file_is_one_line(lenet, tmp_path):
    d = lenet[0]
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(d / "q.keras") as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, json.dumps({"ranges": [{"layers": ["c1"]}]}) if name == QAT_ENTRY else src.read(name))
    r = run_cli_in_process("convert", bad, "--quant", "int8", "--calibration", "digits", "-o", tmp_path / "x.tflite")
    assert_one_line_error(r, f"{bad}: {QAT_ENTRY} range 0 needs layers, min and max")
    assert not (tmp_path / "x.tflite").exists()
