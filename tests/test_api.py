"""The Python API (`edgecnn.api`): the same documents as the CLI's `--json` (the CLI is a layer over it), typed
results, the same one-line errors as `EdgecnnError`, user warnings as `EdgecnnWarning`, and no TensorFlow import
until a function needs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import detector_models
from helpers import REPO, assert_one_line_error, run_cli

# keys whose values differ between two runs of the same step (time, where the file went, the run's id)
_VOLATILE = {"output", "wall_seconds", "timings_s", "seconds", "run_id", "created_at", "timing", "peak_rss_mb",
             "model", "quant_model", "float_model", "phases", "explorer"}


def _same(api_doc: dict, cli_doc: dict) -> None:
    """Both documents have the same keys and, outside the volatile ones, the same values (at least one compared)."""
    assert api_doc.keys() == cli_doc.keys(), set(api_doc) ^ set(cli_doc)
    stable = [k for k in api_doc if k not in _VOLATILE]
    assert stable, "nothing compared"
    for k in stable:
        assert json.loads(json.dumps(api_doc[k], default=str)) == json.loads(json.dumps(cli_doc[k], default=str)), k


def test_importing_the_api_imports_no_tensorflow():
    code = ("import sys, edgecnn.api as api; assert callable(api.convert); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'ai_edge_litert') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_a_result_is_typed_read_only_and_its_document():
    from pydantic import ValidationError

    from edgecnn.api import EvalResult

    doc = {"model": "m.tflite", "data": "digits", "task": "classification", "metric": "top-1", "value": 1, "n": 5,
           "top1": 0.8, "top5": 1.0}
    r = EvalResult.of(doc)
    assert isinstance(r.value, float) and r.value == 1.0 and r.top5 == 1.0 and r["n"] == 5
    assert r.to_dict() == doc and r.to_dict() is not doc
    with pytest.raises(ValidationError):
        r.value = 0.5
    partial = EvalResult.of({k: v for k, v in doc.items() if k != "value"} | {"agreement": None})
    assert partial.value is None and partial.agreement is None  # a stage's document never fails to be a result


@pytest.mark.slow
def test_the_api_gives_the_cli_s_documents(tmp_path, db_path):
    """train -> convert (int8) -> evaluate -> compare -> bench through the API and through the CLI: the same keys,
    the same values (sizes, ops, accuracies, agreement), from real steps that found something."""
    from edgecnn import api

    train_args = dict(data="digits", epochs=1, input_size=32, max_train_samples=300, seed=0)
    t = api.train("lenet5", tmp_path / "api.keras", **train_args)
    cli = run_cli("train", "lenet5", "-o", tmp_path / "cli.keras", "--data", "digits", "--epochs", "1",
                  "--input-size", "32", "--max-train-samples", "300", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    _same(t.to_dict(), json.loads(cli.stdout))
    assert t.task == "classification" and t.train_samples + t.val_samples == 300 and t.params > 0 and t.test_samples > 0

    keras = tmp_path / "api.keras"
    q = api.convert(keras, tmp_path / "api_int8.tflite", quant="int8", calibration="digits", num_calibration=32)
    cli = run_cli("convert", keras, "-o", tmp_path / "cli_int8.tflite", "--quant", "int8", "--calibration", "digits",
                  "--num-calibration", "32", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    _same(q.to_dict(), json.loads(cli.stdout))
    assert q.size_bytes > 0 and q.op_histogram.get("CONV_2D", 0) >= 2 and q.delegate["partitions"] == 1

    e = api.evaluate(tmp_path / "api_int8.tflite", "digits", limit=200)
    cli = run_cli("eval", tmp_path / "api_int8.tflite", "--data", "digits", "--limit", "200", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    (cli_row,) = json.loads(cli.stdout)
    _same(e.to_dict(), cli_row)
    assert e.n == 200 and e.metric == "top-1" and 0 < e.value == e.top1 <= 1

    c = api.compare(keras, tmp_path / "api_int8.tflite", "digits", limit=100, layers=3)
    cli = run_cli("compare", keras, tmp_path / "api_int8.tflite", "--data", "digits", "--limit", "100", "--layers",
                  "3", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    _same(c.to_dict(), json.loads(cli.stdout))
    assert c.labeled and c.n == 100 and len(c.worst_layers) == 3 and 0 < c.agreement <= 1

    b = api.bench(tmp_path / "api_int8.tflite", runs=5, warmup=1, db=db_path)
    cli = run_cli("bench", tmp_path / "api_int8.tflite", "--runs", "5", "--warmup", "1", "--db", db_path, "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    cli_doc = json.loads(cli.stdout)
    assert b.to_dict().keys() == cli_doc.keys()
    assert b.status == "ok" and b.p50_ms > 0 and b.run_id != cli_doc["run_id"]
    assert b.model["sha256"] == cli_doc["model"]["sha256"] and b.device["name"] == "local-cpu"

    # the commands after bench: the store, the Edge TPU check, the C export, the report, the profiles (the MCU
    # check: tests/test_mcu.py)
    int8 = tmp_path / "api_int8.tflite"
    h = api.history(model=str(int8), db=db_path)
    cli = run_cli("history", "--model", int8, "--db", db_path, "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert h == json.loads(cli.stdout) and len(h) == 2  # the API's bench and the CLI's, nothing else
    assert {r["id"] for r in h} == {b.run_id, cli_doc["run_id"]}

    pf = api.edgetpu_check(int8)
    cli = run_cli("edgetpu-check", int8, "--json")
    _same(pf.to_dict(), json.loads(cli.stdout))
    assert pf.ops_total > 0 and pf.ops_edgetpu == pf.ops_total and pf.maps_fully and cli.returncode == 0

    x = api.export_c(int8, tmp_path / "api_model", name="lenet")
    cli = run_cli("export-c", int8, "-o", tmp_path / "cli_model", "--name", "lenet", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    _same({k: v for k, v in x.to_dict().items() if k not in ("source", "header")},
          {k: v for k, v in json.loads(cli.stdout).items() if k not in ("source", "header")})
    assert x.bytes == int8.stat().st_size and x.identifier == "lenet" and (tmp_path / "api_model.c").stat().st_size

    r = api.report(output=tmp_path / "api_report.html", db=db_path)
    cli = run_cli("report", "--db", db_path, "-o", tmp_path / "cli_report.html", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    _same(r.to_dict(), json.loads(cli.stdout))
    assert r.rows >= 1 and (tmp_path / "api_report.html").stat().st_size > 0

    d = api.devices()
    cli = run_cli("devices", "list", "--json")
    assert d == json.loads(cli.stdout) and "local-cpu" in {row["name"] for row in d}


def test_bad_input_raises_the_line_the_cli_prints(tmp_path):
    from edgecnn import api
    from edgecnn.errors import EdgecnnError

    missing = tmp_path / "missing.keras"
    with pytest.raises(EdgecnnError) as exc:
        api.convert(missing, tmp_path / "out.tflite", quant="int8", calibration="digits")
    line = assert_one_line_error(run_cli("convert", missing, "-o", tmp_path / "out.tflite", "--quant", "int8",
                                         "--calibration", "digits"))
    assert line == f"edgecnn: error: {exc.value}" and "missing.keras" in line
    assert not (tmp_path / "out.tflite").exists()
    with pytest.raises(EdgecnnError, match="target 'gpu'"):
        api.convert(missing, tmp_path / "out.tflite", target="gpu")


def test_a_user_warning_is_an_edgecnn_warning(tmp_path):
    """A foreign float .tflite concatenating boxes and scores: `EdgecnnWarning` in Python, one line in the CLI."""
    from edgecnn import api
    from edgecnn.errors import EdgecnnWarning

    model = detector_models.yolo_like(tmp_path / "yolo.tflite", concatenated=True)
    with pytest.warns(EdgecnnWarning, match="yolo.tflite: output .*unbounded"):
        api.convert(model, tmp_path / "yolo_f32.tflite", quant="float32")
    assert (tmp_path / "yolo_f32.tflite").stat().st_size > 0
