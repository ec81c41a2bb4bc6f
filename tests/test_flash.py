"""flash / rollback / deployed against the emulated Raspberry Pi (a real arm64 sshd on 127.0.0.1).

The `board` fixture comes from tests/test_emulated_pi.py (it starts the emulated Pi's sshd with a fresh key and
writes profiles for it). Each test uses its own `work_dir`, and reads the board's files straight from the root
filesystem to check bytes. Faults that cannot be caused from outside (a corrupted or cut transfer) patch
`edgecnn.deploy.flash.upload`, the one place model bytes travel.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess

import pytest
from helpers import assert_one_line_error, run_cli
from test_emulated_pi import ROOTFS, board  # noqa: F401  (the session fixture)

import tflite_models
from edgecnn.devices.ssh import ConnectionDropped
from edgecnn.errors import EdgecnnError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("flash-models")
    return {
        "a": tflite_models.write(d, "net_a.tflite", tflite_models.quantized_model("int8", classes=3)),
        "b": tflite_models.write(d, "net_b.tflite", tflite_models.quantized_model("int8", classes=4)),
        "bad": tflite_models.write(d, "net_bad.tflite", tflite_models.custom_op_model()),
    }


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Site:
    """One test's own folder on the board, its profile and its results database."""

    def __init__(self, board, tmp_path, tag):  # noqa: F811
        self.profile = board.profile(name=f"pi-{tag}", work_dir=f"~/edgecnn-flash-{tag}")
        self.dir = ROOTFS / "home/pi" / f"edgecnn-flash-{tag}" / "deployed"
        self.db = tmp_path / "results.sqlite"
        subprocess.run(["rm", "-rf", str(self.dir.parent)], check=True)

    def cli(self, *args):
        return run_cli(*args, "--device", self.profile, *(["--db", self.db] if args[0] == "flash" else []))

    def file(self, suffix="") -> bytes:
        return (self.dir / f"net.tflite{suffix}").read_bytes()

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir() if ".tmp-" in p.name or ".swap-" in p.name or
                      p.name.endswith(".new"))

    def rows(self) -> list[dict]:
        con = sqlite3.connect(self.db)
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM deployments ORDER BY id")]

    def flash_ok(self, model, *extra):
        proc = self.cli("flash", model, "--name", "net", "--json", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)


def test_flash_verified_rollback_and_deployed(board, models, tmp_path):  # noqa: F811
    site = Site(board, tmp_path, "main")
    a, b = models["a"], models["b"]
    doc = site.flash_ok(a)
    assert doc["status"] == "ok" and doc["board_sha256"] == _sha(a) == doc["model_sha256"]
    assert site.file() == a.read_bytes() and not (site.dir / "net.tflite.prev").exists()

    doc = site.flash_ok(b, "--smoke")
    assert doc["smoke_result"]["status"] == "ok" and doc["previous_sha256"] == _sha(a)
    assert site.file() == b.read_bytes() and site.file(".prev") == a.read_bytes()

    table = site.cli("deployed")
    assert table.returncode == 0 and "net" in table.stdout and _sha(b)[:16] in table.stdout
    listed = json.loads(site.cli("deployed", "--json").stdout)
    (m,) = listed["models"]
    assert m["name"] == "net" and m["sha256"] == _sha(b) and m["previous"]["sha256"] == _sha(a)
    assert m["manifest_matches"] is True and m["installed_at"].startswith("20")

    proc = site.cli("flash", "--rollback", "--name", "net", "--json")
    assert proc.returncode == 0, proc.stderr
    assert site.file() == a.read_bytes() and site.file(".prev") == b.read_bytes()
    assert json.loads(site.cli("deployed", "--json").stdout)["models"][0]["sha256"] == _sha(a)

    assert site.flash_ok(a)["unchanged"] is True  # the same bytes again: nothing touched, still recorded
    assert site.file(".prev") == b.read_bytes()

    rows = site.rows()
    assert [(r["action"], r["status"]) for r in rows] == [("flash", "ok"), ("flash", "ok"), ("rollback", "ok"),
                                                          ("flash", "ok")]
    assert rows[1]["smoke"] == 1 and rows[1]["model_sha256"] == _sha(b) and rows[2]["model_sha256"] == _sha(a)
    assert site.leftovers() == []


