"""Every zoo entry builds, runs one batch, and has the right output shape; MAC/param counts match the papers."""

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.zoo import build, get_entry, list_models
from edgecnn.zoo.counting import summarize

REQUIRED = {"lenet5", "alexnet_small", "vgg_small", "resnet8", "resnet50", "mobilenet_v1", "mobilenet_v2",
            "mobilenet_v3_small", "mobilenet_v3_large", "squeezenet", "ds_cnn"}


def test_registry_holds_the_primer():
    assert REQUIRED <= set(list_models())
    assert list_models("mobilenet*") == ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name", sorted(REQUIRED))
@pytest.mark.parametrize("channels", [1, 3])
def test_builds_and_runs_one_batch(name, channels):
    entry = get_entry(name)
    side = max(entry.min_size, 32)
    model = build(name, (side, side, channels), num_classes=7)
    x = np.random.default_rng(0).uniform(-1, 1, (2, side, side, channels)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert y.shape == (2, 7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-4)  # softmax heads


@pytest.mark.parametrize("name,kw", [("mobilenet_v1", {"alpha": 0.25}), ("mobilenet_v2", {"alpha": 0.35}),
                                     ("mobilenet_v3_small", {"alpha": 0.75, "minimalistic": True}),
                                     ("mobilenet_v3_large", {"alpha": 0.5})])
def test_mobilenet_knobs_and_non_square_input(name, kw):
    model = build(name, (48, 64, 1), num_classes=3, **kw)
    assert model.output_shape == (None, 3)
    full = summarize(build(name, (48, 64, 1), num_classes=3))["params"]
    assert summarize(model)["params"] < full


# (paper MACs, paper params) at 224x224x3, 1000 classes
PAPER = {"mobilenet_v1": (569e6, 4.2e6), "mobilenet_v2": (300e6, 3.4e6), "mobilenet_v3_large": (219e6, 5.4e6),
         "mobilenet_v3_small": (56e6, 2.5e6)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_macs_and_params_match_papers(name):
    """Counted from the built keras.applications graphs; all within 5% of the papers.

    Measured: V1 568.7M MACs / 4.254M params (paper 569M / 4.2M: +1.3% params, the BN statistics that the paper's
    count leaves out); V2 300.8M / 3.539M (300M / 3.4M: +4.1% params, again BN moving statistics, 34k of them,
    plus keras' 1280-wide last conv); V3-Large 216.6M / 5.507M (219M / 5.4M: -1.1% MACs because we count only
    conv/dense MACs, not the squeeze-excite multiplies and hard-swish, which the paper's tally includes; +2.0%
    params from BN); V3-Small 56.5M / 2.555M (56M / 2.5M: +0.9% / +2.2%).
    """
    macs, params = PAPER[name]
    got = summarize(build(name, (224, 224, 3), 1000))
    assert abs(got["macs"] - macs) / macs < 0.05, got
    assert abs(got["params"] - params) / params < 0.05, got


def test_lenet5_counts_by_hand():
    # c1: 32*32*6*25; c3: 12*12*16*(25*6); c5: 576*120; f6: 120*84; out: 84*10
    expected = 32 * 32 * 6 * 25 + 12 * 12 * 16 * 150 + 576 * 120 + 120 * 84 + 84 * 10
    assert summarize(build("lenet5", (32, 32, 1), 10))["macs"] == expected


def test_bad_inputs():
    with pytest.raises(EdgecnnError, match="did you mean"):
        build("mobilenetv2")
    with pytest.raises(EdgecnnError, match="too small"):
        build("mobilenet_v3_small", (24, 24, 3))
    with pytest.raises(EdgecnnError, match="input shape"):
        build("lenet5", (32, 32, 2))
    with pytest.raises(EdgecnnError, match="weights file does not exist"):
        build("mobilenet_v2", (32, 32, 3), 10, weights="/nonexistent.weights.h5")
    with pytest.raises(EdgecnnError, match="weights file does not exist"):
        build("deeplabv3_mobilenet_v2", (32, 32, 3), 10, weights="/nonexistent.weights.h5")


@pytest.mark.parametrize("name", ["mobilenet_v2", "lraspp_mobilenet_v3_small"])
def test_local_weights_file(tmp_path, name):
    src = build(name, (32, 32, 3), 4, alpha=0.35)
    path = tmp_path / "w.weights.h5"
    src.save_weights(path)
    model = build(name, (32, 32, 3), 4, alpha=0.35, weights=str(path))
    for a, b in zip(src.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _wrong_type(default):
    """A value of the wrong type for a knob whose default is `default`, and what the one line must say."""
    if isinstance(default, (list, tuple)):
        return default[0], "takes a list, e.g."
    if isinstance(default, bool):
        return 3, "takes true or false"
    if isinstance(default, (int, float)):
        return [1, 2], "takes a whole number" if isinstance(default, int) else "takes a number"
    if isinstance(default, str):
        return 1, "takes a word"
    return 1, "takes a name or a file path"


@pytest.mark.parametrize("name", list_models())
def test_every_knob_checks_its_type_against_its_default(name):
    """Every builder option of every zoo model, given a value of another type: one `EdgecnnError` naming the
    option (checked before anything is built), never a TypeError from inside the builder."""
    knobs = get_entry(name).knobs()
    assert knobs, name
    for key, default in knobs.items():
        bad, needle = _wrong_type(default)
        with pytest.raises(EdgecnnError, match=f"`{key}` {needle}"):
            build(name, num_classes=3, **{key: bad})


def test_list_knob_given_a_scalar_says_how_to_write_a_list():
    with pytest.raises(EdgecnnError, match=r"`strides` takes a list, e.g. strides=8,16; got 8$"):
        build("ssdlite_mobilenet_v2", num_classes=3, strides=8)
    with pytest.raises(EdgecnnError, match=r"`aspect_ratios` takes a list, e.g. aspect_ratios=1,0.5,2; got 2"):
        build("ssdlite_mobilenet_v2", num_classes=3, aspect_ratios=2)
