"""`edgecnn run`: the main job on a recipe, cached re-runs, bad recipes."""

import json

from helpers import assert_one_line_error, run_cli


def test_run_then_cached(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ndata: digits\nmodels:\n  - {name: lenet5, input_size: 16, epochs: 2}\n")
    p = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    row = out["rows"][0]
    assert row["model"] == "lenet5" and row["top1"] > 0.3 and not row["cached"]
    p2 = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert json.loads(p2.stdout)["rows"][0]["cached"] is True


def test_bad_recipes(tmp_path):
    r = tmp_path / "bad.yaml"
    r.write_text("name: t\ndata: digits\nmodel: [lenet5]\n")
    assert_one_line_error(run_cli("run", r), "unknown key(s) model")
    r.write_text("name: t\ndata: digits\nmodels: [lenet7]\n")
    assert_one_line_error(run_cli("run", r), "unknown model 'lenet7'")
    r.write_text("name: [unclosed\n")
    assert_one_line_error(run_cli("run", r), "not valid YAML")
    assert_one_line_error(run_cli("run", tmp_path / "none.yaml"), "does not exist")
