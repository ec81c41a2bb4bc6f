"""The whole board path against a real arm64 board: an emulated Raspberry Pi reached over SSH.

`scripts/emulated_pi.sh build` makes (or restores from its cached tarball) an arm64 Debian bookworm root
filesystem with Python 3.11 and ai-edge-litert's aarch64 wheels; the `board` fixture starts its own arm64 sshd on
127.0.0.1:<free port> with a fresh key, writes a device profile for it (host key pinned by fingerprint), and stops
it at the end. Tests bench a trained int8 model on it through `edgecnn bench --device PROFILE.yaml`, compare the
arm64 predictions with the x86 run of the same runner, and inject the faults users meet (wrong port, wrong key,
changed host key, missing LiteRT/Python, full disk, sshd gone mid-run, Ctrl-C).

Needs root (chroot, mounts, binfmt_misc): skipped on a user's machine, required under CI (EDGECNN_REQUIRE_ALL=1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import require
from helpers import REPO, assert_one_line_error, run_cli

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "emulated_pi.sh"
BASE = Path(os.environ.get("EDGECNN_EMULATED_PI_DIR")
            or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn" / "emulated-pi")
ROOTFS = BASE / "rootfs"
RUNS = ["--warmup", "1", "--runs", "3"]  # emulation is 50-300x slower: few runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keypair(directory: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv = directory / name
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    priv.chmod(0o600)
    pub = directory / f"{name}.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH) + b" edgecnn-test\n")
    return priv, pub


def _fingerprint_of_pub(line: str) -> str:
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _script(*args, timeout=1200) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout)


class Board:
    """A running emulated Pi: its port, key, host key fingerprint, and a way to write profiles for it."""

    def __init__(self, tmp: Path, port: int, key: Path, fingerprint: str):
        self.tmp, self.port, self.key, self.fingerprint = tmp, port, key, fingerprint

    def profile(self, name: str = "emulated-pi-test", **changes) -> Path:
        ssh = {"host": "127.0.0.1", "port": self.port, "user": "pi", "key": str(self.key),
               "host_key_fingerprint": self.fingerprint, "connect_timeout": 15, "run_timeout": 300}
        ssh.update(changes.pop("ssh", {}))
        data = {"name": name, "kind": "ssh", "description": "emulated Pi (test)", "emulated": True, "threads": 1,
                "runtime": "ai_edge_litert", "delegate": "xnnpack", "python": "/opt/venv/bin/python",
                "work_dir": "~/edgecnn-test", "ssh": {k: v for k, v in ssh.items() if v is not None}}
        data.update(changes)
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


@pytest.fixture(scope="session")
def board(tmp_path_factory):
    require(hasattr(os, "geteuid") and os.geteuid() == 0,
            "the emulated Pi needs root (debootstrap, chroot, mounts, binfmt_misc)")
    stamp = ROOTFS / ".edgecnn-emulated-pi"
    if not stamp.is_file():  # CI builds it before pytest; a developer's first run builds it here (~4-7 min)
        res = _script("build", timeout=1800)
        require(res.returncode == 0, f"scripts/emulated_pi.sh build failed: {res.stderr.strip()[-500:]}")
    tmp = tmp_path_factory.mktemp("emulated-pi")
    key, pub = _keypair(tmp, "id_test")
    port = _free_port()
    res = _script("start", port, pub, timeout=120)
    require(res.returncode == 0, f"cannot start the emulated Pi's sshd: {res.stderr.strip()[-500:]}")
    host_pub = (ROOTFS / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    try:
        yield Board(tmp, port, key, _fingerprint_of_pub(host_pub))
    finally:
        _script("stop", port, timeout=120)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A small CNN trained on scikit-learn's digits (bundled), full-int8 with batch 1, and 120 held-out samples."""
    import contextlib
    import io

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), batch_size=1)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(32, 1, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(10)(h))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = keras.Sequential([keras.Input((8, 8, 1)), *model.layers[1:]])  # same layers, any batch, to train fast
    train.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train.fit(x[:1500], y[:1500], epochs=40, batch_size=64, verbose=0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(200))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        data = conv.convert()
    out = tmp_path_factory.mktemp("digits")
    (out / "digits_int8.tflite").write_bytes(data)
    np.savez(out / "digits_test.npz", x=x[1500:1620], y=y[1500:1620])
    return out / "digits_int8.tflite", out / "digits_test.npz"


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "results.sqlite"


