"""What a board is and has: the SSH target of a profile, a probe of the board, what it lacks.

| function        | what it does                                                                   | returns            |
|-----------------|--------------------------------------------------------------------------------|--------------------|
| `ssh_target`    | the profile's `ssh:` block as an `SshTarget`                                    | `SshTarget`        |
| `connect`       | an open `SshBoard` for a profile (a context manager)                            | `SshBoard`         |
| `probe`         | what the board has: arch, CPU, OS, free disk, Python, numpy, LiteRT, libedgetpu | `BoardInfo`        |
| `missing`       | what the board lacks for the profile, each with the command that installs it    | list of dicts      |
| `check_device`  | `probe` + `missing` (`edgecnn devices check NAME`)                              | dict               |

Shared by bench (remote runs), deploy (flash) and the pipeline; nothing here runs a model.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field

from edgecnn.devices.profiles import DeviceProfile
from edgecnn.devices.ssh import SshBoard, SshTarget
from edgecnn.errors import EdgecnnError

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


def ssh_target(profile: DeviceProfile) -> SshTarget:
    """The SshTarget of a device profile's `ssh:` block (validated by its schema)."""
    if profile.ssh is None:
        raise EdgecnnError(f"device {profile.name}: the profile has no ssh.host; a remote bench needs one")
    return SshTarget(**profile.ssh.model_dump(), name=profile.name)


# ---- probe / devices check ---------------------------------------------------------------------------------------


def probe(board: SshBoard, profile, deep: bool = False) -> BoardInfo:
    """Ask the board what it has (one shell command + one Python start)."""
    py = profile.python
    work = board.resolve(profile.work_dir)
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
    py, runtime, delegate = profile.python, profile.runtime, profile.delegate
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
    return {"device": profile.name, "host": target.address, "user": target.user,
            "emulated": profile.emulated, "reachable": True,
            "connect_s": round(connect_s, 3), **info.as_dict(), "missing": missing(info, profile)}




def connect(profile) -> SshBoard:
    """An open connection to the profile's board: `with connect(profile) as board: ...`."""
    return SshBoard(ssh_target(profile))
