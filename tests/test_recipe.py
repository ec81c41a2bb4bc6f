"""Recipe schema (`edgecnn.recipe`): wrong types, bad values and typos are one line naming the file and field."""

import pytest
import yaml

from edgecnn.errors import EdgecnnError
from edgecnn.recipe import RECIPES_DIR, load_recipe, recipe_from_dict
from helpers import assert_one_line_error, run_cli_in_process

BASE = "name: t\ndata: digits\nmodels: [lenet5]\n"


def _load(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_recipe(str(path))


@pytest.mark.parametrize("text, line", [
    ("name: t\ndata: digits\nmodels:\n  - {name: lenet5, epochs: ten}\n",
     "field 'models[0].epochs' must be int, got 'ten'"),
    ("name: t\ndata: digits\nmodels:\n  - lenet5\n  - {name: resnet8, input_size: -3}\n",
     "field 'models[1].input_size' must be at least 1, got -3"),
    (BASE + "seed: x\n", "field 'seed' must be int, got 'x'"),
    (BASE + "quant: int8\n", "field 'quant' must be a list, got 'int8'"),
    (BASE + "quant: [float32, int9]\n",
     "field 'quant[1]' must be one of float32, float16, dynamic, int8, int16x8, got 'int9'"),
    (BASE + "devices: []\n", "field 'devices' must have at least 1 item(s), got []"),
    (BASE + "bench_runs: 0\n", "field 'bench_runs' must be at least 1, got 0"),
    (BASE + "eval_samples: 1.5\n", "field 'eval_samples' must be int, got 1.5"),
    (BASE + "calibration: 3\n", "field 'calibration' must be str, got 3"),
    (BASE + "sead: 1\n", "unknown field 'sead' (did you mean 'seed'?)"),
    ("name: t\ndata: digits\nmodels:\n  - {name: lenet5, qat: {epoch: 2}}\n",
     "unknown field 'models[0].qat.epoch' (did you mean 'models[0].qat.epochs'?)"),
    ("name: t\ndata: digits\nquant: [float32]\nmodels:\n  - {name: lenet5, qat: true}\n",
     "models[0].qat: quantization-aware training is for int8; add int8 to quant ..."),
    ("name: t\ndata: digits\nmodels:\n  - {name: lenet5, epoch: 3}\n",
     "unknown field 'models[0].epoch' (did you mean 'models[0].epochs'?)"),
    ("name: t\ndata: digits\nmodels: []\n", "field 'models' must have at least 1 item(s), got []"),
    ("name: t\ndata: digits\nmodels: lenet5\n", "field 'models' must be a list, got 'lenet5'"),
    ("name: t\ndata: digits\nmodels:\n  - {name: lenet5, learning_rate: fast}\n",
     "field 'models[0].learning_rate' must be a number, got 'fast'"),
    ("name: t\ndata: digits\nmodels:\n  - {name: lenet5, learning_rate: -1e-3}\n",
     "field 'models[0].learning_rate' must be positive, got -0.001"),
    ("name: t\ndata: digits\nmodels:\n  - {name: lenet5, options: [a]}\n",
     "field 'models[0].options' must be a mapping, got ['a']"),
    ("name: t\nmodels: [lenet5]\n", "missing field 'data'"),
    ("name: t\ndata: digits\nmodels: [lenet7]\n", "models[0]: unknown model 'lenet7'; did you mean ..."),
    ("name: t\ndata: digits\nmodels: [lenet5, lenet5]\n",
     "two models share the label ['lenet5', 'lenet5']; give them distinct 'label's"),
])
def test_bad_recipe_is_one_line_naming_file_and_field(tmp_path, text, line):
    with pytest.raises(EdgecnnError) as exc:
        _load(tmp_path, text)
    msg, expected = str(exc.value), f"{tmp_path / 'r.yaml'}: {line}"
    assert msg.startswith(expected.removesuffix("...")) if line.endswith("...") else msg == expected, msg
    assert "\n" not in msg


def test_short_form_defaults_and_yaml_exponent_learning_rate(tmp_path):
    """`- lenet5` is a model with the defaults; `1e-3` (a string to PyYAML) is read as the number it means."""
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"  # the YAML 1.1 quirk this guards against
    r = _load(tmp_path, "name: t\ndata: digits\nmodels:\n  - lenet5\n"
                        "  - {name: resnet8, learning_rate: 1e-3, options: {width: 1}}\n"
                        "  - {name: lenet5, label: slow, learning_rate: 5E-4, epochs: 3}\n")
    a, b, c = r.models
    assert (a.name, a.key, a.epochs, a.input_size, a.learning_rate, a.options) == ("lenet5", "lenet5", 10, None,
                                                                                    1e-3, {})
    assert b.learning_rate == 0.001 and type(b.learning_rate) is float and b.key == "resnet8_width1"
    assert c.learning_rate == 5e-4 and c.key == "slow" and c.epochs == 3
    assert r.quant == ("float32", "int8") and r.devices == ("local-cpu",) and r.calibration is None


def test_lists_are_kept_as_tuples_and_numbers_only_for_floats():
    r = recipe_from_dict({"name": "t", "data": "digits", "models": [{"name": "lenet5", "learning_rate": 1}],
                          "quant": ["int8"], "devices": ["a", "b"], "eval_samples": 100}, "x")
    assert r.quant == ("int8",) and r.devices == ("a", "b") and r.eval_samples == 100
    assert r.models[0].learning_rate == 1.0 and isinstance(r.models[0].learning_rate, float)
    with pytest.raises(EdgecnnError, match="field 'seed' must be int, got '3'"):  # only float fields parse text
        recipe_from_dict({"name": "t", "data": "digits", "models": ["lenet5"], "seed": "3"}, "x")


def test_shipped_recipes_load():
    shipped = sorted(RECIPES_DIR.glob("*.yaml"))
    assert {p.stem for p in shipped} >= {"quick", "fashion-compare"}
    for path in shipped:
        r = load_recipe(str(path))
        assert r.name == path.stem and r.models
    fc = load_recipe("fashion-compare")
    assert fc.quant == ("float32", "float16", "dynamic", "int8") and fc.max_train_samples == 30000
    assert [m.key for m in fc.models][:2] == ["lenet5", "mobilenet_v1_0.25"]
    assert fc.models[3].options == {"alpha": 0.5, "minimalistic": True}
    assert load_recipe(None).models[0].epochs == 20


def test_cli_bad_recipe_one_line_exit_1_nothing_written(tmp_path):
    r = tmp_path / "bad.yaml"
    r.write_text(BASE + "quant: int8\n")
    p = run_cli_in_process("run", r, "-o", tmp_path / "out", cwd=tmp_path)
    assert p.returncode == 1
    assert_one_line_error(p, f"{r}: field 'quant' must be a list, got 'int8'")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.yaml"]


def test_typo_is_named_before_the_field_it_leaves_missing(tmp_path):
    with pytest.raises(EdgecnnError, match=r"unknown field 'model' \(did you mean 'models'\?\)$"):
        _load(tmp_path, "name: t\ndata: digits\nmodel: [lenet5]\n")
