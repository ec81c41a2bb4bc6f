"""The three data sources (digits, Fashion-MNIST IDX, image folders) and the preprocessing spec."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require
from edgecnn.data import PreprocessSpec, load_split
from edgecnn.data.idx import DEBIAN_DIR, FILES
from edgecnn.data.transform import convert_channels, resize_batch
from edgecnn.errors import EdgecnnError


def test_digits_split_is_fixed_and_disjoint():
    tr, te = load_split("digits", "train"), load_split("digits", "test")
    assert len(tr) + len(te) == 1797 and len(te) == 359
    assert tr.images.dtype == np.uint8 and tr.images.max() == 255
    assert set(np.unique(te.labels)) == set(range(10))
    again = load_split("digits", "test")
    np.testing.assert_array_equal(te.images, again.images)


def _write_idx(path: Path, arr: np.ndarray):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    """A small IDX folder made from real digits (upsampled to 28x28), in Fashion-MNIST's file layout."""
    d = load_split("digits", "all")
    imgs = np.clip(resize_batch(d.images, 28, 28)[..., 0], 0, 255).astype(np.uint8)
    _write_idx(tmp_path / (FILES["train"][0] + ".gz"), imgs[:100])
    _write_idx(tmp_path / (FILES["train"][1] + ".gz"), d.labels[:100])
    _write_idx(tmp_path / (FILES["test"][0] + ".gz"), imgs[100:140])
    _write_idx(tmp_path / (FILES["test"][1] + ".gz"), d.labels[100:140])
    return tmp_path


def test_idx_folder(idx_dir):
    ds = load_split(str(idx_dir), "test")
    assert ds.images.shape == (40, 28, 28) and len(ds.labels) == 40
    ds2 = load_split(f"fashion-mnist:{idx_dir}", "train")
    assert len(ds2) == 100 and ds2.class_names[0] == "T-shirt/top"


def test_idx_truncated(idx_dir):
    p = idx_dir / (FILES["test"][0] + ".gz")
    raw = gzip.decompress(p.read_bytes())
    with gzip.open(p, "wb") as fh:
        fh.write(raw[:-100])
    with pytest.raises(EdgecnnError, match="truncated IDX"):
        load_split(str(idx_dir), "test")


