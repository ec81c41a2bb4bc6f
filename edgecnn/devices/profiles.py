"""Device profiles: one YAML file per place a model can be benchmarked (`devices/NAME.yaml`).

| field       | type / values                              | default        | meaning                                    |
|-------------|--------------------------------------------|----------------|--------------------------------------------|
| name        | str                                        | file stem      | the name results are stored under          |
| kind        | local, ssh, edgetpu, mcu                   | (required)     | how the board runner is reached            |
| description | str                                        | ""             | free text                                  |
| emulated    | bool                                       | false          | timings are not real hardware: labelled    |
| threads     | int >= 1                                   | 1              | default --threads                          |
| runtime     | ai_edge_litert, tflite_runtime, auto       | auto           | interpreter on the board                   |
| delegate    | xnnpack, none, edgetpu                     | xnnpack        | default delegate                           |
| target      | cpu, edgetpu, tflm (`edgecnn.targets`)     | kind, delegate | what `edgecnn run` converts its models for |
| python      | str                                        | python3        | python on the board                        |
| work_dir    | str                                        | ~/edgecnn      | where files are copied on the board        |
| ssh         | mapping (kind: ssh only; see `SshSettings`)| None           | host, port, user, key, host key, timeouts  |
| ram         | int bytes (kind: mcu, required)            | None           | RAM budget for the TFLM tensor arena       |
| flash       | int bytes (kind: mcu, required)            | None           | flash budget for the model bytes           |

A bare name is looked up in the repository's `devices/` folder, then in the user's config folder
(`~/.config/edgecnn/devices/` on Linux); a path to a .yaml file is read as is. Unknown fields, wrong types and
bad values are errors that name the file and the field (schema: `edgecnn.schema`, pydantic, strict).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from edgecnn.errors import EdgecnnError
from edgecnn.schema import Strict, load_yaml, validate
from edgecnn.targets import DELEGATES, DEVICE_KINDS, check_profile, target_of

KINDS = DEVICE_KINDS  # the kinds and delegates the target table knows (edgecnn.targets)
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "auto")
REPO_DEVICES = Path(__file__).resolve().parents[2] / "devices"


class SshSettings(Strict):
    """How to reach an SSH board. No `key` means the SSH agent; no host key pin means known_hosts."""

    host: str
    port: int = Field(22, ge=1, le=65535)
    user: Optional[str] = None
    key: Optional[str] = None
    host_key_fingerprint: Optional[str] = Field(None, pattern=r"^SHA256:")
    known_hosts: Optional[str] = None
    connect_timeout: float = Field(10.0, gt=0)
    run_timeout: float = Field(600.0, gt=0)


class DeviceProfile(Strict):
    """One device profile (see the module table)."""

    name: str
    kind: Literal[KINDS]
    description: str = ""
    emulated: bool = False
    threads: int = Field(1, ge=1)
    runtime: Literal["ai_edge_litert", "tflite_runtime", "auto"] = "auto"
    delegate: Literal[DELEGATES] = "xnnpack"
    target: Optional[str] = None  # where its models run (edgecnn.targets); None: the one its kind and delegate give
    python: str = "python3"
    work_dir: str = "~/edgecnn"
    ssh: Optional[SshSettings] = None
    ram: Optional[int] = Field(None, gt=0)  # kind mcu: bytes of RAM for the tensor arena (mcu-check budget)
    flash: Optional[int] = Field(None, gt=0)  # kind mcu: bytes of flash for the model
    source: str = Field("", exclude=True)  # the file it was read from (not a YAML field)

    @model_validator(mode="after")
    def _kind_needs(self) -> "DeviceProfile":
        if self.kind == "mcu":
            for budget in ("ram", "flash"):
                if getattr(self, budget) is None:
                    raise ValueError(f"kind mcu needs field '{budget}' (bytes, e.g. 262144 for 256 KB)")
        if self.kind == "ssh" and self.ssh is None:
            raise ValueError("kind ssh needs an 'ssh:' mapping with at least 'host'")
        if self.target is None:  # frozen: set once, here, from the target table
            object.__setattr__(self, "target", target_of(self.kind, self.delegate))
        else:
            check_profile(self.kind, self.delegate, self.target)
        return self


def _user_devices() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("edgecnn")) / "devices"


def search_dirs() -> list[Path]:
    return [REPO_DEVICES, _user_devices()]


def available() -> list[str]:
    """Names of all profiles found in the search folders."""
    names = set()
    for d in search_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def load_profile(name_or_path: str) -> DeviceProfile:
    """The profile called `name_or_path` (searched, see the module docstring) or read from that .yaml path."""
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or p.is_file() or "/" in name_or_path:
        if not p.is_file():
            raise EdgecnnError(f"{p}: no such device profile file")
        return parse_profile(p)
    for d in search_dirs():
        for suffix in (".yaml", ".yml"):
            cand = d / f"{name_or_path}{suffix}"
            if cand.is_file():
                return parse_profile(cand)
    names = available()
    close = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names) or 'none'}"
    raise EdgecnnError(f"device {name_or_path!r}: no profile found in {', '.join(map(str, search_dirs()))}{hint}")


def parse_profile(path: Path) -> DeviceProfile:
    """Read and validate one profile file."""
    data = load_yaml(path)
    if isinstance(data, dict):
        data = {"name": path.stem, **data}
        if "source" in data:
            raise EdgecnnError(f"{path}: field 'source': unknown field")
        data["source"] = str(path)
    return validate(DeviceProfile, data, path)
