"""`edgecnn bench` / `history` / `devices` through the CLI, and the device profile loader."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecnn.devices import profiles
from edgecnn.cli import main
from edgecnn.errors import EdgecnnError
from tflite_models import zoo_fixture

tflite_zoo = pytest.fixture(scope="session")(zoo_fixture)
EDGECNN = [sys.executable, "-m", "edgecnn.cli"]


pytestmark = pytest.mark.usefixtures("db_path")  # every test writes to its own database (conftest)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rows(path: Path) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgecnn: error: ")
    return lines[0]


# --- profiles --------------------------------------------------------------------------------------------------


def test_local_cpu_profile():
    p = profiles.load_profile("local-cpu")
    assert (p.name, p.kind, p.threads, p.delegate, p.emulated, p.ssh) == ("local-cpu", "local", 1, "xnnpack",
                                                                         False, None)


def write_profile(tmp_path, text: str, name="board.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_ssh_profile(tmp_path):
    path = write_profile(tmp_path, """
name: pi4
kind: ssh
description: Raspberry Pi 4 (emulated)
emulated: true
threads: 4
runtime: ai_edge_litert
delegate: xnnpack
python: /opt/venv/bin/python
work_dir: /tmp/edgecnn
ssh:
  host: 127.0.0.1
  port: 2222
  user: pi
  key: ~/.ssh/id_ed25519
  host_key_fingerprint: SHA256:abcdef
  known_hosts: ~/.ssh/known_hosts
  connect_timeout: 5
  run_timeout: 900
