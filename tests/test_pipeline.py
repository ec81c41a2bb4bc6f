"""`edgecnn run`: the main job on a recipe, cached re-runs, bad recipes."""

import json

from helpers import assert_one_line_error, run_cli, run_cli_in_process


def test_run_then_cached(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ndata: digits\nmodels:\n  - {name: lenet5, input_size: 16, epochs: 2}\n"
                      "quant: [float32, int8]\ndevices: [local-cpu]\nbench_runs: 20\n")
    p = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    rows = out["rows"]
    assert [(r["model"], r["precision"], r["device"]) for r in rows] == [("lenet5", "float32", "local-cpu"),
                                                                          ("lenet5", "int8", "local-cpu")]
    f32, i8 = rows
    assert f32["top1"] > 0.3 and f32["bench_status"] == "ok" and f32["p50_ms"] > 0
    assert i8["size_ratio"] < 0.45 and abs(i8["drop_points"]) < 5 and i8["agreement"] > 0.9
    assert 1 < f32["peak_rss_mb"] < 400  # the runner's own memory, not the TF-loaded parent's
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "results.sqlite").exists()
    p2 = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p2.returncode == 0, p2.stderr
    assert "(cached)" in p2.stderr and "train lenet5" in p2.stderr
    assert json.loads(p2.stdout)["rows"][0]["p50_ms"] == f32["p50_ms"]  # a cached step is not re-measured
    assert "[1/6] train lenet5" in p2.stderr and "[6/6] report" in p2.stderr and (tmp_path / "run" / "report.html").exists()


def test_device_down_is_reported_and_the_rest_is_made(tmp_path):
    """A board nobody answers: its rows say failed, the other device's rows and the report are still made."""
    down = tmp_path / "down.yaml"
    down.write_text("name: down-board\nkind: ssh\nssh: {host: 127.0.0.1, port: 1, user: pi, connect_timeout: 3}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndata: digits\nmodels:\n  - {{name: lenet5, input_size: 16, epochs: 1}}\n"
                      f"quant: [int8]\ndevices: [local-cpu, {down}]\nbench_runs: 10\n")
    p = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["device"]: r for r in json.loads(p.stdout)["rows"]}
    assert rows["local-cpu"]["bench_status"] == "ok"
    assert rows[str(down)]["bench_status"] == "failed" and rows[str(down)]["bench_error"]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "failed" in html and "local-cpu" in html


def test_bad_recipes(tmp_path):
    r = tmp_path / "bad.yaml"
    r.write_text("name: t\ndata: digits\nmodel: [lenet5]\n")
    assert_one_line_error(run_cli_in_process("run", r), "unknown field 'model' (did you mean 'models'?)")
    r.write_text("name: t\ndata: digits\nmodels: [lenet7]\n")
    assert_one_line_error(run_cli_in_process("run", r), "unknown model 'lenet7'")
    r.write_text("name: [unclosed\n")
    assert_one_line_error(run_cli_in_process("run", r), "bad YAML")
    assert_one_line_error(run_cli_in_process("run", tmp_path / "none.yaml"), "does not exist")
    r.write_text("name: t\ndata: digits\nmodels: [lenet5]\ndevices: [raspberry-pi-9]\n")
    assert_one_line_error(run_cli_in_process("run", r, "-o", tmp_path / "out"), "raspberry-pi-9")
    r.write_text("name: t\ndata: digits\nmodels: [lenet5]\nquant: [int4]\n")
    assert_one_line_error(run_cli_in_process("run", r, "-o", tmp_path / "out"), "int4")
    assert not (tmp_path / "out").exists()  # nothing started
