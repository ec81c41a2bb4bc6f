"""mcu-check: TFLM (tflite-micro's host build of TFLM's kernels) runs the model, arena/flash/fit, bad input."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import assert_one_line_error, run_cli_in_process

import deploy_models
import tflite_models
from edgecnn.errors import EdgecnnError

tflm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="pip install 'edgecnn[mcu]'")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("mcu-small")
    return {
        "int8": tflite_models.write(d, "int8.tflite", tflite_models.quantized_model("int8")),
        "float": tflite_models.write(d, "float.tflite", tflite_models.float32_model()),
        "custom": tflite_models.write(d, "custom.tflite", tflite_models.custom_op_model("EdgecnnMissingOp")),
    }


def test_small_int8_model_runs_and_arena_is_minimal(small):
    from edgecnn.deploy.mcu import _try_tflm, mcu_check

    r = mcu_check(small["int8"], ram="256K", flash="1M")
    assert r["runs_in_tflm"] and r["fits"] is True and r["problems"] == [] and r["float_tensors"] == []
    assert r["flash_bytes"] == small["int8"].stat().st_size
    arena = r["arena_bytes"]
    assert arena >= r["arena_recorded_bytes"] > 0 and arena % 16 == 0
    data = small["int8"].read_bytes()
    assert _try_tflm(tflm, data, arena, 1)[0] is not None
    assert _try_tflm(tflm, data, arena - 16, 1)[0] is None


@pytest.mark.slow
def test_trained_lenet_top1_tflm_vs_litert(tmp_path_factory):
    model = deploy_models.trained_int8(tmp_path_factory.mktemp("mcu-lenet"), "lenet5", "digits", epochs=5)
    proc = run_cli_in_process("mcu-check", model, "--device", "cortex-m4-256k", "--data", "digits", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    a = r["accuracy"]
    assert r["device"] == "cortex-m4-256k" and r["ram_budget"] == 256 * 1024 and r["fits"] is True
    assert 1000 < r["arena_bytes"] < 256 * 1024
    assert a["samples"] > 300 and a["task"] == "classification" and a["metric"] == "top-1"
    # the same int8 kernels' arithmetic under both runtimes: the same predictions (structure, not what training
    # reached), and top-1 as eval computes it on the same samples
    assert a["prediction_agreement"] >= 0.95 and abs(a["value_tflm"] - a["value_litert"]) <= 0.05
    assert 0.0 <= a["value_litert"] <= 1.0


def test_float_model_names_its_float_tensors(small):
    line = assert_one_line_error(run_cli_in_process("mcu-check", small["float"]), "not an int8 model", "float")
    assert "serving_default" in line  # the float input tensor by name


def test_over_budget_is_one_line_and_exit_1(small):
    proc = run_cli_in_process("mcu-check", small["int8"], "--flash", "1K")
    assert_one_line_error(proc, "exceeds the flash budget 1024 B")
    assert "tensor arena" in proc.stdout  # the report is still printed
    assert_one_line_error(run_cli_in_process("mcu-check", small["int8"], "--ram", "1K"), "exceeds the RAM budget")
    assert_one_line_error(run_cli_in_process("mcu-check", small["int8"], "--ram", "lots"), "--ram", "256K")


def test_ops_tflm_lacks_are_named(small):
    from edgecnn.deploy.mcu import mcu_check

    r = mcu_check(small["custom"], allow_float=True)
    assert not r["runs_in_tflm"] and r["tflm_missing_ops"] == ["CUSTOM:EdgecnnMissingOp"]
    assert_one_line_error(run_cli_in_process("mcu-check", small["custom"], "--allow-float"), "ops TFLM lacks",
                          "EdgecnnMissingOp")


def test_devices_and_bad_input(small, tmp_path):
    assert_one_line_error(run_cli_in_process("mcu-check", small["int8"], "--device", "cortex-m9"), "cortex-m9")
    assert_one_line_error(run_cli_in_process("mcu-check", small["int8"], "--device", "raspberry-pi-4"),
                          "not an MCU profile")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage!")
    assert_one_line_error(run_cli_in_process("mcu-check", bad), "TFL3")
    assert_one_line_error(run_cli_in_process("mcu-check", small["int8"], "--data", "digits"), "no preprocessing spec")


def test_missing_tflite_micro_says_how_to_install(small, monkeypatch):
    from edgecnn.deploy import mcu

    monkeypatch.setitem(sys.modules, "tflite_micro.python.tflite_micro", None)
    with pytest.raises(EdgecnnError, match=r"pip install 'edgecnn\[mcu\]'"):
        mcu.mcu_check(small["int8"])


def test_sizes_and_mcu_profiles(tmp_path):
    from edgecnn.devices.profiles import load_profile
    from edgecnn.deploy.mcu import parse_size

    assert parse_size("256K") == 262144 and parse_size("1M") == 1048576 and parse_size("1000") == 1000
    assert parse_size("1.5MB") == 1572864
    for name in ("cortex-m4-256k", "cortex-m7-512k", "esp32-s3"):
        p = load_profile(name)
        assert p.kind == "mcu" and p.ram > 0 and p.flash > 0
    bad = tmp_path / "m.yaml"
    bad.write_text("kind: mcu\nram: 1024\n")
    with pytest.raises(EdgecnnError, match="needs field 'flash'"):
        load_profile(str(bad))


def test_the_api_gives_the_cli_s_document_and_line(small):
    """`edgecnn.api.mcu_check` is what `edgecnn mcu-check` prints: the same --json document; a model that does not fit
    is a result whose `failure` is the CLI's one error line."""
    from edgecnn import api
    from helpers import run_cli

    m = api.mcu_check(small["int8"], ram="1M", flash="1M")
    cli = run_cli("mcu-check", small["int8"], "--ram", "1M", "--flash", "1M", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    doc = json.loads(cli.stdout)
    assert m.to_dict().keys() == doc.keys() and m.arena_bytes == doc["arena_bytes"]
    assert {k: v for k, v in m.to_dict().items() if k != "wall_seconds"} == {k: v for k, v in doc.items()
                                                                              if k != "wall_seconds"}
    assert m.runs_in_tflm and m.arena_bytes > 0 and m.fits and m.failure is None
    tight = api.mcu_check(small["int8"], ram="1K", flash="1M")
    assert tight.fits is False and "int8.tflite" in tight.failure
    line = assert_one_line_error(run_cli("mcu-check", small["int8"], "--ram", "1K", "--flash", "1M"))
    assert line == f"edgecnn: error: {tight.failure}"