""")
    p = profiles.load_profile(str(path))
    assert p.emulated and p.threads == 4 and p.python == "/opt/venv/bin/python"
    assert p.ssh.host == "127.0.0.1" and p.ssh.port == 2222 and p.ssh.run_timeout == 900 and p.ssh.user == "pi"
    minimal = profiles.load_profile(str(write_profile(tmp_path, "kind: ssh\nssh: {host: b}\n", "b.yaml")))
    assert minimal.name == "b" and minimal.ssh.port == 22 and minimal.ssh.connect_timeout == 10
    assert minimal.ssh.key is None and minimal.work_dir == "~/edgecnn" and minimal.python == "python3"


@pytest.mark.parametrize("text,expected", [
    ("kind: local\nthreds: 2\n", "unknown field 'threds' (did you mean 'threads'?)"),
    ("kind: ssh\nssh: {host: a, prot: 22}\n", "unknown field 'ssh.prot'"),
    ("kind: ssh\nssh: {port: 22}\n", "missing field 'ssh.host'"),
    ("kind: ssh\n", "needs an 'ssh:' mapping"),
    ("kind: fpga\n", "field 'kind' must be one of local, ssh, edgetpu, mcu, got 'fpga'"),
    ("threads: 2\n", "missing field 'kind'"),
    ("kind: local\nthreads: 0\n", "field 'threads' must be at least 1"),
    ("kind: local\nthreads: two\n", "field 'threads' must be int, got 'two'"),
    ("kind: local\nemulated: maybe\n", "field 'emulated' must be bool"),
    ("kind: local\nruntime: onnx\n", "field 'runtime' must be one of"),
    ("kind: local\ndelegate: gpu\n", "field 'delegate' must be one of"),
    ("kind: ssh\nssh: {host: a, port: 70000}\n", "field 'ssh.port' must be at most 65535, got 70000"),
    ("kind: ssh\nssh: {host: a, host_key_fingerprint: abc}\n", "SHA256:"),
    ("kind: ssh\nssh: {host: a, run_timeout: 0}\n", "field 'ssh.run_timeout' must be positive"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("kind: [local\n", "bad YAML (line"),
])
def test_bad_profiles_name_file_and_field(tmp_path, text, expected):
    path = write_profile(tmp_path, text)
    with pytest.raises(EdgecnnError) as exc:
        profiles.load_profile(str(path))
    msg = str(exc.value)
    assert msg.startswith(str(path)) and expected in msg and "\n" not in msg


def test_unknown_device_name_suggests_close_names():
    with pytest.raises(EdgecnnError, match="did you mean local-cpu"):
        profiles.load_profile("local-cpy")


def test_devices_command():
    r = cli("devices", "--json")
    assert r.exit_code == 0 and "local-cpu" in [d["name"] for d in json.loads(r.stdout)]


# --- bench -----------------------------------------------------------------------------------------------------


def test_bench_prints_table_and_records_a_row(tflite_zoo, db_path):
    r = cli("bench", tflite_zoo["float32"], "--runs", 20)
    assert r.exit_code == 0, r.output
    for word in ("p50", "p99", "init", "first inference", "peak RSS", "delegate partitions", "local-cpu"):
        assert word in r.stdout
    (row,) = rows(db_path)
    assert row["status"] == "ok" and row["n_runs"] == 20 and row["device"] == "local-cpu" and row["threads"] == 1
    assert row["model_sha256"] and row["p50_ms"] > 0 and row["runtime_version"] and row["edgecnn_version"]
    assert json.loads(row["result_json"])["timing"]["steady"]["p50_ms"] == row["p50_ms"]


def test_bench_json(tflite_zoo, db_path):
    r = cli("bench", tflite_zoo["int8"], "--runs", 5, "--threads", 2, "--no-xnnpack", "--json", "--op-profile")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["status"] == "ok" and doc["run_id"] == 1
    assert doc["settings"]["threads"] == 2 and doc["settings"]["xnnpack"] is False
    assert doc["device"] == {"name": "local-cpu", "kind": "local", "emulated": False}
    assert doc["op_profile"]["ops"] and rows(db_path)[0]["xnnpack"] == 0


@pytest.mark.parametrize("name", ["float16", "control_flow", "uint8", "multi_io"])
def test_foreign_models_bench_without_error(tflite_zoo, name):
    r = cli("bench", tflite_zoo[name], "--runs", 5)
    assert r.exit_code == 0, r.output


def test_tiny_bench_is_faster_than_importing_tensorflow(tflite_zoo, tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run([*EDGECNN, "bench", str(tflite_zoo["float32"]), "--runs", "20", "--json"],
                          capture_output=True, text=True)
    bench_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True)
    tf_s = time.perf_counter() - t0
    assert bench_s < 0.5 * tf_s, (bench_s, tf_s)


def test_help_does_not_import_heavy_modules():
    probe = ("import sys; from click.testing import CliRunner; from edgecnn.cli import main; "
             "CliRunner().invoke(main, ['bench', '--help']); CliRunner().invoke(main, ['history', '--help']); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('tensorflow', 'keras', 'numpy', 'ai_edge_litert', 'rich', 'sqlite3', 'yaml')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    assert out.strip() == "[]"


@pytest.fixture
def bad_models(tmp_path, tflite_zoo):
    good = Path(tflite_zoo["float32"]).read_bytes()
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "trunc.tflite").write_bytes(good[:500])
    (tmp_path / "random.tflite").write_bytes(np.random.default_rng(1).bytes(2048))
    (tmp_path / "adir").mkdir()
    return tmp_path


@pytest.mark.parametrize("args,expected", [
    (["{tmp}/nope.tflite"], "no such file"),
    (["{tmp}/adir"], "is a directory"),
    (["{tmp}/empty.tflite"], "file is empty"),
    (["{tmp}/trunc.tflite"], "truncated or corrupt"),
    (["{tmp}/random.tflite"], "not a .tflite flatbuffer"),
    (["{custom_op}"], "needs custom op 'EdgecnnMissingOp'"),
    (["{float32}", "--threads", "0"], "--threads must be at least 1, got 0"),
    (["{float32}", "--threads", "-3"], "--threads must be at least 1, got -3"),
    (["{float32}", "--runs", "-5"], "--runs must not be negative"),
    (["{float32}", "--warmup", "-1"], "--warmup must not be negative"),
])
def test_bad_input_one_line_nonzero_exit_failed_row(bad_models, tflite_zoo, db_path, args, expected):
    fmt = {"tmp": bad_models, **{k: str(v) for k, v in tflite_zoo.items()}}
    r = cli("bench", *[a.format(**fmt) for a in args])
    assert r.exit_code == 1
    line = one_error_line(r)
    assert expected in line and "recorded as failed run 1" in line
    (row,) = rows(db_path)
    assert row["status"] == "failed" and expected in row["error"]


def test_data_shape_that_does_not_fit(tflite_zoo, tmp_path, db_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 28, 28, 1), np.float32), y=np.zeros(5, int))
    r = cli("bench", tflite_zoo["float32"], "--data", tmp_path / "d.npz")
    assert r.exit_code == 1
    line = one_error_line(r)
    assert f"{tmp_path / 'd.npz'}: samples x has shape (5, 28, 28, 1)" in line and "edgecnn-bench-" not in line
    assert rows(db_path)[0]["status"] == "failed"


def test_data_npz_for_a_foreign_model_gives_top1(tflite_zoo, tmp_path, db_path):
    x = np.random.default_rng(0).uniform(0, 1, (12, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(12) % 3)
    r = cli("bench", tflite_zoo["int8"], "--data", tmp_path / "d.npz", "--runs", 5, "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["accuracy"]["n"] == 12 and len(doc["outputs_top1"]) == 12
    assert rows(db_path)[0]["top1"] == doc["accuracy"]["top1"]
    np.savez(tmp_path / "raw.npz", x=(x * 255).astype(np.uint8))
    r = cli("bench", tflite_zoo["int8"], "--data", tmp_path / "raw.npz")
    assert r.exit_code == 1 and "preprocessed float input" in one_error_line(r)


def test_data_source_for_an_edgecnn_model_uses_its_spec(tflite_zoo, tmp_path):
    from edgecnn.tflite.metadata import embed
    from edgecnn.data.spec import PreprocessSpec

    spec = PreprocessSpec(height=8, width=8, channels=1, scale=1 / 255, labels=("a", "b", "c"))
    model = tmp_path / "with_spec.tflite"
    model.write_bytes(embed(Path(tflite_zoo["int8"]).read_bytes(), spec))
    raw = np.random.default_rng(0).integers(0, 255, (20, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "raw.npz", x=raw, y=np.arange(20) % 3)
    r = cli("bench", model, "--data", tmp_path / "raw.npz", "--runs", 3, "--limit", 10, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["accuracy"]["n"] <= 10 and "model's preprocessing" in doc["settings"]["data"]


def test_database_that_is_not_sqlite(tflite_zoo, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n")
    r = cli("bench", tflite_zoo["float32"], "--db", path)
    assert r.exit_code == 1 and "not an SQLite database" in one_error_line(r)
    assert path.read_text() == "not a database\n"


def test_read_only_database_keeps_its_rows(tflite_zoo, db_path):
    assert cli("bench", tflite_zoo["float32"], "--runs", 3).exit_code == 0
    os.chmod(db_path, stat.S_IRUSR)
    try:
        r = cli("bench", tflite_zoo["float32"], "--runs", 3)
        assert r.exit_code == 1 and "read-only" in one_error_line(r)
    finally:
        os.chmod(db_path, stat.S_IRUSR | stat.S_IWUSR)
    assert len(rows(db_path)) == 1


@pytest.mark.parametrize("whole_group", [True, False])
def test_ctrl_c_records_interrupted_and_exits_130(tflite_zoo, db_path, whole_group):
    proc = subprocess.Popen([*EDGECNN, "bench", str(tflite_zoo["float32"]), "--runs", "0", "--min-secs", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 20
    while time.time() < deadline and not _has_child(proc.pid):
        time.sleep(0.1)
    time.sleep(1.0)  # the runner is in its timed loop
    if whole_group:  # what a terminal's Ctrl-C does
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["edgecnn: interrupted (recorded as failed run 1)"]
    (row,) = rows(db_path)
    assert row["status"] == "failed" and row["error"] == "interrupted"


def _has_child(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


# --- history ---------------------------------------------------------------------------------------------------


def _store(db_path, *p50s, device="local-cpu"):
    from edgecnn.store.db import open_db

    with open_db(db_path) as db:
        for p50 in p50s:
            db.record({"status": "ok", "model": {"path": "/x/net.tflite", "sha256": "f" * 64},
                       "settings": {"threads": 1, "xnnpack": True}, "device": {"name": device},
                       "timing": {"steady": {"n": 10, "p50_ms": p50, "p90_ms": p50 + 0.5, "std_ms": 0.2}}})


def test_history_flags_regressions(db_path):
    _store(db_path, 10.0, 10.3, 13.0)
    _store(db_path, 99.0, device="pi4-emulated")
    r = cli("history", "--json", "--device", "local-cpu")
    out = json.loads(r.stdout)
    assert [o["regressions"] for o in out] == [[], [], ["p50", "p90"]]
    r = cli("history")
    assert r.exit_code == 0 and "REGRESSION p50" in r.stdout and r.stdout.count("net.tflite") == 4
    assert len(json.loads(cli("history", "--json", "--model", "ffffff").stdout)) == 4
    assert len(json.loads(cli("history", "--json", "--model", "other").stdout)) == 0


def test_history_by_model_file(tflite_zoo, db_path):
    cli("bench", tflite_zoo["float32"], "--runs", 3)
    cli("bench", tflite_zoo["int8"], "--runs", 3)
    out = json.loads(cli("history", "--json", "--model", tflite_zoo["int8"]).stdout)
    assert len(out) == 1 and out[0]["model_path"].endswith("int8.tflite")


def test_history_bad_database(tmp_path):
    r = cli("history", "--db", tmp_path / "none.sqlite")
    assert r.exit_code == 1 and "no results database" in one_error_line(r)
