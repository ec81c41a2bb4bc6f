"""Transfer learning (edgecnn/train/transfer.py): a saved classifier of other classes gets a new head on its backbone,
the backbone stays bit-identical while the head trains, the top blocks (not their batch norm) move when fine-tuned,
the spec's scaling is carried over, and bad requests are one line. Holds on any machine: nothing asserts what a
short training reaches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli, run_cli_in_process
from edgecnn.data import PreprocessSpec
from edgecnn.modelfile import load_model, save_model
from edgecnn.train import transfer

SCALE, OFFSET = 2 / 255, -1.0  # not the default: the test sees it carried over


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A DS-CNN (batch norm in every block) of 5 made-up classes, saved with its spec; random weights and moving
    statistics set away from their initial values, so a layer that trained or re-estimated them shows it."""
    import keras

    from edgecnn.zoo import build

    keras.utils.set_random_seed(3)
    model = build("ds_cnn", (16, 16, 1), 5)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mean, var = layer.get_weights()
            layer.set_weights([g, b, rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 2, var.shape).astype("float32")])
    path = tmp_path_factory.mktemp("pretrained") / "five.keras"
    save_model(model, path, PreprocessSpec(16, 16, 1, scale=SCALE, offset=OFFSET, labels=tuple("abcde")))
    return path


def _weights(path) -> dict[str, list[np.ndarray]]:
    model, _ = load_model(path)
    return {x.name: [np.array(w) for w in x.get_weights()] for x in transfer.leaf_layers(model) if x.get_weights()}


