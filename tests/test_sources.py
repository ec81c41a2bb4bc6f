"""The one data-source resolver: every source string, unlabeled flat folders, .npz files that cannot be read,
calibration recipes on their schema, and calibration that uses what there is (with notes in the report)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli_in_process
from edgecnn.data.calibration import REPO_CALIBRATION, calibration_samples
from edgecnn.data.sources import load_split, resolve
from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError

PHOTOS = REPO_CALIBRATION / "photos"


@pytest.fixture(autouse=True)
def repo_calibration(monkeypatch, tmp_path):
    """The shipped calibration sets, and a results database that is the test's own."""
    monkeypatch.delenv("EDGECNN_CALIBRATION_DIR", raising=False)
    monkeypatch.setenv("EDGECNN_DB", str(tmp_path / "results.sqlite"))


@pytest.fixture
def flat8(tmp_path) -> Path:
    """Eight real photos (RGB) in a flat folder, with a provenance note beside them."""
    d = tmp_path / "eight"
    d.mkdir()
    for p in sorted(PHOTOS.glob("*.jpg"))[:8]:
        shutil.copy(p, d / p.name)
    (d / "PROVENANCE.md").write_text("copied from calibration/photos\n")
    return d


@pytest.fixture(scope="module")
def spec_tflite(tmp_path_factory) -> Path:
    """A tiny int8 model (8x8x1, 3 classes) carrying an edgecnn spec, so raw images can be fed to it."""
    from tflite_models import quantized_model

    from edgecnn.tflite.metadata import embed

    path = tmp_path_factory.mktemp("src") / "spec_int8.tflite"
    path.write_bytes(embed(quantized_model("int8"), PreprocessSpec(8, 8, 1, labels=("a", "b", "c"))))
    return path


def test_every_source_string_resolves(flat8, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.arange(4) % 2)
    (tmp_path / "cls" / "a").mkdir(parents=True)
    shutil.copy(flat8 / "astronaut_0.jpg", tmp_path / "cls" / "a")
    kinds = {"digits": "digits", "fashion-mnist": "fashion-mnist", f"fashion-mnist:{tmp_path}": "fashion-mnist",
             str(tmp_path / "d.npz"): "npz", str(tmp_path / "cls"): "folder", str(flat8): "flat",
             "calibration:photos": "flat", "photos": "flat", "recipe:digits-200": "recipe"}
    assert {s: resolve(s).kind for s in kinds} == kinds
    for src in ("calibration:photos", "photos"):  # was "empty image folder (expected one sub-folder per class)"
        ds = load_split(src, "test")
        assert len(ds) == 128 and not ds.labeled and ds.class_names == () and set(ds.labels) == {-1}
    ds = load_split("recipe:digits-200", "test")  # a recipe fixes its own split: digits' train split
    train = load_split("digits", "train")
    assert len(ds) == 200 and ds.labeled and any((train.images == ds.images[0]).all(axis=(1, 2)))


def test_flat_folder_files(flat8):
    ds = load_split(str(flat8))
    assert len(ds) == 8 and ds.channels == 3 and not ds.labeled  # PROVENANCE.md is a note, not an image
    (flat8 / "data.bin").write_bytes(b"\0" * 10)
    with pytest.raises(EdgecnnError, match=r"1 non-image file\(s\).*data\.bin"):
        load_split(str(flat8))
    (flat8 / "data.bin").unlink()
    (flat8 / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(EdgecnnError, match=r"1 unreadable image\(s\).*broken\.jpg"):
        load_split(str(flat8))
    assert len(load_split(str(flat8), skip_bad=True).skipped) == 1


def test_unlabeled_source_where_labels_are_needed(flat8, tmp_path, spec_tflite):
    msg = f"{flat8}: a flat folder of unlabeled images; train needs labels (one sub-folder per class)"
    assert_one_line_error(run_cli_in_process("train", "lenet5", "--data", flat8, "-o", tmp_path / "m.keras"), msg)
    assert_one_line_error(run_cli_in_process("eval", spec_tflite, "--data", "calibration:photos"),
                          "calibration:photos: a flat folder of unlabeled images; eval needs labels")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((4, 8, 8), np.uint8))
    assert not load_split(str(tmp_path / "nolabels.npz")).labeled  # was: every label 0, one class "0"
    with pytest.raises(EdgecnnError, match=r"nolabels\.npz: an \.npz without labels; compare needs labels"):
        load_split(str(tmp_path / "nolabels.npz"), "test", needs_labels="compare")


