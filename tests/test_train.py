"""Training on real data reduces loss, is reproducible, saves the spec, and writes atomically."""

import zipfile

import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli_in_process
from edgecnn.errors import EdgecnnError
from edgecnn.modelfile import load_model, read_keras_spec
from edgecnn.train.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "lenet5.keras"
    result = train(TrainConfig("lenet5", "digits", epochs=4, input_size=32, seed=1), out, progress=False)
    return out, result


def test_training_reduces_loss_on_digits(trained):
    out, r = trained
    assert r["loss_last_epoch"] < 0.5 * r["loss_first_epoch"]
    assert r["test_top1"] > 0.8  # 10 classes: chance is 0.1
    assert r["test_samples"] == 359


def test_spec_and_labels_saved_inside(trained):
    out, _ = trained
    spec = read_keras_spec(out)
    assert spec.input_shape == (32, 32, 1) and spec.labels == tuple("0123456789") and spec.dataset == "digits"
    model, spec2 = load_model(out)
    assert spec2 == spec and model.output_shape == (None, 10)


def test_reproducible_with_seed(tmp_path, trained):
    _, r1 = trained
    r2 = train(TrainConfig("lenet5", "digits", epochs=4, input_size=32, seed=1), tmp_path / "b.keras",
               progress=False)
    assert r1["loss_last_epoch"] == pytest.approx(r2["loss_last_epoch"], rel=1e-6)
    assert r1["test_top1"] == r2["test_top1"]


def test_fine_tune_saved_model(tmp_path, trained):
    out, r = trained
    r2 = train(TrainConfig(str(out), "digits", epochs=1, seed=1), tmp_path / "ft.keras", progress=False)
    assert r2["loss_first_epoch"] < r["loss_first_epoch"]  # starts from trained weights


@pytest.mark.slow
def test_mobilenet_v2_on_fashion_mnist_subset(tmp_path):
    from conftest import require
    from edgecnn.data.idx import DEBIAN_DIR

    require(DEBIAN_DIR.exists(), "Debian package dataset-fashion-mnist not installed")
    r = train(TrainConfig("mobilenet_v2", "fashion-mnist", epochs=2, input_size=32, knobs={"alpha": 0.35},
                          max_train_samples=3000), tmp_path / "m.keras", progress=False)
    assert r["loss_last_epoch"] < r["loss_first_epoch"]
    assert read_keras_spec(tmp_path / "m.keras").offset == -1.0  # MobileNets take [-1, 1]


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    from edgecnn import modelfile

    out = tmp_path / "m.keras"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(modelfile.zipfile, "ZipFile", boom)
    from edgecnn.zoo import build

    with pytest.raises(KeyboardInterrupt):
        modelfile.save_model(build("lenet5"), out, modelfile.PreprocessSpec(32, 32, 1))
    assert list(tmp_path.iterdir()) == []


def test_cli_train_bad_inputs(tmp_path):
    assert_one_line_error(run_cli_in_process("train", "lenet5", "--data", tmp_path / "missing", "-o",
                                             tmp_path / "m.keras"), "data path does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli_in_process("train", "lenet5", "--data", tmp_path / "empty", "-o",
                                             tmp_path / "m.keras"), "empty image folder")
    assert_one_line_error(run_cli_in_process("train", "lenet5", "-o", tmp_path / "m.h5"), "must end in .keras")
    assert not any(p.suffix == ".keras" for p in tmp_path.iterdir())


def test_load_model_bad_files(tmp_path):
    rnd = tmp_path / "random.keras"
    rnd.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(EdgecnnError, match="not a model file"):
        load_model(rnd)
    trunc = tmp_path / "trunc.keras"
    with zipfile.ZipFile(trunc, "w") as zf:
        zf.writestr("config.json", "{}")
    trunc.write_bytes(trunc.read_bytes()[:40])
    with pytest.raises(EdgecnnError, match="trunc.keras"):
        load_model(trunc)
    with pytest.raises(EdgecnnError, match="does not exist"):
        load_model(tmp_path / "nope.keras")
