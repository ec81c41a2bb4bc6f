"""The error on the graph: `compare --explorer` writes Model Explorer node data (relative RMSE, precision, XNNPACK
placement) keyed by the quantized graph's tensor names; `explore` serves it, or says how to install Model Explorer."""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

import pytest

from conftest import require
from helpers import REPO, assert_one_line_error, run_cli, run_cli_in_process
from test_compare import own, repo_calibration  # noqa: F401  (the tiny Keras CNN and its int8 .tflite; photos)

HAS_EXPLORER = importlib.util.find_spec("model_explorer") is not None


@pytest.fixture(scope="module")
def written(own, tmp_path_factory):  # noqa: F811
    """`compare --explorer` run once: the JSON report and the three node-data documents."""
    d = tmp_path_factory.mktemp("explorer")
    p = run_cli_in_process("compare", own["keras"], own["int8"], "--data", "photos", "--limit", 8, "--layers", 1000,
                           "--explorer", d / "ov.json", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    docs = {kind: json.loads((d / name).read_text()) for kind, name in
            (("error", "ov.json"), ("precision", "ov.precision.json"), ("delegate", "ov.delegate.json"))}
    return report, docs, d


def _graph_ops(path):
    from edgecnn.tflite.reader import TfliteInfo

    return TfliteInfo(path.read_bytes()).ops


def test_every_compared_layer_is_on_the_graph(written, own):  # noqa: F811
    report, docs, d = written
    compared = {w["tensor"]: w["relative_rmse"] for w in report["worst_layers"]}  # --layers 1000: all of them
    assert report["layers_compared"] >= 3 and len(compared) == report["layers_compared"]
    results = docs["error"]["results"]
    assert set(results) == set(compared) and report["explorer"]["layers"] == len(compared)
    for tensor, entry in results.items():
        assert math.isfinite(entry["value"]) and entry["value"] > 0
        assert entry["value"] == pytest.approx(compared[tensor], rel=1e-3)
    ops = _graph_ops(own["int8"])
    op_outputs = {op.output_names[0]: op.op for op in ops}
    assert set(results) <= set(op_outputs)  # names of the quantized graph's op outputs
    assert set(docs["precision"]["results"]) == set(docs["delegate"]["results"]) == set(op_outputs)
    precision = {k: v["value"] for k, v in docs["precision"]["results"].items()}
    assert precision[ops[0].output_names[0]] == "int8" and set(precision.values()) <= {"int8", "int16", "float32",
                                                                                      "int32", "uint8"}
    placement = {k: v["value"] for k, v in docs["delegate"]["results"].items()}
    assert set(placement.values()) <= {"XNNPACK", "outside XNNPACK"} and "XNNPACK" in placement.values()
    delegate = report["explorer"]["delegate"]
    assert delegate["ops_delegated"] == sum(v == "XNNPACK" for v in placement.values())
    assert report["explorer"]["files"]["error"] == str(d / "ov.json")


def test_human_output_names_the_files_and_keeps_the_table_short(own, tmp_path):  # noqa: F811
    p = run_cli_in_process("compare", own["keras"], own["int8"], "--data", "photos", "--limit", 4, "--layers", 1,
                           "--explorer", tmp_path / "e.json")
    assert p.returncode == 0, p.stderr
    assert "worst layers" in p.stdout and f"--overlay {tmp_path / 'e.json'}" in p.stdout
    assert sorted(f.name for f in tmp_path.iterdir()) == ["e.delegate.json", "e.json", "e.precision.json"]


def test_accepted_by_model_explorer(written, own):  # noqa: F811
    """Model Explorer's own classes and .tflite adapter: every key names a node's output, every document parses."""
    require(HAS_EXPLORER, "ai-edge-model-explorer not installed (pip install 'edgecnn[explorer]')")
    import dacite
    from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter
    from model_explorer.node_data_builder import GraphNodeData
    from model_explorer.utils import convert_adapter_response

    _, docs, _ = written
    graphs = convert_adapter_response(BuiltinTfliteFlatbufferAdapter().convert(str(own["int8"]), {}))
    nodes = [n for c in graphs["graphCollections"] for g in c["graphs"] for n in g["nodes"]]
    names = {a["value"] for n in nodes for out in n["outputsMetadata"] for a in out["attrs"]
             if a["key"] == "tensor_name"}
    for kind, doc in docs.items():
        assert doc["results"] and "results" not in doc["results"]  # how the web app tells a single GraphNodeData
        assert set(doc["results"]) <= names, kind
        numeric = kind == "error"  # labels are strings: the web app's other value type
        built = dacite.from_dict(GraphNodeData, doc, dacite.Config(strict=True, check_types=numeric))
        assert json.loads(built.to_json_string()) == doc


def test_the_same_json_without_model_explorer(monkeypatch):
    from edgecnn.report.explorer import _document

    args = ("m", {"t:0": {"value": 0.5}}, [{"value": 1.0, "bgColor": "#d73027"}])
    with_it = json.loads(_document(*args))
    monkeypatch.setitem(sys.modules, "model_explorer.node_data_builder", None)  # import fails: not installed
    without = json.loads(_document(*args))
    assert without["results"] == {"t:0": {"value": 0.5}} and without["name"] == "m"
    if HAS_EXPLORER:
        assert {k: v for k, v in with_it.items() if k in without} == without


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_explore_serves_the_model_and_its_overlays(written, own):  # noqa: F811
    require(HAS_EXPLORER, "ai-edge-model-explorer not installed (pip install 'edgecnn[explorer]')")
    _, docs, d = written
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn.cli", "explore", str(own["int8"]), "--overlay",
                             str(d / "ov.json"), "--no-browser", "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(300, proc.kill)  # a server that never prints its address must not hang the suite
    watchdog.start()
    try:
        url = next((ln.strip() for ln in proc.stdout if ln.startswith(f"http://localhost:{port}/")), None)
        assert url, "no server address printed"
        data = json.loads(urllib.parse.unquote(url.split("?data=", 1)[1]))
        assert [m["url"] for m in data["models"]] == [str(own["int8"].resolve())]
        assert data["nodeData"] == [str(d / f) for f in ("ov.precision.json", "ov.delegate.json", "ov.json")]
        with urllib.request.urlopen(f"http://localhost:{port}/check_health", timeout=30) as r:
            assert r.read() == b"model_explorer_ok"
        q = urllib.parse.quote(data["nodeData"][-1])
        with urllib.request.urlopen(f"http://localhost:{port}/api/v1/read_text_file?path={q}", timeout=30) as r:
            assert json.loads(json.loads(r.read())["content"]) == docs["error"]
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGINT)  # Model Explorer's own stop
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_explore_says_how_to_install_it(written, own, tmp_path):  # noqa: F811
    (tmp_path / "model_explorer.py").write_text("raise ImportError('simulated: not installed')\n")
    _, _, d = written
    p = run_cli("explore", own["int8"], "--overlay", d / "ov.json", "--no-browser",
                env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert_one_line_error(p, "Model Explorer is not installed", "pip install 'edgecnn[explorer]'")


def test_explore_bad_input(own, tmp_path):  # noqa: F811
    not_json, not_node_data = tmp_path / "a.json", tmp_path / "b.json"
    not_json.write_text("{")
    not_node_data.write_text('{"layers": []}')
    assert_one_line_error(run_cli_in_process("explore", tmp_path / "none.tflite"), "none.tflite: no such model file")
    assert_one_line_error(run_cli_in_process("explore", own["int8"], "--overlay", tmp_path / "c.json"),
                          "c.json: no such node-data file")
    assert_one_line_error(run_cli_in_process("explore", own["int8"], "--overlay", not_json), "a.json: not a JSON file")
    assert_one_line_error(run_cli_in_process("explore", own["int8"], "--overlay", not_node_data),
                          "b.json: not Model Explorer node data")
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    assert_one_line_error(run_cli_in_process("explore", tmp_path / "bad.tflite"), "bad.tflite")


def test_bad_explorer_path_fails_before_comparing(own, tmp_path):  # noqa: F811
    (tmp_path / "dir.json").mkdir()
    for path, needle in ((tmp_path / "no" / "e.json", "output directory"), (tmp_path / "e.txt", "a .json file"),
                         (tmp_path / "dir.json", "is a directory")):
        p = run_cli_in_process("compare", own["keras"], own["int8"], "--data", "photos", "--explorer", path)
        assert_one_line_error(p, str(path), needle)
    assert [f.name for f in tmp_path.iterdir()] == ["dir.json"]


def test_a_failed_write_leaves_nothing_half_written(own, tmp_path, monkeypatch):  # noqa: F811
    from pathlib import Path

    from edgecnn.errors import EdgecnnError
    from edgecnn.report.explorer import write_overlays

    (tmp_path / "ov.json").write_text("previous")
    real, calls = Path.write_text, []

    def third_fails(self, *a, **k):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", third_fails)
    with pytest.raises(EdgecnnError, match=r"ov\.json: cannot write Model Explorer node data \(No space left"):
        write_overlays(tmp_path / "ov.json", own["int8"], [{"tensor": "t", "relative_rmse": 0.1}])
    monkeypatch.undo()
    assert len(calls) == 3 and [f.name for f in tmp_path.iterdir()] == ["ov.json"]
    assert (tmp_path / "ov.json").read_text() == "previous"
