"""Edge TPU: the offline preflight on zoo models, the compiler-log parser on real compiler output, the error paths.

No Coral software exists on these machines and the product fakes none. Here the compiler and the runtime are
tested for the clear error that says what to install. The whole Edge TPU bench path up to the hardware (preflight,
one compile, the compiled model run on an arm64 board with `--delegate libedgetpu.so.1`, the failure recorded) is
tested in tests/test_emulated_pi.py, with a stand-in edgetpu_compiler and a stub libedgetpu.so.1 on the emulated Pi.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgecnn.console import preflight_table
from edgecnn.convert import edgetpu
from edgecnn.errors import EdgecnnError
from conftest import require
from helpers import assert_one_line_error, run_cli, run_cli_in_process
from tflite_models import float32_model, quantized_model, write

LOGS = Path(__file__).resolve().parent / "data" / "edgetpu"


def _log(name: str) -> str:
    return "\n".join(ln for ln in (LOGS / name).read_text().splitlines() if not ln.startswith("# "))


def _int8(model, batch1: bool = True, calib: int = 4) -> bytes:
    """Full-integer int8 conversion; with `batch1` the input batch is fixed at 1 as the Edge TPU needs."""
    import keras
    import numpy as np
    import tensorflow as tf

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if batch1:
        inp = keras.Input(shape, batch_size=1)
        model = keras.Model(inp, model(inp))
    rng = np.random.default_rng(0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, *shape)).astype("float32")] for _ in range(calib))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return conv.convert()


@pytest.fixture(scope="module")
def zoo_int8(tmp_path_factory):
    """Zoo MobileNets (small input and width: the same ops as 224x224 1.0) as int8 .tflite, batch 1."""
    from edgecnn.zoo.registry import build

    out = tmp_path_factory.mktemp("zoo-int8")
    models = {}
    for name, knobs in (("mobilenet_v1", {"alpha": 0.25}), ("mobilenet_v2", {"alpha": 0.35}),
                        ("mobilenet_v3_small", {"alpha": 0.75})):
        models[name] = write(out, f"{name}.tflite", _int8(build(name, (96, 96, 3), 10, **knobs)))
    models["mobilenet_v2_dynamic_batch"] = write(
        out, "mnv2_dyn.tflite", _int8(build("mobilenet_v2", (96, 96, 3), 10, alpha=0.35), batch1=False))
    return models


# --- preflight -------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_mobilenet_v1_v2_map_fully(zoo_int8, name):
    r = edgetpu.preflight(zoo_int8[name])
    assert r["maps_fully"], preflight_table(r)
    assert r["first_cpu_op"] is None and r["ops_edgetpu"] == r["ops_total"] > 20
    assert all(c["ok"] for c in r["checks"])


@pytest.mark.slow
def test_mobilenet_v3_falls_back_at_hard_swish(zoo_int8):
    r = edgetpu.preflight(zoo_int8["mobilenet_v3_small"])
    assert not r["maps_fully"]
    cut = r["first_cpu_op"]
    assert cut["op"] == "HARD_SWISH" and "not supported" in cut["reason"]
    # the compiler cuts once: the cut op and everything after it run on the CPU
    assert r["ops_edgetpu"] == cut["index"] and r["ops_cpu"] == r["ops_total"] - cut["index"]
    after = [o for o in r["ops"] if o["index"] > cut["index"]]
    assert after and all(o["where"] == "cpu" for o in after)
    assert any(o["op"] == "CONV_2D" and "after the cut" in o["reason"] for o in after)


@pytest.mark.slow
def test_dynamic_batch_is_flagged(zoo_int8):
    r = edgetpu.preflight(zoo_int8["mobilenet_v2_dynamic_batch"])
    static = next(c for c in r["checks"] if c["check"] == "static shapes")
    assert not static["ok"] and "batch_size=1" in static["detail"] and not r["maps_fully"]


def test_runtime_version_gates_newer_ops(tmp_path):
    path = write(tmp_path, "q.tflite", quantized_model("int8"))
    assert edgetpu.preflight(path)["maps_fully"]  # conv, depthwise, mean, fully connected, softmax
    r = edgetpu.preflight(path, runtime_version=10)
    assert r["runtime_version"] == 10


def test_float_model_is_refused(tmp_path):
    path = write(tmp_path, "f.tflite", float32_model())
    with pytest.raises(EdgecnnError, match="not an integer-quantized model"):
        edgetpu.preflight(path)
    assert_one_line_error(run_cli_in_process("edgetpu-check", path), "not an integer-quantized model", "int8")


def test_not_a_tflite(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    assert_one_line_error(run_cli_in_process("edgetpu-check", bad), "not a .tflite")
    assert_one_line_error(run_cli_in_process("edgetpu-check", tmp_path / "missing.tflite"), "model file does not exist")


def test_cli_json_and_exit_codes(tmp_path):
    path = write(tmp_path, "q.tflite", quantized_model("int8"))
    r = run_cli_in_process("edgetpu-check", path, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["maps_fully"] and report["source"].startswith("https://coral.ai/docs/edgetpu/models-intro")
    human = run_cli_in_process("edgetpu-check", path)
    assert human.returncode == 0 and "maps fully" in human.stdout


def test_supported_op_list_is_data_with_its_source():
    table = edgetpu.supported_ops()
    assert table["source"]["url"].startswith("https://coral.ai/")
    assert table["source"]["compiler_version"] and table["source"]["runtime_version"] == 14
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "MEAN", "SOFTMAX", "RESHAPE"):
        assert op in table["operations"]
    assert "HARD_SWISH" not in table["operations"]


# --- the compiler log ------------------------------------------------------------------------------------------


def test_log_all_mapped_v16():
    r = edgetpu.parse_compiler_log(_log("v16_all_mapped.txt"))
    assert r["compiler_version"] == "16.0.384591198" and r["compiled"] and r["compile_ms"] == 542
    assert r["on_chip_used_bytes"] == int(604.5 * 1024) and r["on_chip_remaining_bytes"] == int(511.5 * 1024)
    assert r["off_chip_bytes"] == round(3.45 * 1024 ** 2)
    assert r["subgraphs"] == 1 and r["ops_total"] == 50 and r["ops_edgetpu"] == 50 and r["ops_cpu"] == 0
    assert r["input_model"] == "quantized_model.tflite" and r["output_model"] == "quantized_model_edgetpu.tflite"
    assert r["input_size_bytes"] == round(4.04 * 1024 ** 2)


def test_log_partial_v15():
    r = edgetpu.parse_compiler_log(_log("v15_partial.txt"))
    assert r["compiled"] and r["subgraphs"] == 3 and r["ops_total"] == 25
    assert r["ops_edgetpu"] == 23 and r["ops_cpu"] == 2 and r["off_chip_bytes"] == 0
    assert r["operation_log"] == "model_edgetpu.log"


def test_log_nothing_mapped_v16():
    r = edgetpu.parse_compiler_log(_log("v16_nothing_mapped.txt"))
    assert r["subgraphs"] == 0 and r["ops_edgetpu"] == 0 and r["ops_cpu"] == 157 and r["on_chip_used_bytes"] == 0
    assert r["operations"] == [{"op": "RESHAPE", "count": 10, "status": "Operation is working on an unsupported "
                                "data type", "mapped": False}]


def test_log_operator_table_v2():
    r = edgetpu.parse_compiler_log(_log("v2_more_than_one_subgraph.txt"))
    assert r["compiler_version"] == "2.1.302470888" and r["compile_ms"] == 12264
    assert r["ops_edgetpu"] == 83 and r["ops_cpu"] == 10  # the summary lines, not the (excerpted) table
    statuses = {(o["op"], o["status"]) for o in r["operations"]}
    assert ("LOGISTIC", "More than one subgraph is not supported") in statuses
    assert ("ADD", "Mapped to Edge TPU") in statuses


def test_operation_log_file_v14():
    r = edgetpu.parse_compiler_log(_log("v14_operation_log.txt"))
    assert r["input_model"] == "tiny_yolo.tflite" and r["compiled"]
    assert r["ops_edgetpu"] == 6 + 11 + 2 and r["ops_cpu"] == 1 + 1 + 2 + 1 + 1 and r["ops_total"] == 25
    assert len(r["operations"]) == 8


def test_internal_compiler_error():
    r = edgetpu.parse_compiler_log(_log("internal_error.txt"))
    assert not r["compiled"] and "Internal compiler error" in r["error"]



def test_console_table_and_log_file_count_each_op_once():
    """`-s` prints the operation table that `*_edgetpu.log` also holds: compile_model must not count ops twice."""
    table = _log("v14_operation_log.txt").split("\n\n", 1)[1]  # the Operator/Count/Status table
    log_file = _log("v14_operation_log.txt")
    with_s = edgetpu._parse_console_and_log(_log("v16_all_mapped.txt") + "\n\n" + table, log_file)
    assert len(with_s["operations"]) == 8 and with_s["ops_total"] == 50 and with_s["ops_edgetpu"] == 19
    without_s = edgetpu._parse_console_and_log(_log("v16_all_mapped.txt"), log_file)  # table only in the file
    assert len(without_s["operations"]) == 8 and without_s["compile_ms"] == 542

# --- without Coral's software ----------------------------------------------------------------------------------


def test_no_compiler_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # whatever this machine has, no edgetpu_compiler is on this PATH
    path = write(tmp_path, "q.tflite", quantized_model("int8"))
    with pytest.raises(EdgecnnError, match="edgetpu_compiler not found.*apt-get install edgetpu-compiler"):
        edgetpu.compile_model(path, tmp_path)
    with pytest.raises(EdgecnnError, match="coral.ai/docs/edgetpu/compiler"):
        edgetpu.find_compiler()


def test_runner_with_a_library_that_is_no_delegate_says_so(tmp_path):
    """A libedgetpu.so.1 without `tflite_plugin_create_delegate` (ctypes: AttributeError) is the same one line."""
    require(shutil.which("gcc") is not None, "gcc not installed")
    from edgecnn.bench.local import run_local
    from edgecnn.bench.protocol import BenchSettings

    src = tmp_path / "stub.c"
    src.write_text("int edgecnn_libedgetpu_stub(void) { return 0; }\n")
    lib = tmp_path / "libedgetpu.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libedgetpu.so.1", "-o", str(lib), str(src)], check=True)
    path = write(tmp_path, "q.tflite", quantized_model("int8"))
    doc = run_local(str(path), BenchSettings(warmup=1, runs=1, delegate=str(lib)))
    assert doc["status"] == "failed", doc
    assert doc["error"].startswith(f"cannot load delegate {lib}: ") and "tflite_plugin_create_delegate" in doc["error"]
    assert "libedgetpu1-std" in doc["error"]


def test_bench_float_model_on_edgetpu_device_is_one_line(tmp_path):
    prof = tmp_path / "coral.yaml"
    prof.write_text("name: coral-test\nkind: edgetpu\ndelegate: edgetpu\nssh: {host: 127.0.0.1, port: 9, "
                    "connect_timeout: 2}\n")
    model = write(tmp_path, "f.tflite", float32_model())
    r = run_cli_in_process("bench", model, "--device", prof, "--runs", "1", "--db", tmp_path / "db.sqlite")
    assert_one_line_error(r, "not an integer-quantized model")


def test_bench_int8_on_unreachable_edgetpu_host_is_one_line(tmp_path):
    prof = tmp_path / "coral.yaml"
    prof.write_text("name: coral-test\nkind: edgetpu\ndelegate: edgetpu\nssh: {host: 127.0.0.1, port: 9, "
                    "connect_timeout: 2}\n")
    model = write(tmp_path, "q.tflite", quantized_model("int8"))
    r = run_cli_in_process("bench", model, "--device", prof, "--runs", "1", "--db", tmp_path / "db.sqlite")
    assert_one_line_error(r, "coral-test", "connection refused")


def test_edgetpu_check_help_names_coral():
    env = dict(os.environ)
    r = run_cli("edgetpu-check", "--help", env=env)
    assert r.returncode == 0 and "Coral" in r.stdout