def test_bench_inputs_from_an_unlabeled_source(spec_tflite):
    p = run_cli_in_process("bench", spec_tflite, "--data", "calibration:photos", "--runs", 3, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "ok" and doc["input_source"] == "samples"
    assert doc["accuracy"] == {"n": 128, "top1": None, "task": "classification", "metric": "top-1", "value": None}
    assert len(doc["outputs_top1"]) == 128
    assert "128 unlabeled images" in doc["settings"]["data"]


def _damaged(tmp_path) -> dict[str, Path]:
    np.savez(tmp_path / "good.npz", x=np.zeros((50, 8, 8), np.uint8), y=np.arange(50) % 3)
    good = (tmp_path / "good.npz").read_bytes()
    np.save(tmp_path / "a.npy", np.zeros(3))
    files = {"truncated": good[: len(good) // 2], "empty": b"", "text": b"hello\n" * 20,
             "npy": (tmp_path / "a.npy").read_bytes(), "bad-crc": good[:200] + bytes([good[200] ^ 0xFF]) + good[201:]}
    for name, data in files.items():
        (tmp_path / f"{name}.npz").write_bytes(data)
    return {name: tmp_path / f"{name}.npz" for name in files}


def test_damaged_npz_is_one_line_everywhere(tmp_path, spec_tflite):
    from tflite_models import quantized_model

    from edgecnn.bench.run import prepare_samples

    files = _damaged(tmp_path)
    foreign = tmp_path / "foreign.tflite"  # no spec: bench reads the .npz as the model's preprocessed input
    foreign.write_bytes(quantized_model("int8"))
    for path in files.values():  # BadZipFile, EOFError, TypeError (a .npy) and a CRC error leaked before
        with pytest.raises(EdgecnnError, match=rf"{path.name}: not (a readable|an) \.npz file"):
            load_split(str(path))
        with pytest.raises(EdgecnnError, match=rf"{path.name}: not (a readable|an) \.npz file"):
            prepare_samples(str(foreign), str(path), tmp_path, 10)
    assert_one_line_error(run_cli_in_process("train", "lenet5", "--data", files["truncated"], "-o",
                                             tmp_path / "m.keras"), "truncated.npz: not a readable .npz file")
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.parametrize("text,line", [
    ('data: digits\nsamples: "ten"\n', "field 'samples' must be int, got 'ten'"),
    ("data: digits\nsamples: 10\nsed: 1\n", "unknown field 'sed' (did you mean 'seed'?)"),
    ("samples: 10\n", "missing field 'data'"),
    ("data: digits\nsamples: 0\n", "field 'samples' must be at least 1, got 0"),
    ("data: digits\nsplit: val\nsamples: 10\n", "field 'split' must be one of train, test, all, got 'val'"),
])
def test_calibration_recipe_schema(tmp_path, monkeypatch, text, line):
    (tmp_path / "recipes").mkdir()
    path = tmp_path / "recipes" / "r.yaml"
    path.write_text(text)
    monkeypatch.setenv("EDGECNN_CALIBRATION_DIR", str(tmp_path))
    with pytest.raises(EdgecnnError) as exc:
        load_split("recipe:r")
    assert str(exc.value) == f"{path}: {line}"


def test_calibration_uses_what_there_is_and_converts_colour(flat8):
    x, desc = calibration_samples(str(flat8), PreprocessSpec(16, 16, 1), 100)
    assert x.shape == (8, 16, 16, 1) and desc["samples"] == 8
    assert desc["notes"] == [
        f"calibration set '{flat8}' has 8 images, fewer than the 100 asked for: using all 8 (100-500 is the usual "
        "advice)",
        f"calibration set '{flat8}' has colour (RGB) images: converted to the model's 1 channel with the ITU-R 601 "
        "luma weights (as PIL's 'L')"]
    x3, desc = calibration_samples("digits", PreprocessSpec(8, 8, 3), 20)
    assert x3.shape == (20, 8, 8, 3) and np.array_equal(x3[..., 0], x3[..., 2])
    assert desc["notes"] == ["calibration set 'digits' has grayscale images: repeated to the model's 3 channels"]
    assert calibration_samples("digits", PreprocessSpec(8, 8, 1), 20)[1]["notes"] == []


def test_convert_grayscale_model_with_eight_colour_photos(flat8, tmp_path):
    """A 1-channel model calibrated with 8 RGB photos (default --num-calibration 100) converts; both notes are in
    the --json report and in the printed one."""
    import keras

    from edgecnn.modelfile import save_model

    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = tmp_path / "gray.keras"
    save_model(keras.Model(inp, out), model, PreprocessSpec(16, 16, 1, labels=("a", "b", "c")))
    p = run_cli_in_process("convert", model, "-o", tmp_path / "a.tflite", "--quant", "int8", "--calibration", flat8,
                           "--json")
    assert p.returncode == 0, p.stderr
    cal = json.loads(p.stdout)["calibration"]
    assert cal["samples"] == 8 and len(cal["notes"]) == 2
    assert "has 8 images, fewer than the 100 asked for: using all 8" in cal["notes"][0]
    assert "converted to the model's 1 channel" in cal["notes"][1]
    p = run_cli_in_process("convert", model, "-o", tmp_path / "b.tflite", "--quant", "int8", "--calibration", "photos")
    assert p.returncode == 0, p.stderr
    out = " ".join(p.stdout.split())
    assert "note: calibration set 'photos' has colour (RGB) images: converted to the model's 1 channel" in out
    assert "fewer than" not in out  # 128 photos >= 100
