"""Bench on a board over SSH: copy the runner and the model (cached by hash), run, bring the JSON back.

| function        | what it does                                                                   | returns            |
|-----------------|--------------------------------------------------------------------------------|--------------------|
| `probe`         | what the board has: arch, CPU, OS, free disk, Python, numpy, LiteRT, libedgetpu | `BoardInfo`        |
| `check_device`  | `probe` + what is missing and the command that installs it                      | dict (`devices check`) |
| `run_remote`    | one benchmark on one board (`edgecnn bench MODEL --device X.yaml`)              | runner JSON + device fields |
| `cancel_all`    | stops every run in progress (Ctrl-C during a multi-device bench)                | -                  |

The board needs only sshd, Python 3 with numpy, and ai-edge-litert (or tflite-runtime). On the board, under
`work_dir` (default `~/edgecnn`), `cache/` holds `<sha256[:16]>-runner.py` and `<sha256[:16]>-<model>.tflite`: a
file is copied once and reused until its content changes. A failed run (unreachable board, dropped connection,
missing runtime, full disk, Ctrl-C) comes back as `{"status": "failed", "error": "<one line>", ...}` like a failed
local run, so the caller records it; `run_remote` raises only on bad arguments.

Results carry `device` (profile name), `transport: "ssh"`, `host`, and `emulated` (from the profile: timings from
an emulated board, e.g. the qemu arm64 Pi used in tests, say nothing about a real board's speed).
"""

from __future__ import annotations

import json
import secrets
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.bench.ssh import ConnectionDropped, SshBoard, SshTarget
from edgecnn.errors import EdgecnnError

from edgecnn.bench.protocol import RUNNER_PATH as RUNNER
SCHEMA = "edgecnn.bench/1"

# ARM "CPU part" numbers (implementer 0x41) of the cores found on Raspberry Pi and Coral boards
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76"}

# Runs on the board with the profile's python (stdin), stdlib only; prints one JSON line.
_PY_PROBE = r"""
import json, platform, sys, importlib.util
from importlib import metadata
def ver(dist):
    try:
        return metadata.version(dist)
    except Exception:
        return None
out = {"python": platform.python_version(), "python_executable": sys.executable, "machine": platform.machine()}
for mod, dist in (("numpy", "numpy"), ("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime")):
    out[mod] = (ver(dist) or "unknown") if importlib.util.find_spec(mod) else None
if DEEP and out["ai_edge_litert"]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except Exception as exc:
        out["ai_edge_litert_error"] = (type(exc).__name__ + ": " + str(exc))[:200]
print(json.dumps(out))
"""