def test_interrupted_copy_leaves_old_model(board, models, tmp_path, monkeypatch):  # noqa: F811
    from edgecnn.deploy import flash as fl

    site = Site(board, tmp_path, "cut")
    site.flash_ok(models["a"])

    def cut(board, local, remote):  # noqa: F811
        with board.sftp.open(remote, "wb") as fh:
            fh.write(local.read_bytes()[:1000])
        raise ConnectionDropped("device pi-cut: connection dropped while copying net_b.tflite")

    monkeypatch.setattr(fl, "upload", cut)
    with pytest.raises(EdgecnnError, match="connection dropped"):
        fl.flash(models["b"], str(site.profile), "net", db_path=site.db)

    def ctrl_c(board, local, remote):  # noqa: F811
        with board.sftp.open(remote, "wb") as fh:
            fh.write(local.read_bytes()[:500])
        raise KeyboardInterrupt

    monkeypatch.setattr(fl, "upload", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fl.flash(models["b"], str(site.profile), "net", db_path=site.db)
    assert site.file() == models["a"].read_bytes() and site.leftovers() == []
    assert [r["status"] for r in site.rows()] == ["ok", "failed", "failed"]


def test_corrupted_transfer_is_caught(board, models, tmp_path, monkeypatch):  # noqa: F811
    from edgecnn.deploy import flash as fl

    site = Site(board, tmp_path, "flip")
    site.flash_ok(models["a"])

    def flip(board, local, remote):  # noqa: F811
        data = bytearray(local.read_bytes())
        data[len(data) // 2] ^= 0x01
        with board.sftp.open(remote, "wb") as fh:
            fh.write(bytes(data))

    monkeypatch.setattr(fl, "upload", flip)
    with pytest.raises(EdgecnnError, match="checksum mismatch after copy") as err:
        fl.flash(models["b"], str(site.profile), "net", db_path=site.db)
    assert "\n" not in str(err.value) and "unchanged" in str(err.value)
    assert site.file() == models["a"].read_bytes() and site.leftovers() == []
    assert site.rows()[-1]["status"] == "failed" and "checksum" in site.rows()[-1]["error"]


def test_smoke_catches_a_model_the_board_cannot_run(board, models, tmp_path):  # noqa: F811
    site = Site(board, tmp_path, "smoke")
    site.flash_ok(models["a"])
    proc = site.cli("flash", models["bad"], "--name", "net", "--smoke")
    assert_one_line_error(proc, "smoke test failed", "unchanged")
    assert site.file() == models["a"].read_bytes() and site.leftovers() == []
    assert not (site.dir / "net.tflite.prev").exists()


def test_rollback_with_nothing_to_roll_back(board, models, tmp_path):  # noqa: F811
    site = Site(board, tmp_path, "norb")
    site.flash_ok(models["a"])
    assert_one_line_error(site.cli("flash", "--rollback", "--name", "net"), "nothing to roll back to")
    assert_one_line_error(site.cli("flash", "--rollback", "--name", "other"), "nothing to roll back to")
    assert site.file() == models["a"].read_bytes()


def test_permission_denied_on_target_dir(board, models, tmp_path):  # noqa: F811
    site = Site(board, tmp_path, "perm")
    site.flash_ok(models["a"])
    site.dir.chmod(0o555)
    try:
        assert_one_line_error(site.cli("flash", models["b"], "--name", "net"), "permission denied")
    finally:
        site.dir.chmod(0o755)
    assert site.file() == models["a"].read_bytes()


def test_board_full(board, tmp_path, models):  # noqa: F811
    big = tmp_path / "big.tflite"  # a valid header and 600 KiB: more than the 512 KiB tmpfs holds
    big.write_bytes(models["a"].read_bytes() + bytes(600 * 1024))
    site = Site(board, tmp_path, "full")
    site.dir.parent.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0777", "tmpfs", str(site.dir.parent)], check=True)
    try:
        site.flash_ok(models["a"])
        assert_one_line_error(site.cli("flash", big, "--name", "net"), "board full", "unchanged")
        assert site.file() == models["a"].read_bytes() and site.leftovers() == []
    finally:
        subprocess.run(["umount", str(site.dir.parent)], check=False)


def test_unreachable_board_and_bad_devices(board, models, tmp_path):  # noqa: F811
    from test_emulated_pi import _free_port

    dead = board.profile(name="pi-dead", ssh={"port": _free_port(), "connect_timeout": 3})
    assert_one_line_error(run_cli("flash", models["a"], "--device", dead, "--db", tmp_path / "r.sqlite"),
                          "connection refused")
    assert_one_line_error(run_cli("deployed", "--device", dead), "connection refused")
    con = sqlite3.connect(tmp_path / "r.sqlite")
    assert con.execute("SELECT status FROM deployments").fetchall() == [("failed",)]
    assert_one_line_error(run_cli("flash", models["a"], "--device", "no-such-board"), "no-such-board")
    assert_one_line_error(run_cli("flash", models["a"], "--device", "cortex-m4-256k"), "export-c")