def _bench(model, profile, db, *extra, timeout=900):
    return run_cli("bench", model, "--device", profile, *RUNS, "--db", db, *extra, timeout=timeout)


def _rows(db) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY id")]
    finally:
        con.close()


# --- the board path --------------------------------------------------------------------------------------------


def test_devices_check_reports_aarch64_and_litert(board):
    r = run_cli("devices", "check", board.profile(), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["arch"] == "aarch64" and info["emulated"] is True
    assert info["python"].startswith("3.11") and info["ai_edge_litert"] and info["numpy"]
    assert "Cortex-A72" in info["cpu"] and info["missing"] == []
    human = run_cli("devices", "check", board.profile())
    assert "aarch64" in human.stdout and "ai-edge-litert " + info["ai_edge_litert"] in human.stdout
    assert "EMULATED" in human.stdout


def test_int8_bench_on_arm64_matches_x86_and_is_stored_as_emulated(board, digits_model, db):
    model, samples = digits_model
    r = _bench(model, board.profile(), db, "--data", samples, "--json")
    assert r.returncode == 0, r.stderr
    arm = json.loads(r.stdout)
    assert arm["status"] == "ok" and arm["machine"]["arch"] == "aarch64"
    assert arm["device"]["emulated"] is True and arm["transport"] == "ssh"
    assert arm["runtime"]["name"] == "ai_edge_litert"
    r = run_cli("bench", model, "--device", "local-cpu", *RUNS, "--db", db, "--data", samples, "--json")
    assert r.returncode == 0, r.stderr
    x86 = json.loads(r.stdout)
    assert x86["machine"]["arch"] == "x86_64"
    # Same predictions, sample for sample, up to one: XNNPACK's aarch64 and x86-64 int8 kernels are not bit-exact
    # for every op mix (MobileNetV2 was, in ../shared's measurements; this net's depthwise+mean once flipped a
    # near-tie on 1 of 120 samples after a retrain). More than one difference is a real divergence.
    diffs = [i for i, (a, b) in enumerate(zip(arm["outputs_top1"], x86["outputs_top1"])) if a != b]
    assert len(arm["outputs_top1"]) == len(x86["outputs_top1"]) == 120 and len(diffs) <= 1, diffs
    assert arm["accuracy"]["n"] == 120 and x86["accuracy"]["top1"] > 0.7
    assert abs(arm["accuracy"]["top1"] - x86["accuracy"]["top1"]) <= 1 / 120 + 1e-9
    rows = _rows(db)
    emu = [row for row in rows if row["device"] == "emulated-pi-test"]
    assert len(emu) == 1 and emu[0]["status"] == "ok" and emu[0]["emulated"] == 1 and emu[0]["arch"] == "aarch64"
    assert json.loads(emu[0]["result_json"])["device"]["emulated"] is True
    hist = run_cli("history", "--db", db)
    assert "EMULATED" in hist.stdout


def test_second_run_reuses_the_copies_on_the_board(board, digits_model, db):
    model, _ = digits_model
    profile = board.profile()
    first = json.loads(_bench(model, profile, db, "--json").stdout)
    again = json.loads(_bench(model, profile, db, "--json").stdout)
    assert first["status"] == again["status"] == "ok"
    assert again["model"]["board_path"] == first["model"]["board_path"]
    assert Path(again["model"]["board_path"]).name.startswith(again["model"]["sha256"][:16])


def test_several_devices_run_in_parallel_into_one_table(board, digits_model, db):
    model, samples = digits_model
    r = run_cli("bench", model, "--device", board.profile(), "--device", "local-cpu", *RUNS, "--db", db,
                "--data", samples)
    assert r.returncode == 0, r.stderr
    assert "emulated-pi-test (EMULATED" in r.stdout and "local-cpu" in r.stdout
    assert {row["device"] for row in _rows(db)} == {"emulated-pi-test", "local-cpu"}


# --- faults: one line, a failed row, and the next run works -----------------------------------------------------


def _fault(model, profile, db, *needles):
    r = _bench(model, profile, db)
    line = assert_one_line_error(r, *needles)
    rows = _rows(db)
    assert rows and rows[-1]["status"] == "failed" and rows[-1]["error"], rows[-1:]
    assert "BEGIN OPENSSH PRIVATE KEY" not in rows[-1]["result_json"]
    return line


def test_wrong_port(board, digits_model, db):
    _fault(digits_model[0], board.profile(ssh={"port": _free_port(), "connect_timeout": 5}), db,
           "connection refused")


def test_wrong_key(board, digits_model, db, tmp_path):
    other, _ = _keypair(tmp_path, "other")
    _fault(digits_model[0], board.profile(ssh={"key": str(other)}), db, "authentication failed", "pi")


def test_changed_host_key(board, digits_model, db, tmp_path):
    _, pub = _keypair(tmp_path, "impostor")
    pinned = _fingerprint_of_pub(pub.read_text())
    line = _fault(digits_model[0], board.profile(ssh={"host_key_fingerprint": pinned}), db, "HOST KEY MISMATCH")
    assert pinned in line and board.fingerprint in line


def test_unknown_host_key_is_not_accepted(board, digits_model, db, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    line = _fault(digits_model[0], board.profile(ssh={"host_key_fingerprint": None, "known_hosts": str(empty)}),
                  db, "host key not known")
    assert board.fingerprint in line
    assert empty.read_text() == ""  # never added silently


def test_known_hosts_entry_is_accepted(board, digits_model, db, tmp_path):
    kh = tmp_path / "known_hosts"
    pub = (ROOTFS / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    kh.write_text(f"[127.0.0.1]:{board.port} {pub[0]} {pub[1]}\n")
    r = _bench(digits_model[0], board.profile(ssh={"host_key_fingerprint": None, "known_hosts": str(kh)}), db)
    assert r.returncode == 0, r.stderr


def test_board_without_litert(board, digits_model, db):
    line = _fault(digits_model[0], board.profile(python="/usr/bin/python3"), db, "ai-edge-litert", "pip install")
    assert "install:" in line


def test_board_without_python(board, digits_model, db):
    _fault(digits_model[0], board.profile(python="/opt/nothing/bin/python3"), db, "Python", "not found")


def test_board_disk_full(board, digits_model, db):
    tiny = ROOTFS / "home/pi/edgecnn-tiny"
    tiny.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0777", "tmpfs", str(tiny)], check=True)
    try:
        _fault(digits_model[0], board.profile(work_dir="/home/pi/edgecnn-tiny"), db, "disk full")
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def _start_long_bench(model, profile, db):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "edgecnn.cli", "bench", str(model), "--device", str(profile),
                             "--warmup", "0", "--runs", "1", "--min-secs", "20", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _wait_until_running_on_board(tag: str, timeout: float = 60) -> None:
    """Wait until the runner process is alive on the board (its pid file is in the profile's work_dir)."""
    work = ROOTFS / "home/pi" / tag
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(work.glob("run-*.pid")):
            time.sleep(1.0)
            return
        time.sleep(0.2)
    raise AssertionError("the runner never started on the board")


def test_sshd_stopped_mid_run(board, digits_model, db, tmp_path):
    _, pub = _keypair(tmp_path, "second")
    port = _free_port()
    assert _script("start", port, pub, timeout=120).returncode == 0
    key = tmp_path / "second"
    profile = board.profile(ssh={"port": port, "key": str(key)}, work_dir="~/edgecnn-drop")
    proc = _start_long_bench(digits_model[0], profile, db)
    try:
        _wait_until_running_on_board("edgecnn-drop")
        _script("stop", port, timeout=60)  # the listener and its per-connection sshds go away
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _script("stop", port, timeout=60)
    assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "connection dropped")
    assert _rows(db)[-1]["status"] == "failed"


def test_ctrl_c_mid_run(board, digits_model, db):
    proc = _start_long_bench(digits_model[0], board.profile(work_dir="~/edgecnn-ctrlc"), db)
    try:
        _wait_until_running_on_board("edgecnn-ctrlc")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0], err
    last = _rows(db)[-1]
    assert last["status"] == "failed" and "interrupted" in last["error"]
    time.sleep(6)  # the runner on the board got SIGINT (then SIGKILL after 5 s): no pid file is left behind
    assert not list((ROOTFS / "home/pi/edgecnn-ctrlc").glob("run-*.pid"))


def test_next_run_after_faults_succeeds(board, digits_model, db):
    r = _bench(digits_model[0], board.profile(), db)
    assert r.returncode == 0, r.stderr
    assert "EMULATED" in r.stdout
    assert _rows(db)[-1]["status"] == "ok"


def test_coral_profile_on_a_board_without_the_edgetpu_runtime(board, digits_model, db):
    _fault(digits_model[0], board.profile(kind="edgetpu", delegate="edgetpu"), db,
           "libedgetpu.so.1 not found on the board", "libedgetpu1-std")