def test_fashion_mnist_debian_package():
    require((DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
            "Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
    tr, te = load_split("fashion-mnist", "train"), load_split("fashion-mnist", "test")
    assert tr.images.shape == (60000, 28, 28) and te.images.shape == (10000, 28, 28)
    assert np.bincount(te.labels).tolist() == [1000] * 10


def test_fashion_mnist_missing_says_how(monkeypatch, tmp_path):
    import edgecnn.data.idx as idx

    monkeypatch.setattr(idx, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setattr(idx, "KERAS_CACHE", tmp_path / "none2")
    monkeypatch.delenv("EDGECNN_FASHION_MNIST", raising=False)
    with pytest.raises(EdgecnnError, match="apt-get install dataset-fashion-mnist"):
        load_split("fashion-mnist")


def _photos():
    from sklearn.datasets import load_sample_images

    return load_sample_images().images  # china.jpg, flower.jpg: real photos bundled with scikit-learn


@pytest.fixture
def image_folder(tmp_path):
    """Real photo crops saved in every awkward format a user's folder holds."""
    china, flower = _photos()
    root = tmp_path / "imgs"
    for cls, photo in (("china", china), ("flower", flower)):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            crop = photo[i * 40: i * 40 + 64, i * 50: i * 50 + 96]
            im = Image.fromarray(crop)
            im.save(root / cls / f"rgb{i}.jpg")
        im = Image.fromarray(photo[:64, :64])
        im.convert("L").save(root / cls / "gray.png")
        im.convert("P", palette=Image.Palette.ADAPTIVE).save(root / cls / "palette.png")
        im.convert("RGBA").save(root / cls / "alpha.png")
        g16 = (np.asarray(im.convert("L"), dtype=np.uint16) * 257)
        Image.fromarray(g16).save(root / cls / "deep16.png")
        # EXIF orientation 6 (rotate 90 CW to display): stored 64x32, shown 32x64
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(photo[:32, :64]).save(root / cls / "exif.jpg", exif=exif.tobytes())
    return root


def test_image_folder_all_modes(image_folder):
    ds = load_split(str(image_folder), "all")
    assert ds.class_names == ("china", "flower") and len(ds) == 20
    by_name = {}
    files = sorted((image_folder / "china").iterdir())
    for f, im in zip(files, ds.images[:10]):
        by_name[f.name] = im
    assert by_name["gray.png"].ndim == 2 and by_name["deep16.png"].ndim == 2
    assert by_name["deep16.png"].dtype == np.uint8
    np.testing.assert_array_equal(by_name["deep16.png"], by_name["gray.png"])  # 16-bit scaled back exactly
    assert by_name["alpha.png"].shape == (64, 64, 3)
    assert by_name["palette.png"].shape == (64, 64, 3)
    assert by_name["exif.jpg"].shape == (64, 32, 3)  # EXIF rotation applied
    spec = PreprocessSpec(32, 32, 3)
    x = spec.apply(ds.images)
    assert x.shape == (20, 32, 32, 3) and 0 <= x.min() and x.max() <= 1


def test_image_folder_splits(image_folder):
    tr, te = load_split(str(image_folder), "train"), load_split(str(image_folder), "test")
    assert len(tr) + len(te) == 20 and len(te) == 4


def test_corrupt_and_non_image_files(image_folder):
    (image_folder / "china" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(EdgecnnError, match=r"1 unreadable image\(s\).*broken\.jpg"):
        load_split(str(image_folder))
    ds = load_split(str(image_folder), "all", skip_bad=True)
    assert len(ds) == 20 and len(ds.skipped) == 1
    (image_folder / "flower" / "notes.txt").write_text("hello")
    with pytest.raises(EdgecnnError, match=r"non-image file\(s\).*notes\.txt"):
        load_split(str(image_folder))


def test_empty_folder_and_empty_class(tmp_path):
    with pytest.raises(EdgecnnError, match="empty image folder"):
        load_split(str(tmp_path))
    (tmp_path / "a").mkdir()
    with pytest.raises(EdgecnnError, match="class folder has no images"):
        load_split(str(tmp_path))


def test_missing_path_suggests():
    with pytest.raises(EdgecnnError, match="did you mean 'digits'"):
        load_split("digitz")


def test_resize_matches_tensorflow():
    import tensorflow as tf

    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.uint8)
    for h, w in ((32, 32), (96, 64), (14, 10)):
        ours = resize_batch(x, h, w)
        ref = tf.image.resize(x.astype(np.float32), (h, w), "bilinear").numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_spec_apply_scales_a_copy_and_leaves_its_input_alone():
    """apply scales geometry's new array in place: no input is touched or shared, the values are the formula's."""
    rng = np.random.default_rng(0)
    big = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    frozen = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    frozen.setflags(write=False)
    cases = {  # (input, spec channels); float32 at the model's size: resize and channels have nothing to do
        "uint8 NHWC": (rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8), 3),
        "float32 NHWC": (rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32), 3),
        "float32 NHW, gray model": (rng.uniform(0, 255, (2, 8, 8)).astype(np.float32), 1),
        "float32 NHW1, gray model": (rng.uniform(0, 255, (2, 8, 8, 1)).astype(np.float32), 1),
        "float32 gray + alpha, gray model": (rng.uniform(0, 255, (2, 8, 8, 2)).astype(np.float32), 1),
        "float32 RGBA": (rng.uniform(0, 255, (2, 8, 8, 4)).astype(np.float32), 3),
        "a view with strides": (big[:, ::2, ::2], 3),
        "read-only": (frozen, 3),
        "a list": (list(rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)), 3),
    }
    for name, (images, channels) in cases.items():
        spec = PreprocessSpec(8, 8, channels, 2 / 255, -1.0)
        before = np.array(images).copy()
        x = spec.apply(images)
        np.testing.assert_array_equal(np.array(images), before, err_msg=name)
        assert not any(np.shares_memory(x, a) for a in (images if isinstance(images, list) else [images])), name
        want = convert_channels(before.astype(np.float32) if before.ndim == 4 else before[..., None], channels)
        np.testing.assert_array_equal(x, want * np.float32(2 / 255) + np.float32(-1.0), err_msg=name)
        assert x.dtype == np.float32 and x.shape == (2, 8, 8, channels) and x.flags.c_contiguous, name
        assert np.ptp(x) > 0, name


def test_spec_round_trip_and_unknown_field():
    spec = PreprocessSpec(32, 32, 3, 2 / 255, -1.0, labels=("a", "b"), dataset="x")
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    with pytest.raises(EdgecnnError, match="spec: unknown field .mean."):
        PreprocessSpec.from_dict({**spec.to_dict(), "mean": 3})
    x = spec.apply(np.full((1, 8, 8), 255, np.uint8))
    assert x.shape == (1, 32, 32, 3) and np.allclose(x, 1.0)
