"""The board runner as boards run it: `python runner.py MODEL ...` in a subprocess, one JSON document out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import numpy as np
import pytest

from edgecnn.board import runner
from tflite_models import zoo_fixture

RUNNER = Path(runner.__file__)
tflite_zoo = pytest.fixture(scope="session")(zoo_fixture)

TOP_KEYS = {"schema", "status", "model", "settings", "runtime", "machine", "io", "subgraphs", "input_source",
            "timing", "delegation", "peak_rss_mb", "op_profile", "accuracy"}
STEADY_KEYS = {"n", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "wall_s"}


def run(*args, python=sys.executable, timeout=60):
    proc = subprocess.run([python, str(RUNNER), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout + proc.stderr  # exactly one JSON document
    return json.loads(lines[0]), proc.returncode


@pytest.mark.parametrize("name", ["float32", "float16", "int8", "uint8", "multi_io", "control_flow"])
def test_models_bench_with_full_schema(tflite_zoo, name):
    doc, code = run(tflite_zoo[name], "--runs", 5, "--warmup", 2)
    assert code == 0 and doc["status"] == "ok", doc
    assert TOP_KEYS <= set(doc)
    assert set(doc["timing"]["steady"]) == STEADY_KEYS and doc["timing"]["steady"]["n"] == 5
    s = doc["timing"]["steady"]
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert doc["timing"]["warmup"]["n"] == 2 and doc["timing"]["init_ms"] > 0 and doc["timing"]["first_ms"] > 0
    m = doc["model"]
    assert m["size_bytes"] == Path(tflite_zoo[name]).stat().st_size and len(m["sha256"]) == 64
    assert doc["runtime"]["name"] == "ai_edge_litert" and doc["runtime"]["version"] != "unknown"
    assert doc["machine"]["arch"] and doc["machine"]["cores"] >= 1 and doc["peak_rss_mb"] > 1
    assert doc["delegation"]["available"] and doc["delegation"]["partitions"] >= 1
    assert doc["input_source"] == "random" and "outputs_top1" not in doc


def test_foreign_model_details(tflite_zoo):
    doc, _ = run(tflite_zoo["control_flow"], "--runs", 3)
    assert doc["subgraphs"] >= 3  # main + two cond branches (+ variable init)
    outside = {o["op"] for o in doc["delegation"]["ops_outside"]}
    assert {"IF", "READ_VARIABLE", "ASSIGN_VARIABLE"} <= outside
    doc, _ = run(tflite_zoo["multi_io"], "--runs", 3)
    assert len(doc["io"]["inputs"]) == 2 and len(doc["io"]["outputs"]) == 2
    doc, _ = run(tflite_zoo["uint8"], "--runs", 3)
    assert doc["io"]["inputs"][0]["dtype"] == "uint8" and doc["io"]["inputs"][0]["scale"] > 0


def test_ops_outside_xnnpack_and_no_xnnpack(tflite_zoo):
    doc, _ = run(tflite_zoo["int8"], "--runs", 3)
    assert doc["delegation"]["partitions"] == 1
    assert {"op": "SOFTMAX", "count": 1} in doc["delegation"]["ops_outside"]  # int8 softmax stays in TFLite
    doc, _ = run(tflite_zoo["float32"], "--runs", 3)
    assert doc["delegation"]["ops_outside"] == []
    doc, _ = run(tflite_zoo["float32"], "--runs", 3, "--no-xnnpack")
    assert doc["settings"]["xnnpack"] is False and doc["delegation"]["partitions"] == 0
    assert doc["delegation"]["ops_delegated"] == 0


def test_min_secs_and_threads(tflite_zoo):
    doc, _ = run(tflite_zoo["float32"], "--runs", 1, "--min-secs", 0.3, "--threads", 2)
    s = doc["timing"]["steady"]
    assert s["wall_s"] >= 0.3 and s["n"] > 1 and doc["settings"]["threads"] == 2


def test_op_profile_reports_what_is_real(tflite_zoo):
    doc, _ = run(tflite_zoo["int8"], "--runs", 3, "--op-profile")
    prof = doc["op_profile"]
    assert prof["available"] is False and "profiler" in prof["reason"]
    assert [o["op"] for o in prof["ops"]][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert all("avg_ms" not in o for o in prof["ops"])  # no invented times


@pytest.mark.parametrize("name", ["int8", "uint8", "float16"])
def test_samples_are_quantized_with_the_models_own_parameters(tflite_zoo, tmp_path, name):
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (7, 8, 8, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    np.savez(tmp_path / "s.npz", x=x, y=y)
    doc, code = run(tflite_zoo[name], "--runs", 2, "--samples", tmp_path / "s.npz")
    assert code == 0 and doc["input_source"] == "samples"
    # the same predictions computed here by hand: q = round(x / scale) + zero_point
    it = Interpreter(model_path=str(tflite_zoo[name]))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    preds = []
    for xi in x:
        v = xi[None]
        if inp["dtype"] != np.float32:
            scale, zp = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            v = np.clip(np.round(v / scale) + zp, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], v)
        it.invoke()
        preds.append(int(np.argmax(it.get_tensor(out["index"]))))
    assert doc["outputs_top1"] == preds
    assert doc["accuracy"] == {"n": 7, "top1": round(float(np.mean(np.array(preds) == y)), 6)}


def test_samples_without_labels(tflite_zoo, tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((3, 8, 8, 1), np.float32))
    doc, _ = run(tflite_zoo["float32"], "--runs", 2, "--samples", tmp_path / "s.npz")
    assert doc["accuracy"] == {"n": 3, "top1": None} and len(doc["outputs_top1"]) == 3


def _bad_files(tmp: Path, zoo) -> dict[str, tuple[Path, str]]:
    good = Path(zoo["float32"]).read_bytes()
    (tmp / "empty.tflite").write_bytes(b"")
    (tmp / "trunc.tflite").write_bytes(good[: len(good) // 3])
    (tmp / "random.tflite").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp / "adir").mkdir()
    return {
        "missing": (tmp / "nope.tflite", "no such file"),
        "directory": (tmp / "adir", "is a directory"),
        "empty": (tmp / "empty.tflite", "file is empty"),
        "truncated": (tmp / "trunc.tflite", "truncated or corrupt"),
        "random": (tmp / "random.tflite", "not a .tflite flatbuffer"),
        "custom_op": (Path(zoo["custom_op"]), "needs custom op 'EdgecnnMissingOp'"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "random", "custom_op"])
def test_bad_models_fail_with_one_clear_error(tflite_zoo, tmp_path, case):
    path, expected = _bad_files(tmp_path, tflite_zoo)[case]
    doc, code = run(path)
    assert code == runner.EXIT_FAILED and doc["status"] == "failed"
    assert expected in doc["error"] and str(path) in doc["error"] and "\n" not in doc["error"]


@pytest.mark.parametrize("args,expected", [
    (["--threads", "0"], "--threads must be at least 1"),
    (["--threads", "-2"], "--threads must be at least 1"),
    (["--runs", "-1"], "--runs must not be negative"),
    (["--warmup", "-1"], "--warmup must not be negative"),
    (["--min-secs", "-1"], "--min-secs must not be negative"),
    (["--runs", "0"], "nothing to time"),
    (["--threads", "two"], "bad arguments"),
])
def test_bad_settings(tflite_zoo, args, expected):
    doc, code = run(tflite_zoo["float32"], *args)
    assert code == runner.EXIT_FAILED and expected in doc["error"]


def test_samples_that_do_not_fit(tflite_zoo, tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 28, 28), np.float32))
    doc, code = run(tflite_zoo["float32"], "--samples", tmp_path / "s.npz")
    assert code == runner.EXIT_FAILED and "shape (4, 28, 28)" in doc["error"] and "(1, 8, 8, 1)" in doc["error"]
    np.savez(tmp_path / "m.npz", x=np.zeros((4, 8, 8, 3), np.float32))
    doc, _ = run(tflite_zoo["multi_io"], "--samples", tmp_path / "m.npz")
    assert "single-input" in doc["error"]
    np.savez(tmp_path / "noy.npz", z=np.zeros(3))
    doc, _ = run(tflite_zoo["float32"], "--samples", tmp_path / "noy.npz")
    assert "no array 'x'" in doc["error"]


def test_ctrl_c_answers_interrupted(tflite_zoo):
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(tflite_zoo["float32"]), "--runs", "0",
                             "--min-secs", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == runner.EXIT_INTERRUPTED
    assert json.loads(out)["error"] == "interrupted"


def test_runner_imports_no_tensorflow_keras_click_or_edgecnn(tflite_zoo):
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['runner.py', {str(tflite_zoo['float32'])!r}, '--runs', '2']\n"
        "try:\n"
        f"    runpy.run_path({str(RUNNER)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'click', 'rich', 'edgecnn'))\n"
        "sys.stderr.write('FORBIDDEN=' + ','.join(bad) + '\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stdout)["status"] == "ok"
    assert "FORBIDDEN=\n" in proc.stderr


def test_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    ns = [int(v) for v in rng.integers(1_000, 5_000_000, 101)]
    s = runner.summarize(ns)
    ms = np.array(ns) / 1e6
    for p in (50, 90, 99):
        assert s[f"p{p}_ms"] == pytest.approx(np.percentile(ms, p), abs=1e-4)
    assert s["std_ms"] == pytest.approx(np.std(ms, ddof=1), abs=1e-4)


@pytest.mark.slow
def test_runner_in_a_venv_with_only_numpy_and_litert(tflite_zoo, tmp_path):
    """The board promise: a fresh venv with `pip install ai-edge-litert numpy` and the copied file is enough."""
    env_dir = tmp_path / "boardenv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "ai-edge-litert", "numpy"], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    board = tmp_path / "board"
    board.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    check = subprocess.run([str(py), "-c", "import importlib.util as u; "
                            "print([m for m in ('tensorflow', 'keras', 'click', 'edgecnn') if u.find_spec(m)])"],
                           capture_output=True, text=True, cwd=board, env=env)
    assert check.stdout.strip() == "[]"
    copied = board / "runner.py"
    copied.write_bytes(RUNNER.read_bytes())
    model = board / "m.tflite"
    model.write_bytes(Path(tflite_zoo["int8"]).read_bytes())
    np.savez(board / "s.npz", x=np.zeros((2, 8, 8, 1), np.float32), y=np.array([0, 1]))
    proc = subprocess.run([str(py), str(copied), str(model), "--runs", "5", "--samples", str(board / "s.npz")],
                          capture_output=True, text=True, timeout=120, cwd=board, env=env)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["status"] == "ok", proc.stderr
    assert doc["runtime"]["name"] == "ai_edge_litert" and doc["accuracy"]["n"] == 2


def test_external_delegate_missing_is_one_clear_error(tflite_zoo, tmp_path):
    """The Edge TPU path up to the hardware: the runner asks LiteRT to load the Edge TPU runtime; where it is
    missing the run fails with one line saying what to install. A path that cannot exist stands for the missing
    library, so the test shows this on any machine, Coral runtime installed or not."""
    lib = tmp_path / "not-installed" / "libedgetpu.so.1"
    doc, code = run(tflite_zoo["int8"], "--runs", 2, "--delegate", lib)
    assert code != 0 and doc["status"] == "failed"
    assert f"cannot load delegate {lib}" in doc["error"] and "libedgetpu1-std" in doc["error"]
    assert "\n" not in doc["error"]
