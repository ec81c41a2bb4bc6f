"""The target table (`edgecnn.targets`) drives every stage: the CLI's choice, the request check, the rewrite passes,
device profiles, the bench's runner and `edgecnn run`'s conversions (a Coral device benches the Edge TPU model)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.targets import DEFAULT, TARGETS
from helpers import REPO, assert_one_line_error, run_cli


def test_the_cli_target_choice_is_the_table():
    from edgecnn.cli import convert

    opt = next(p for p in convert.params if p.name == "target")
    assert list(opt.type.choices) == list(TARGETS) and opt.default == DEFAULT
    for t in TARGETS.values():  # the help names each target's hardware
        assert t.runs_on in opt.help


def test_the_table_imports_no_tensorflow():
    """`edgecnn --help` stays instant: the table, and the CLI module that reads it, load no TensorFlow."""
    code = ("import sys, edgecnn.targets, edgecnn.cli, edgecnn.devices.profiles\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'ai_edge_litert')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(TARGETS))
def test_the_request_check_refuses_the_modes_a_target_does_not_take(name):
    from edgecnn.convert.request import MODES, ConversionRequest

    t = TARGETS[name]
    assert set(t.modes) <= set(MODES)
    for mode in MODES:
        if mode in t.modes:
            assert ConversionRequest(mode, target=name).target == name
            continue
        with pytest.raises(EdgecnnError) as exc:
            ConversionRequest(mode, target=name)
        line = str(exc.value)
        assert "\n" not in line and line.startswith(f"--target {name} needs ") and line.endswith(f"not {mode}")


def test_a_refused_mode_is_one_line_from_the_cli(tmp_path):
    """The request is checked before the model is read: one line, no traceback, nothing written."""
    out = tmp_path / "m.tflite"
    assert_one_line_error(run_cli("convert", tmp_path / "any.keras", "-o", out, "--quant", "dynamic", "--target",
                                  "tflm"), "--target tflm needs a model TFLite Micro has kernels for", "not dynamic")
    assert not out.exists()


def test_the_full_integer_rule_and_the_precision_rules_come_from_the_table():
    from edgecnn.convert.precision import check_target
    from edgecnn.convert.request import ConversionRequest

    for name, t in TARGETS.items():
        mode = "int8"
        if t.full_integer:
            with pytest.raises(EdgecnnError, match=f"--target {name} needs a full-integer model: --keep-float c1"):
                ConversionRequest(mode, keep_float=("c1",), target=name)
        else:
            ConversionRequest(mode, allow_float_fallback=True, target=name)
        for prec in ("int16", "float"):
            ops = [("CONV_2D", "c1", prec)]
            if prec in t.precisions:
                check_target(ops, name)
            else:
                with pytest.raises(EdgecnnError) as exc:
                    check_target(ops, name)
                assert str(exc.value) == f"--target {name} {t.precision_rule}: the plan puts CONV_2D(c1) in {prec}"
        for op, why in t.no_int16.items():
            with pytest.raises(EdgecnnError) as exc:
                check_target([(op, "x", "int16")], name)
            assert str(exc.value) == f"--target {name}: the plan puts {op}(x) in int16, but {why}"


def test_every_target_runs_registered_passes_and_every_pass_has_a_target():
    from edgecnn.convert.rewrite import PASSES, passes_for

    for name, t in TARGETS.items():
        assert t.passes and set(t.passes) <= set(PASSES), name
        assert passes_for(name) == list(t.passes)
        assert len(set(t.passes)) == len(t.passes)
    assert set(PASSES) == {p for t in TARGETS.values() for p in t.passes}  # no pass no target runs


def test_every_hook_of_the_table_resolves():
    from edgecnn.targets import hook

    for t in TARGETS.values():
        for spec in (t.after_convert, t.board_runner):
            if spec:
                assert callable(hook(spec)), spec
        assert (t.after_convert is None) == (t.report_key is None) == (not t.after_convert_modes)


def test_device_profiles_name_a_known_target(tmp_path):
    from edgecnn.devices.profiles import REPO_DEVICES, load_profile, parse_profile
    from edgecnn.schema import load_yaml

    files = sorted(REPO_DEVICES.glob("*.yaml"))
    assert files
    for f in files:
        profile = load_profile(f.stem)
        assert load_yaml(f).get("target") == profile.target, f"{f.name} names no target, or another one"
        t = TARGETS[profile.target]
        assert profile.kind in t.device_kinds
    assert load_profile("coral-usb").target == "edgetpu" and load_profile("local-cpu").target == "cpu"
    assert load_profile("cortex-m4-256k").target == "tflm"
    # without a `target:`, the kind and delegate give it: an SSH host whose delegate is the Edge TPU's
    p = tmp_path / "tpu-host.yaml"
    p.write_text("kind: ssh\ndelegate: edgetpu\nssh: {host: h}\n")
    assert parse_profile(p).target == "edgetpu"
    p.write_text("kind: ssh\nssh: {host: h}\n")
    assert parse_profile(p).target == "cpu"
    for bad, needle in (("kind: ssh\ntarget: edgetpu\nssh: {host: h}\n", "target edgetpu does not run on kind ssh "
                                                                           "with delegate xnnpack"),
                        ("kind: local\ntarget: tflm\n", "target tflm does not run on kind local"),
                        ("kind: local\ntarget: gpu\n", "target 'gpu': use one of cpu, edgetpu, tflm")):
        p.write_text(bad)
        with pytest.raises(EdgecnnError) as exc:
            parse_profile(p)
        assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_a_device_whose_target_takes_none_of_the_precisions_stops_the_run(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ndata: digits\nmodels: [lenet5]\nquant: [float32]\ndevices: [coral-usb]\n")
    assert_one_line_error(run_cli("run", recipe, "-o", tmp_path / "run"),
                          "device coral-usb runs target edgetpu, which takes none of quant: float32")
    assert not (tmp_path / "run").exists()


def test_run_converts_once_per_precision_and_target_and_the_coral_benches_the_edgetpu_model(tmp_path, monkeypatch):
    """A recipe on a CPU and a Coral device: int8 is converted for cpu and for edgetpu (each once, cached like every
    step), the Coral bench is given the edgetpu-target model, and float32, which the Edge TPU cannot run, is benched
    on the CPU only. No Coral hardware here: its board runner is replaced by a local run of the model it is given."""
    import edgecnn.bench.edgetpu
    from edgecnn.atomic import sha256_file
    from edgecnn.bench.local import run_local
    from edgecnn.pipeline import RunDir, run_pipeline
    from edgecnn.recipe import recipe_from_dict

    given = []

    def coral_stand_in(profile, model, settings, samples=None):
        given.append((profile.name, model))
        return run_local(model, settings, samples)

    monkeypatch.setattr(edgecnn.bench.edgetpu, "run_edgetpu", coral_stand_in)
    recipe = recipe_from_dict({"name": "t", "data": "digits", "models": [{"name": "lenet5", "input_size": 16,
                                                                         "epochs": 1}],
                               "quant": ["float32", "int8"], "devices": ["local-cpu", "coral-usb"],
                               "max_train_samples": 1000, "calibration_samples": 32, "eval_samples": 200,
                               "bench_runs": 5}, "test recipe")
    logs: list[str] = []
    summary = run_pipeline(recipe, tmp_path / "run", log=logs.append, progress=False)
    run = tmp_path / "run"
    tpu_model = run / "lenet5_edgetpu_int8.tflite"
    assert tpu_model.is_file() and (run / "lenet5_int8.tflite").is_file() and (run / "lenet5_float32.tflite").is_file()
    assert not list(run.glob("lenet5_edgetpu_float32*"))  # float32 is not converted for the Edge TPU
    assert given == [("coral-usb", str(tpu_model))]  # the Coral bench was given the Edge TPU model, once

    steps = RunDir(run).steps
    tpu_convert = steps["convert/lenet5/int8/edgetpu"]["result"]
    assert tpu_convert["request"]["target"] == "edgetpu" and tpu_convert["request"]["mode"] == "int8"
    assert [r["pass"] for r in tpu_convert["rewrites"]] == list(TARGETS["edgetpu"].passes)
    assert steps["convert/lenet5/int8"]["result"]["request"]["target"] == "cpu"  # the CPU's, named as before
    assert sorted(s for s in steps if s.startswith("convert/")) == ["convert/lenet5/float32", "convert/lenet5/int8",
                                                                    "convert/lenet5/int8/edgetpu"]

    rows = {(r["precision"], r["device"]): r for r in summary["rows"]}
    assert sorted(rows) == [("float32", "local-cpu"), ("int8", "coral-usb"), ("int8", "local-cpu")]
    tpu_row = rows[("int8", "coral-usb")]
    assert tpu_row["target"] == "edgetpu" and tpu_row["path"] == str(tpu_model)
    assert tpu_row["bench_status"] == "ok" and tpu_row["p50_ms"] > 0 and tpu_row["drop_points"] is not None
    assert rows[("int8", "local-cpu")]["path"] == str(run / "lenet5_int8.tflite")
    from edgecnn.store.db import open_db

    with open_db(run / "results.sqlite", write=False) as db:
        benched = {(r["device"], r["model_sha256"]) for r in db.runs()}
    assert ("coral-usb", sha256_file(tpu_model)) in benched, benched
    assert summary["skipped"] == [{"device": "coral-usb", "precision": "float32", "target": "edgetpu",
                                   "reason": "--target edgetpu needs a full-integer model: --quant int8, not float32"}]
    assert any(line.startswith("skip float32 on coral-usb: --target edgetpu") for line in logs)
    assert any("convert lenet5 int8 for edgetpu" in line for line in logs)
    assert json.loads((run / "summary.json").read_text())["rows"][1]["target"] in TARGETS

    logs.clear()
    run_pipeline(recipe, run, log=logs.append, progress=False)  # cached: nothing converted again
    assert any("convert lenet5 int8 for edgetpu" in line and "(cached)" in line for line in logs), logs
    assert len(given) == 1  # an ok bench is cached too