def _train(pretrained, out, *extra):
    r = run_cli("train", pretrained, "--data", "digits", "--epochs", "1", "-o", out, "--json", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def head_only(pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("head") / "digits.keras"
    return out, _train(pretrained, out)


def test_new_classes_get_a_new_head_with_the_data_s_names_and_the_spec_s_scaling(pretrained, head_only):
    out, summary = head_only
    model, spec = load_model(out)
    assert model.output_shape == (None, 10)
    assert spec.labels == tuple("0123456789") and (spec.scale, spec.offset) == (pytest.approx(SCALE), OFFSET)
    t = summary["transfer"]
    assert t["head"] == "replaced: 5 classes -> 10 classes" and t["cut_at"].startswith("global_average_pooling2d")
    assert [p["name"] for p in summary["phases"]] == ["head"] and summary["augment"] == ["flip", "shift"]
    assert summary["phases"][0]["trainable_params"] == 64 * 10 + 10  # the new Dense only
    assert summary["phases"][0]["frozen_params"] > 0


def test_the_frozen_backbone_is_bit_identical_after_the_head_phase(pretrained, head_only):
    before, after = _weights(pretrained), _weights(head_only[0])
    shared = [name for name in before if name in after]
    assert len(shared) >= 9 and "predictions" not in shared  # the backbone's convs and batch norms; the old head gone
    for name in shared:
        for a, b in zip(before[name], after[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert after["transfer_logits"][0].shape == (64, 10)


def test_fine_tuning_moves_the_top_block_only_and_not_its_batch_norm(pretrained, tmp_path):
    import keras

    out = tmp_path / "ft.keras"
    summary = _train(pretrained, out, "--fine-tune-blocks", "1", "--fine-tune-epochs", "1")
    assert [p["name"] for p in summary["phases"]] == ["head", "fine-tune"]
    assert summary["phases"][1]["learning_rate"] == pytest.approx(1e-4)
    before, after = _weights(pretrained), _weights(out)
    model, _ = load_model(pretrained)
    units = dict(transfer.blocks(transfer.split(model, summary["transfer"]["cut_at"])[0]))
    name = list(units)[-1]  # the top block: DS-CNN's last pointwise conv (Keras numbers its name per process)
    assert summary["transfer"]["fine_tune_blocks"] == [name] and len(units) == 9
    top = units.pop(name)
    moved = [x.name for x in top if x.get_weights() and not isinstance(x, keras.layers.BatchNormalization)
             and any(not np.array_equal(a, b) for a, b in zip(before[x.name], after[x.name]))]
    assert moved == [name] and name.startswith("conv2d")
    for x in [x for x in top if isinstance(x, keras.layers.BatchNormalization)] + \
             [x for layers in units.values() for x in layers if x.get_weights()]:
        for a, b in zip(before[x.name], after[x.name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=x.name)


def test_blocks_follow_keras_applications_names():
    from edgecnn.zoo import build

    v2 = transfer.blocks(transfer.split(m := build("mobilenet_v2", (64, 64, 3), 5),
                                        transfer.find_cut(m, None, "v2").name)[0])
    assert [n for n, _ in v2][-4:] == ["block_14", "block_15", "block_16", "Conv_1"]
    assert {x.name for x in dict(v2)["block_16"]} >= {"block_16_expand", "block_16_project_BN"}
    v1 = transfer.blocks(transfer.split(m := build("mobilenet_v1", (64, 64, 3), 5),
                                        transfer.find_cut(m, None, "v1").name)[0])
    assert [n for n, _ in v1][-2:] == ["conv_12", "conv_13"]
    assert {x.name for x in dict(v1)["conv_13"]} >= {"conv_dw_13", "conv_pw_13_bn"}


def test_bad_requests_are_one_line(pretrained, tmp_path):
    out = tmp_path / "x.keras"
    for extra, message in (
            (["--fine-tune-blocks", "99"], "--fine-tune-blocks 99: the backbone has 9 blocks"),
            (["--cut-at", "nope"], "--cut-at nope: no such top-level layer"),
            (["--fine-tune-blocks", "1", "--no-freeze"], "drop --no-freeze")):
        r = run_cli_in_process("train", pretrained, "--data", "digits", "--epochs", "1", "-o", out, *extra)
        assert_one_line_error(r, message)
        assert not out.exists()


def test_a_model_with_no_feature_layer_to_cut_is_one_line(tmp_path):
    import keras

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Reshape((64,))(inp)
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    path = tmp_path / "dense.keras"
    save_model(model, path, PreprocessSpec(8, 8, 1, labels=("a", "b", "c")))
    r = run_cli_in_process("train", path, "--data", "digits", "--epochs", "1", "-o", tmp_path / "x.keras")
    assert_one_line_error(r, "no feature layer to cut at")


@pytest.fixture(scope="module")
def v2_classifier(tmp_path_factory):
    """A MobileNetV2 (alpha 0.35) classifier saved as a user's file would be: its backbone nested as one layer."""
    import keras

    from edgecnn.zoo import build

    keras.utils.set_random_seed(5)
    base = build("mobilenet_v2", (96, 96, 3), 3, alpha=0.35)
    inp = keras.Input((96, 96, 3))
    features = keras.Model(base.input, base.get_layer("out_relu").output, name="mobilenetv2_0.35_96")
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features(inp)))
    path = tmp_path_factory.mktemp("v2") / "v2.keras"
    save_model(keras.Model(inp, out), path, PreprocessSpec(96, 96, 3, labels=("a", "b", "c")))
    return path


def test_a_detector_takes_its_backbone_from_a_classifier_file(v2_classifier):
    from edgecnn.zoo import build

    source = _weights(v2_classifier)
    detector = build("centernet_mobilenet_v2", (128, 128, 3), 10, alpha=0.35, backbone_weights=str(v2_classifier))
    got = {x.name: x.get_weights() for x in transfer.leaf_layers(detector) if x.get_weights()}
    shared = sorted(set(source) & set(got))
    assert len(shared) >= 50 and {"Conv1", "block_6_project"} <= set(shared)  # the backbone up to the cut
    for name in shared:
        for a, b in zip(source[name], got[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    fresh = build("centernet_mobilenet_v2", (128, 128, 3), 10, alpha=0.35)
    assert not np.array_equal(fresh.get_layer("Conv1").get_weights()[0], got["Conv1"][0])


def test_a_grayscale_model_takes_an_rgb_backbone_with_its_first_kernel_summed(v2_classifier):
    """One input channel (Fashion-MNIST) under an RGB backbone: the first convolution's kernel summed over R, G and B
    gives on a gray image the features the RGB backbone gives on that image repeated in three channels."""
    import keras

    from edgecnn.zoo import build

    rgb = build("mobilenet_v2", (96, 96, 3), 3, alpha=0.35, backbone_weights=str(v2_classifier))
    gray = build("mobilenet_v2", (96, 96, 1), 3, alpha=0.35, backbone_weights=str(v2_classifier))
    assert gray.get_layer("Conv1").get_weights()[0].shape == (3, 3, 1, 16)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 1)).astype(np.float32)
    feats = [keras.Model(m.input, m.get_layer("block_3_expand_relu").output).predict(v, verbose=0)
             for m, v in ((gray, x), (rgb, np.repeat(x, 3, axis=-1)))]
    peak = np.abs(feats[1]).max()
    assert feats[0].shape == (2, 24, 24, 48) and peak > 0  # (an untrained backbone's deep features all but vanish)
    np.testing.assert_allclose(feats[0], feats[1], rtol=0, atol=1e-5 * peak)
    fresh = build("mobilenet_v2", (96, 96, 1), 3, alpha=0.35)
    assert not np.allclose(fresh.get_layer("Conv1").get_weights()[0], gray.get_layer("Conv1").get_weights()[0])


def test_backbone_weights_of_another_width_or_no_file_are_one_line(v2_classifier, tmp_path):
    out = tmp_path / "d.keras"
    r = run_cli_in_process("build", "centernet_mobilenet_v2", "-o", out, "--input-shape", "128x128x3",
                           "-O", "alpha=0.5",
                "-O", f"backbone_weights={v2_classifier}")
    assert_one_line_error(r, "has weights", "same family and width")
    r = run_cli_in_process("build", "centernet_mobilenet_v2", "-o", out,
                           "-O", f"backbone_weights={tmp_path / 'none.keras'}")
    assert_one_line_error(r, "backbone weights file does not exist")
    assert not out.exists()


def test_a_recipe_starts_from_a_saved_model_and_its_content_keys_the_cache(pretrained, tmp_path):
    """`start_from`: the model file is copied into the run (an input like any other: an unchanged file is a cache
    hit, a changed one trains again),
    the new head has the recipe data's classes, and the run converts and benches it as usual."""
    import shutil

    start = tmp_path / "mine.keras"
    shutil.copy(pretrained, start)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndata: digits\nmodels:\n  - {{name: five-to-ten, start_from: {start}, epochs: 1}}\n"
                      "quant: [int8]\ndevices: [local-cpu]\nbench_runs: 5\neval_samples: 100\n")
    p = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout)["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [("five-to-ten", "int8")] and rows[0]["p50_ms"] > 0
    model, spec = load_model(tmp_path / "run" / "five-to-ten.keras")
    assert model.output_shape == (None, 10) and spec.labels == tuple("0123456789")
    p2 = run_cli("run", recipe, "-o", tmp_path / "run")
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert "(cached)" in next(ln for ln in p2.stderr.splitlines() if "train five-to-ten" in ln)
    other, spec0 = load_model(start)  # the same model with other weights: the train step is not a cache hit
    conv = next(x for x in other.layers if x.name.startswith("conv2d"))  # Keras numbers names per process
    conv.set_weights([w + 0.01 for w in conv.get_weights()])
    save_model(other, start, spec0)
    p3 = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p3.returncode == 0, p3.stderr[-2000:]
    train_line = next(ln for ln in p3.stderr.splitlines() if "train five-to-ten" in ln)
    assert "(cached)" not in train_line


def test_a_recipe_s_missing_start_from_is_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndata: digits\nmodels:\n  - {{name: x, start_from: {tmp_path / 'no.h5'}}}\n")
    assert_one_line_error(run_cli("run", recipe, "-o", tmp_path / "run"), "models[0]", "no such model file")


def test_a_detector_with_a_classifier_s_backbone_trains_whole(v2_classifier, tmp_path):
    """No frozen phase and no classifier augmentation for a detector: its pretrained backbone trains with its head."""
    from test_detection_data import _yolo

    out = tmp_path / "det.keras"
    r = run_cli("train", "centernet_mobilenet_v2", "--data", _yolo(tmp_path), "--input-size", "64", "--epochs", "1",
                "-O", "alpha=0.35", "-O", f"backbone_weights={v2_classifier}", "-o", out)  # the text output
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert f"  backbone_weights: {v2_classifier}" in lines and out.is_file()
    phase = next(ln for ln in lines if ln.startswith("  phase "))
    assert phase.startswith("  phase all: 1 epochs at lr 0.001, ") and " 0 frozen" not in phase


@pytest.mark.parametrize("name, kind", [("centernet_mobilenet_v2", "detector"),
                                        ("deeplabv3_mobilenet_v2", "segmenter"), ("mobilenet_v2", "classifier")])
def test_only_a_classifier_head_freezes_its_pretrained_backbone_by_default(name, kind):
    """A segmenter has global poolings inside (image pooling, squeeze-excite): a cut there would freeze half of it."""
    from edgecnn.train.trainer import TrainConfig, _phases
    from edgecnn.zoo import build

    model = build(name, (96, 96, 3), 4)
    plan, moved = _phases(TrainConfig(name), model, {"from": name, "weights": "imagenet"})
    if kind == "classifier":
        assert [p.name for p in plan] == ["head"] and moved["cut_at"].startswith("global_average_pooling2d")
    else:
        assert plan == [None] and moved == {"from": name, "weights": "imagenet"}
