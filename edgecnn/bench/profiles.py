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
| python      | str                                        | python3        | python on the board                        |
| work_dir    | str                                        | ~/.edgecnn     | where files are copied on the board        |
| ssh         | mapping (kind: ssh only; see `SshSettings`)| None           | host, port, user, key, host key, timeouts  |
| ram         | int bytes (kind: mcu, required)            | None           | RAM budget for the TFLM tensor arena       |
| flash       | int bytes (kind: mcu, required)            | None           | flash budget for the model bytes           |

A bare name is looked up in the repository's `devices/` folder, then in the user's config folder
(`~/.config/edgecnn/devices/` on Linux); a path to a .yaml file is read as is. Unknown fields, wrong types and
bad values are errors that name the file and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import EdgecnnError

KINDS = ("local", "ssh", "edgetpu", "mcu")
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "auto")
DELEGATES = ("xnnpack", "none", "edgetpu")
REPO_DEVICES = Path(__file__).resolve().parents[2] / "devices"


@dataclass(frozen=True)
class SshSettings:
    """How to reach an SSH board. No `key` means the SSH agent; no host key pin means known_hosts."""

    host: str
    port: int = 22
    user: str | None = None
    key: str | None = None
    host_key_fingerprint: str | None = None
    known_hosts: str | None = None
    connect_timeout: float = 10.0
    run_timeout: float = 600.0


@dataclass(frozen=True)
class DeviceProfile:
    """One device profile (see the module table)."""

    name: str
    kind: str
    description: str = ""
    emulated: bool = False
    threads: int = 1
    runtime: str = "auto"
    delegate: str = "xnnpack"
    python: str = "python3"
    work_dir: str = "~/.edgecnn"
    ssh: SshSettings | None = None
    ram: int | None = None  # kind mcu: bytes of RAM for the tensor arena (mcu-check budget)
    flash: int | None = None  # kind mcu: bytes of flash for the model
    source: str = ""  # the file it was read from (not a YAML field)


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
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EdgecnnError(f"{path}: bad YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise EdgecnnError(f"{path}: a device profile must be a YAML mapping of fields")
    data = dict(data)
    data.setdefault("name", path.stem)
    if "kind" not in data:
        raise EdgecnnError(f"{path}: missing field 'kind' (one of {', '.join(KINDS)})")
    ssh = data.pop("ssh", None)
    fields = _validated(DeviceProfile, data, path, "", exclude={"ssh", "source"})
    _choice(path, "kind", fields["kind"], KINDS)
    _choice(path, "runtime", fields.get("runtime", "auto"), RUNTIMES)
    _choice(path, "delegate", fields.get("delegate", "xnnpack"), DELEGATES)
    if fields.get("threads", 1) < 1:
        raise EdgecnnError(f"{path}: field 'threads' must be at least 1, got {fields['threads']}")
    for budget in ("ram", "flash"):
        if fields["kind"] == "mcu" and fields.get(budget) is None:
            raise EdgecnnError(f"{path}: kind mcu needs field '{budget}' (bytes, e.g. 262144 for 256 KB)")
        if fields.get(budget) is not None and fields[budget] <= 0:
            raise EdgecnnError(f"{path}: field '{budget}' must be positive bytes, got {fields[budget]}")
    if fields["kind"] == "ssh" and ssh is None:
        raise EdgecnnError(f"{path}: kind ssh needs an 'ssh:' mapping with at least 'host'")
    ssh_settings = None
    if ssh is not None:
        if not isinstance(ssh, dict):
            raise EdgecnnError(f"{path}: field 'ssh' must be a mapping")
        if "host" not in ssh:
            raise EdgecnnError(f"{path}: missing field 'ssh.host'")
        s = _validated(SshSettings, ssh, path, "ssh.")
        if not 0 < s.get("port", 22) < 65536:
            raise EdgecnnError(f"{path}: field 'ssh.port' must be 1..65535, got {s['port']}")
        for t in ("connect_timeout", "run_timeout"):
            if t in s and s[t] <= 0:
                raise EdgecnnError(f"{path}: field 'ssh.{t}' must be positive, got {s[t]}")
        fp = s.get("host_key_fingerprint")
        if fp is not None and not fp.startswith("SHA256:"):
            raise EdgecnnError(f"{path}: field 'ssh.host_key_fingerprint' must look like 'SHA256:...', got {fp!r}")
        ssh_settings = SshSettings(**s)
    return DeviceProfile(**fields, ssh=ssh_settings, source=str(path))


def _choice(path: Path, field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EdgecnnError(f"{path}: field '{field}' must be one of {', '.join(choices)}, got {value!r}")


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _validated(cls, data: dict, path: Path, prefix: str, exclude: set[str] = frozenset()) -> dict:
    """Check `data` against the dataclass `cls`: every key known, every value of the field's type."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in exclude}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise EdgecnnError(f"{path}: unknown field '{prefix}{key}'{hint}")
        type_name = str(fields[key].type).replace(" | None", "")
        ok = _TYPES[type_name]
        if value is None and "None" in str(fields[key].type):
            continue
        if not isinstance(value, ok) or (type_name in ("int", "float") and isinstance(value, bool)):
            raise EdgecnnError(f"{path}: field '{prefix}{key}' must be {type_name}, got {value!r}")
    required = [n for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for n in required:
        if n not in data:
            raise EdgecnnError(f"{path}: missing field '{prefix}{n}'")
    return dict(data)