@dataclass
class BoardInfo:
    """What `probe` saw on a board."""

    arch: str = ""
    cpu: str = ""
    cores: int | None = None
    os: str = ""
    kernel: str = ""
    work_dir: str = ""
    disk_free_bytes: int | None = None
    python_path: str | None = None
    python: str | None = None
    numpy: str | None = None
    ai_edge_litert: str | None = None
    tflite_runtime: str | None = None
    libedgetpu: str | None = None
    edgetpu_compiler: str | None = None
    errors: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _get(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def ssh_target(profile) -> SshTarget:
    """The SshTarget of a device profile (an object with an `ssh` block, or the same as dicts)."""
    ssh = _get(profile, "ssh")
    name = _get(profile, "name", "board")
    if ssh is None or not _get(ssh, "host"):
        raise EdgecnnError(f"device {name}: the profile has no ssh.host; a remote bench needs one")
    return SshTarget(
        host=_get(ssh, "host"), port=int(_get(ssh, "port", 22) or 22), user=_get(ssh, "user"),
        key=_get(ssh, "key"), host_key_fingerprint=_get(ssh, "host_key_fingerprint"),
        known_hosts=_get(ssh, "known_hosts"), connect_timeout=float(_get(ssh, "connect_timeout", 10) or 10),
        run_timeout=float(_get(ssh, "run_timeout", 600) or 600), name=name)


def _python(profile) -> str:
    return _get(profile, "python") or "python3"


def _work_dir(profile) -> str:
    return _get(profile, "work_dir") or "~/edgecnn"


# ---- probe / devices check ---------------------------------------------------------------------------------------


def probe(board: SshBoard, profile, deep: bool = False) -> BoardInfo:
    """Ask the board what it has (one shell command + one Python start)."""
    py = _python(profile)
    work = board.resolve(_work_dir(profile))
    script = "\n".join([
        'echo "arch=$(uname -m)"',
        'echo "kernel=$(uname -r)"',
        'echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"',
        'echo "cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"',
        "echo \"cpu_model=$(grep -m1 -E '^(model name|Model)[[:space:]]*:' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\"",
        "echo \"cpu_part=$(grep -m1 -E '^CPU part' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')\"",
        f"mkdir -p {shlex.quote(work)} 2>/dev/null",
        f"echo \"disk_free_kb=$(df -Pk {shlex.quote(work)} 2>/dev/null | tail -1 | awk '{{print $4}}')\"",
        "echo \"libedgetpu=$( (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) | grep -m1 'libedgetpu.so.1 ' "
        "| sed 's/.*=> //')\"",
        'echo "edgetpu_compiler=$(command -v edgetpu_compiler)"',
        f'if command -v {shlex.quote(py)} >/dev/null 2>&1; then',
        f'  echo "python_path=$(command -v {shlex.quote(py)})"',
        f"  {shlex.quote(py)} - <<'EDGECNN_PROBE'",
        _PY_PROBE.replace("DEEP", "True" if deep else "False").strip(),
        "EDGECNN_PROBE",
        "fi",
    ])
    res = board.run("sh -s", timeout=max(60.0, board.t.connect_timeout * 6), stdin=script.encode())
    info = BoardInfo(work_dir=work)
    py_json = None
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            py_json = line
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "arch":
            info.arch = value
        elif key == "kernel":
            info.kernel = value
        elif key == "os":
            info.os = value
        elif key == "cores" and value.isdigit():
            info.cores = int(value)
        elif key == "cpu_model":
            info.cpu = value
        elif key == "cpu_part" and value in _ARM_PARTS:
            core = _ARM_PARTS[value]
            info.cpu = f"{info.cpu} ({core})" if info.cpu else core
        elif key == "disk_free_kb" and value.isdigit():
            info.disk_free_bytes = int(value) * 1024
        elif key == "libedgetpu":
            info.libedgetpu = value or None
        elif key == "edgetpu_compiler":
            info.edgetpu_compiler = value or None
        elif key == "python_path":
            info.python_path = value
    if py_json:
        try:
            d = json.loads(py_json)
        except ValueError:
            d = {}
        info.python = d.get("python")
        info.numpy = d.get("numpy")
        info.ai_edge_litert = d.get("ai_edge_litert")
        info.tflite_runtime = d.get("tflite_runtime")
        if d.get("ai_edge_litert_error"):
            info.errors["ai_edge_litert"] = d["ai_edge_litert_error"]
    elif info.python_path:
        info.errors["python"] = " ".join(res.stderr.split())[:200] or "the Python probe printed nothing"
    return info


def missing(info: BoardInfo, profile) -> list[dict]:
    """What the board lacks for this profile, each with the command that installs it."""
    py = _python(profile)
    runtime = _get(profile, "runtime") or "auto"
    delegate = _get(profile, "delegate") or "xnnpack"
    venv_hint = ("python3 -m venv ~/edgecnn-venv && ~/edgecnn-venv/bin/pip install ai-edge-litert numpy "
                 "(then set `python: ~/edgecnn-venv/bin/python` in the profile)")
    out = []
    if info.arch in ("armv7l", "armv6l", "i686"):
        out.append({"what": f"a 64-bit OS ({info.arch} has no LiteRT wheels)",
                    "install": "flash 64-bit Raspberry Pi OS (bookworm, arm64)"})
    if not info.python_path:
        out.append({"what": f"Python ({py} not found)",
                    "install": "sudo apt install python3 python3-venv, or set `python:` in the profile"})
        return out
    if not info.python:
        out.append({"what": f"a working Python ({py}: {info.errors.get('python', 'did not run')})",
                    "install": "set `python:` in the profile to a working interpreter"})
        return out
    if info.numpy is None:
        out.append({"what": "numpy", "install": f"{py} -m pip install numpy"})
    if runtime == "tflite_runtime":
        if info.tflite_runtime is None:
            out.append({"what": "tflite-runtime", "install": f"{py} -m pip install tflite-runtime 'numpy<2'"})
    elif info.ai_edge_litert is None and (runtime == "ai_edge_litert" or info.tflite_runtime is None):
        out.append({"what": "ai-edge-litert", "install": f"{py} -m pip install ai-edge-litert  (or {venv_hint})"})
    elif "ai_edge_litert" in info.errors:
        out.append({"what": f"a working ai-edge-litert ({info.errors['ai_edge_litert']})",
                    "install": f"{py} -m pip install --force-reinstall ai-edge-litert numpy"})
    if delegate == "edgetpu" and not info.libedgetpu:
        out.append({"what": "the Edge TPU runtime libedgetpu.so.1",
                    "install": "add Coral's apt repository (https://coral.ai/docs/accelerator/get-started/) and "
                               "sudo apt install libedgetpu1-std"})
    if info.disk_free_bytes is not None and info.disk_free_bytes < 64 << 20:
        out.append({"what": f"free disk in {info.work_dir} ({info.disk_free_bytes >> 20} MiB left)",
                    "install": "free some space, or point `work_dir` at a larger disk"})
    return out


def check_device(profile) -> dict:
    """`edgecnn devices check NAME`: connect, probe (importing LiteRT for real), list what is missing."""
    t0 = time.monotonic()
    target = ssh_target(profile)
    with SshBoard(target) as board:
        connect_s = time.monotonic() - t0
        info = probe(board, profile, deep=True)
    return {"device": _get(profile, "name"), "host": target.address, "user": target.user,
            "emulated": bool(_get(profile, "emulated", False)), "reachable": True,
            "connect_s": round(connect_s, 3), **info.as_dict(), "missing": missing(info, profile)}


# ---- run -------------------------------------------------------------------------------------------------------


def _settings(settings):
    """A BenchSettings from BenchSettings, a dict of its fields, or None (defaults)."""
    from edgecnn.bench.protocol import BenchSettings

    if isinstance(settings, BenchSettings):
        return settings
    return BenchSettings(**(settings or {}))


def _label(doc: dict, profile, target: SshTarget | None, extra: dict | None = None) -> dict:
    doc.setdefault("schema", SCHEMA)
    doc["device"] = {"name": _get(profile, "name"), "kind": _get(profile, "kind"),
                     "emulated": bool(_get(profile, "emulated", False))}
    doc["transport"] = "ssh"
    if target is not None:
        doc["host"] = target.address
    if extra:
        doc.update(extra)
    return doc


def _failed(error: str, profile, target, model_path, extra=None, settings=None) -> dict:
    from edgecnn.bench.protocol import failed_doc

    return _label(failed_doc(error, str(model_path), settings), profile, target, extra)


def run_remote(profile, model_path, settings=None, samples_npz=None, cancel: threading.Event | None = None) -> dict:
    """One benchmark of `model_path` on the SSH board of `profile`; returns the runner's JSON + device fields.

    `settings` is a `BenchSettings` (or a dict of its fields). Never raises for what happens on the way or on the
    board: the result is then a failed document with a one-line `error`, for the caller to record. `cancel` (a
    threading.Event) stops the run from another thread; Ctrl-C in this thread does the same. Either way the
    runner on the board is interrupted and the document says `"interrupted": true`.
    """
    from edgecnn.bench.protocol import parse_runner_output, runner_args

    model_path = Path(model_path)
    s = _settings(settings)
    if (_get(profile, "delegate") or "") == "edgetpu":
        from edgecnn.bench import edgetpu

        return edgetpu.run_remote_edgetpu(profile, model_path, s, samples_npz, cancel=cancel)
    if not model_path.is_file():
        return _failed(f"{model_path}: no such model file", profile, None, model_path, settings=s)
    target = ssh_target(profile)
    t0 = time.monotonic()
    extra: dict = {"timing_remote": {}}
    state: dict = {"chan": None}
    try:
        with SshBoard(target) as board:
            extra["timing_remote"]["connect_s"] = round(time.monotonic() - t0, 3)
            info = probe(board, profile)
            extra["board"] = {k: getattr(info, k) for k in ("arch", "cpu", "os", "python", "ai_edge_litert",
                                                            "tflite_runtime", "numpy")}
            lacking = [m for m in missing(info, profile) if not m["what"].startswith("free disk")]
            if lacking:
                return _failed(f"device {target.name}: board lacks {' and '.join(m['what'] for m in lacking)}; "
                               f"install: {'; '.join(m['install'] for m in lacking)}", profile, target, model_path,
                               extra, s)
            cache = f"{info.work_dir}/cache"
            files = [RUNNER, model_path] + ([Path(samples_npz)] if samples_npz else [])
            need = sum(p.stat().st_size for p in files)
            if info.disk_free_bytes is not None and info.disk_free_bytes < need + (1 << 20):
                return _failed(f"device {target.name}: board disk full: {info.disk_free_bytes // 1024} KiB free "
                               f"in {info.work_dir}, the run needs {need // 1024 + 1024} KiB",
                               profile, target, model_path, extra, s)
            board.makedirs(cache)
            t1 = time.monotonic()
            runner = board.put_cached(RUNNER, cache)
            model = board.put_cached(model_path, cache)
            samples = board.put_cached(samples_npz, cache) if samples_npz else None
            extra["timing_remote"]["copy_s"] = round(time.monotonic() - t1, 3)
            _check_cancel(cancel)
            args = [runner, *runner_args(model, s, samples)]
            py = info.python_path or _python(profile)
            state["pidfile"] = f"{info.work_dir}/run-{secrets.token_hex(4)}.pid"
            cmd = (f"cd {shlex.quote(info.work_dir)} && echo $$ > {shlex.quote(state['pidfile'])} && "
                   f"exec {shlex.quote(py)} {' '.join(shlex.quote(a) for a in args)}")
            t2 = time.monotonic()
            res = _run_cancellable(board, cmd, cancel, state)
            try:
                board.run(f"rm -f {shlex.quote(state['pidfile'])}", timeout=30)
            except EdgecnnError:
                pass  # the result is in hand; a stale pid file is harmless
            extra["timing_remote"]["run_s"] = round(time.monotonic() - t2, 3)
    except KeyboardInterrupt:
        extra["interrupted"] = True
        return _failed(f"device {target.name}: interrupted (Ctrl-C)", profile, target, model_path, extra, s)
    except EdgecnnError as exc:
        return _failed(str(exc), profile, target, model_path, extra, s)
    extra["timing_remote"]["total_s"] = round(time.monotonic() - t0, 3)
    doc = parse_runner_output(res.stdout, res.stderr, res.exit_status, f"runner on {target.name}")
    if doc.get("status") != "ok" and doc.get("error"):
        doc["error"] = f"device {target.name}: {doc['error']}"
    if isinstance(doc.get("model"), dict) and doc["model"].get("path"):
        doc["model"]["board_path"] = doc["model"]["path"]
        doc["model"]["path"] = str(model_path)
    elif doc.get("model") is None:
        doc["model"] = _failed("", profile, None, model_path)["model"]
    return _label(doc, profile, target, extra)


def _check_cancel(cancel) -> None:
    if (cancel is not None and cancel.is_set()) or CANCEL_ALL.is_set():
        raise KeyboardInterrupt


CANCEL_ALL = threading.Event()  # set by `cancel_all()`: every run in progress (any thread) stops


def cancel_all() -> None:
    """Stop every remote run in progress in this process (Ctrl-C during a multi-device bench)."""
    CANCEL_ALL.set()


def _run_cancellable(board: SshBoard, cmd: str, cancel, state):
    """Run `cmd` in a helper thread; on Ctrl-C here, or `cancel`/`CANCEL_ALL` set, stop the board process and raise.

    The command's own thread blocks in socket reads; this one only waits, so Ctrl-C (delivered to the main
    thread) and cancellation from other threads are both noticed within 0.1 s.
    """
    result, error = {}, {}

    def work():
        try:
            result["r"] = board.run(cmd, on_start=lambda ch: state.__setitem__("chan", ch))
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            error["e"] = exc

    th = threading.Thread(target=work, daemon=True)
    th.start()
    try:
        while th.is_alive():
            th.join(0.1)
            if (cancel is not None and cancel.is_set()) or CANCEL_ALL.is_set():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        _kill_remote(board, state)
        th.join(5)
        raise
    if "e" in error:
        raise error["e"]
    return result["r"]


def _kill_remote(board: SshBoard, state) -> None:
    """Interrupt the runner on the board (the shell wrote its pid, which `exec` kept, to state["pidfile"])."""
    pidfile = state.get("pidfile")
    if pidfile and board.alive:
        q = shlex.quote(pidfile)
        try:
            board.run(f"p=$(cat {q} 2>/dev/null); rm -f {q}; [ -n \"$p\" ] || exit 0; kill -INT $p 2>/dev/null; "
                      f"for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $p 2>/dev/null || exit 0; sleep 0.5; done; "
                      f"kill -KILL $p 2>/dev/null; true", timeout=20)
        except (EdgecnnError, KeyboardInterrupt):
            pass
    chan = state.get("chan")
    if chan is not None:
        chan.close()


__all__ = ["BoardInfo", "ConnectionDropped", "check_device", "missing", "probe", "run_remote",
           "ssh_target"]
