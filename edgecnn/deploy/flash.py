"""`edgecnn flash` / `flash --rollback` / `deployed`: install a model on an SSH board so it is never half there.

| step        | on the board, under `<work_dir>/deployed/`                                    | on failure                      |
|-------------|-------------------------------------------------------------------------------|---------------------------------|
| space       | `df` of the folder: the model + 256 KiB must fit                               | "board full", nothing written   |
| copy        | SFTP to `<name>.tflite.tmp-<pid>`                                              | temp removed; model untouched   |
| verify      | `sha256sum` of the temp file == the local file's                               | "checksum mismatch", temp removed|
| smoke       | (`--smoke`) the board runner loads the *temp* file, runs 1 inference; IO shapes| "smoke test failed", temp removed|
|             | and dtypes must equal the host's view of the model                            |                                 |
| keep        | the current `<name>.tflite` is hard-linked (or copied) to `<name>.tflite.prev` | model untouched                 |
| install     | `mv -f` temp -> `<name>.tflite`: one rename() on one filesystem, atomic        |                                 |
| manifest    | `manifest.json` (hash, size, date, source of current and previous) rewritten   | files stay the truth            |
|             | via a temp file + rename                                                      |                                 |

At every instant `<name>.tflite` is either the old complete model or the new verified one. `--rollback` swaps the
previous version back the same way (and the rolled-back one becomes the previous, so a second rollback re-applies
it). `deployed` lists the installed models with hashes computed on the board (not trusted from the manifest) and
dates. Every flash and rollback, ok or failed, is a row in the results database's `deployments` table.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import posixpath
import re
import shlex
import time
from datetime import datetime, timezone
from pathlib import Path

from edgecnn.errors import EdgecnnError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MANIFEST = "manifest.json"
SPARE_BYTES = 256 * 1024  # left free on the board after a flash (logs, the manifest, the OS)
_SHA_CMD = ("sha256sum {p} 2>/dev/null || {py} -c 'import hashlib,sys; "
            "print(hashlib.sha256(open(sys.argv[1],\"rb\").read()).hexdigest(), sys.argv[1])' {p}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name) or name.endswith((".prev", ".json")) or ".tmp-" in name:
        raise EdgecnnError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (it names a file on the board)")
    return name


def ssh_profile(device: str):
    """The profile of `device`, which must be reachable over SSH."""
    from edgecnn.devices.profiles import load_profile

    profile = load_profile(device)
    if profile.ssh is None:
        raise EdgecnnError(f"device {profile.name}: kind {profile.kind} has no board to flash to; flash needs an "
                           "SSH board profile (ssh: host, user, key)" + ("; for an MCU use `edgecnn export-c`"
                                                                         if profile.kind == "mcu" else ""))
    return profile


class Deployer:
    """One connection to one board's `deployed/` folder. Every failure is an `EdgecnnError` (one line)."""

    def __init__(self, board, profile):
        self.board, self.profile = board, profile
        self.dir = posixpath.join(board.resolve(profile.work_dir), "deployed")

    def err(self, msg: str) -> EdgecnnError:
        return EdgecnnError(self.board.message(msg))

    def path(self, name: str, suffix: str = "") -> str:
        return posixpath.join(self.dir, f"{name}.tflite{suffix}")

    def sh(self, cmd: str, timeout: float = 120):
        return self.board.run(cmd, timeout=timeout)

    def sha256(self, path: str) -> str | None:
        """The sha256 of `path` computed on the board, None when the file is absent."""
        q = shlex.quote(path)
        res = self.sh(f"[ -f {q} ] || exit 3; " + _SHA_CMD.format(p=q, py="python3"))
        if res.exit_status == 3:
            return None
        fields = res.stdout.split()
        if res.exit_status != 0 or not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
            raise self.err(f"cannot hash {path} on the board: {(res.stderr or res.stdout).strip()[:200]}")
        return fields[0]

    def ensure_dir(self) -> None:
        try:
            self.board.makedirs(self.dir)
        except EdgecnnError as exc:
            if "ermission denied" in str(exc) or "Errno 13" in str(exc):
                raise self.err(f"permission denied: cannot create {self.dir} on the board") from None
            raise
        res = self.sh(f"[ -w {shlex.quote(self.dir)} ] && [ -x {shlex.quote(self.dir)} ]")
        if res.exit_status != 0:
            raise self.err(f"permission denied: {self.dir} on the board is not writable by "
                           f"{self.board.t.user or 'the login user'}")

    def manifest(self) -> dict:
        try:
            with self.board.sftp.open(posixpath.join(self.dir, MANIFEST), "r") as fh:
                data = json.loads(fh.read().decode("utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnicodeDecodeError):
            return {}  # a damaged manifest is rebuilt from the files, which are the truth

    def write_manifest(self, data: dict) -> None:
        final = posixpath.join(self.dir, MANIFEST)
        tmp = f"{final}.tmp-{os.getpid()}"
        try:
            with self.board.sftp.open(tmp, "w") as fh:
                fh.write(json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))
            self.board.sftp.posix_rename(tmp, final)
        except OSError as exc:
            self.board.remove_quietly(tmp)
            raise self.err(f"model installed, but the manifest could not be written: {exc}") from None

    def remove(self, path: str) -> None:
        self.board.remove_quietly(path)

    def remove_stale_temps(self, name: str) -> None:
        self.sh(f"rm -f {shlex.quote(self.path(name))}.tmp-* {shlex.quote(self.path(name))}.swap-*")


def upload(board, local: Path, remote: str) -> None:
    """Copy `local` to `remote` by SFTP (the one place bytes travel; tests patch it to corrupt or cut a copy)."""
    board.sftp.put(str(local), remote, confirm=True)


def _copy_error(dep: Deployer, exc: BaseException, local: Path, size: int) -> EdgecnnError:
    if isinstance(exc, EdgecnnError):
        return exc
    if not dep.board.alive:
        return dep.err(f"connection dropped while copying {local.name}; the deployed model is unchanged")
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
        return dep.err(f"permission denied writing to {dep.dir} on the board")
    free = dep.board.free_bytes(dep.dir)
    if getattr(exc, "errno", None) == errno.ENOSPC or (free is not None and free < size + SPARE_BYTES):
        return dep.err(f"board full: {(free or 0) // 1024} KiB free in {dep.dir}, {local.name} needs "
                       f"{size // 1024 + 1} KiB; the deployed model is unchanged")
    return dep.err(f"copying {local.name} failed: {exc or type(exc).__name__}; the deployed model is unchanged")


def smoke_test(dep: Deployer, remote_model: str, local_io: dict) -> dict:
    """Load `remote_model` with the board runner and run one inference; IO must match the host's view."""
    from edgecnn.bench.protocol import RUNNER_PATH, parse_runner_output

    cache = posixpath.join(posixpath.dirname(dep.dir), "cache")
    dep.board.makedirs(cache)
    runner = dep.board.put_cached(RUNNER_PATH, cache)
    py = dep.profile.python or "python3"
    py = dep.board.resolve(py) if py.startswith("~/") else py
    cmd = f"{shlex.quote(py)} {shlex.quote(runner)} {shlex.quote(remote_model)} --runs 1 --warmup 0"
    if dep.profile.delegate == "none":
        cmd += " --no-xnnpack"
    res = dep.board.run(cmd)
    doc = parse_runner_output(res.stdout, res.stderr, res.exit_status, "board runner")
    if doc.get("status") != "ok":
        raise dep.err(f"smoke test failed, the board cannot run this model: {doc.get('error') or 'no result'}; "
                      "the deployed model is unchanged")
    board_io = doc.get("io") or {}
    for kind in ("inputs", "outputs"):
        want = [(t["shape"], t["dtype"]) for t in local_io.get(kind, [])]
        got = [(t.get("shape"), t.get("dtype")) for t in board_io.get(kind, [])]
        if want and got != want:
            raise dep.err(f"smoke test failed: {kind} on the board are {got}, expected {want}; the deployed model "
                          "is unchanged")
    return {"status": "ok", "io": board_io, "runtime": doc.get("runtime"),
            "first_ms": (doc.get("timing") or {}).get("first_ms")}


def _record(db_path, doc: dict) -> None:
    from edgecnn.store.db import open_db

    with open_db(db_path) as db:
        db.record_deployment(doc)


def _open_db_first(db_path) -> None:
    """Refuse an unusable results database before touching the board."""
    from edgecnn.store.db import open_db

    open_db(db_path).close()


def _doc(action: str, profile, name: str, **fields) -> dict:
    return {"created_at": _now(), "action": action, "status": "failed", "error": None, "device": profile.name,
            "emulated": profile.emulated, "name": name, "smoke": None, **fields}


def flash(model: str | Path, device: str, name: str | None = None, smoke: bool = False, db_path=None) -> dict:
    """Install `model` on the board of `device` as `<name>.tflite` (see the module table); returns the record."""
    from edgecnn.devices.board import ssh_target
    from edgecnn.devices.ssh import SshBoard
    from edgecnn.tflite.reader import read_tflite

    model = Path(model)
    data = read_tflite(model)
    profile = ssh_profile(device)
    name = check_name(name or model.stem)
    digest, size = hashlib.sha256(data).hexdigest(), len(data)
    _open_db_first(db_path)
    doc = _doc("flash", profile, name, model_path=str(model), model_sha256=digest, model_size=size,
               smoke=bool(smoke))
    with _recorded(db_path, doc, f"device {profile.name}: interrupted (Ctrl-C); the deployed model is unchanged"):
        with SshBoard(ssh_target(profile)) as board:
            dep = Deployer(board, profile)
            doc["board_dir"] = dep.dir
            dep.ensure_dir()
            final, prev = dep.path(name), dep.path(name, ".prev")
            current = dep.sha256(final)
            doc["previous_sha256"] = current
            if current == digest:
                doc.update(status="ok", unchanged=True, board_path=final)
            else:
                _install(dep, model, data, name, digest, current, smoke, doc)
    return doc


def _install(dep: Deployer, model: Path, data: bytes, name: str, digest: str, current: str | None, smoke: bool,
             doc: dict) -> None:
    """Copy, verify, (smoke), keep the previous version, rename into place, update the manifest."""
    import paramiko

    from edgecnn.deploy.export_c import io_summary

    board, size = dep.board, len(data)
    final, prev = dep.path(name), dep.path(name, ".prev")
    dep.remove_stale_temps(name)
    free = board.free_bytes(dep.dir)
    need = size + SPARE_BYTES  # the previous version is kept by a hard link: no second copy
    if free is not None and free < need:
        raise dep.err(f"board full: {free // 1024} KiB free in {dep.dir}, {model.name} needs "
                      f"{size // 1024 + 1} KiB + {SPARE_BYTES // 1024} KiB spare; the deployed model is "
                      "unchanged")
    tmp = dep.path(name, f".tmp-{os.getpid()}")
    try:
        try:
            upload(board, model, tmp)
        except (OSError, EOFError, EdgecnnError, paramiko.SSHException) as exc:
            raise _copy_error(dep, exc, model, size) from None
        seen = dep.sha256(tmp)
        doc["board_sha256"] = seen
        if seen != digest:
            raise dep.err(f"checksum mismatch after copy: the board has {str(seen)[:16]}, {model.name} is "
                          f"{digest[:16]}; the deployed model is unchanged")
        if smoke:
            doc["smoke_result"] = smoke_test(dep, tmp, io_summary(data))
        keep = (f"if [ -f {shlex.quote(final)} ]; then ln -f {shlex.quote(final)} {shlex.quote(prev)}.new "
                f"2>/dev/null || cp -p {shlex.quote(final)} {shlex.quote(prev)}.new || exit 4; "
                f"mv -f {shlex.quote(prev)}.new {shlex.quote(prev)} || exit 4; fi; "
                f"mv -f {shlex.quote(tmp)} {shlex.quote(final)} || exit 5")
        res = dep.sh(keep)
        if res.exit_status != 0:
            what = "keeping the previous version" if res.exit_status == 4 else "renaming into place"
            raise dep.err(f"{what} failed on the board: {res.stderr.strip()[:200]}; the deployed model is "
                          "unchanged")
    except BaseException:
        if board.alive:
            dep.remove(tmp)
            dep.remove(f"{prev}.new")
        raise
    manifest = dep.manifest()
    old = manifest.get(name)
    entry = {"sha256": digest, "size": size, "installed_at": doc["created_at"], "source": str(model),
             "smoke": bool(smoke)}
    if current is not None:
        entry["previous"] = ({k: v for k, v in old.items() if k != "previous"}
                             if old and old.get("sha256") == current else {"sha256": current})
    manifest[name] = entry
    dep.write_manifest(manifest)
    doc.update(status="ok", board_path=final, kept_previous=prev if current is not None else None)


@contextlib.contextmanager
def _recorded(db_path, doc: dict, interrupted: str):
    """Time the block and record `doc` in the results database whatever happens: ok, an EdgecnnError (its
    message becomes the row's error) or Ctrl-C (`interrupted`); errors are re-raised after recording."""
    t0 = time.monotonic()
    try:
        yield
    except KeyboardInterrupt:
        doc["error"] = interrupted
        raise
    except EdgecnnError as exc:
        doc["error"] = str(exc)
        raise
    finally:
        doc["seconds"] = round(time.monotonic() - t0, 3)
        _record(db_path, doc)


def rollback(device: str, name: str, db_path=None) -> dict:
    """Put `<name>.tflite.prev` back as `<name>.tflite` (atomically); the replaced version becomes the previous."""
    from edgecnn.devices.board import ssh_target
    from edgecnn.devices.ssh import SshBoard

    profile = ssh_profile(device)
    name = check_name(name)
    _open_db_first(db_path)
    doc = _doc("rollback", profile, name)
    with _recorded(db_path, doc, f"device {profile.name}: interrupted (Ctrl-C) during rollback"):
        with SshBoard(ssh_target(profile)) as board:
            dep = Deployer(board, profile)
            doc["board_dir"] = dep.dir
            final, prev = dep.path(name), dep.path(name, ".prev")
            prev_sha = dep.sha256(prev)
            if prev_sha is None:
                raise dep.err(f"nothing to roll back to: no previous version of {name} in {dep.dir}")
            current = dep.sha256(final)
            manifest = dep.manifest()
            entry = manifest.get(name) or {}
            want = (entry.get("previous") or {}).get("sha256")
            if want and want != prev_sha:
                raise dep.err(f"previous version of {name} is damaged on the board (sha256 {prev_sha[:16]} != "
                              f"{want[:16]} in the manifest); not rolling back")
            doc.update(model_sha256=prev_sha, previous_sha256=current, model_path=prev)
            swap = dep.path(name, f".swap-{os.getpid()}")
            q = shlex.quote
            cmd = (f"if [ -f {q(final)} ]; then ln -f {q(final)} {q(swap)} 2>/dev/null || cp -p {q(final)} {q(swap)} "
                   f"|| exit 4; fi; mv -f {q(prev)} {q(final)} || exit 5; "
                   f"if [ -f {q(swap)} ]; then mv -f {q(swap)} {q(prev)}; fi")
            res = dep.sh(cmd)
            if res.exit_status != 0:
                dep.remove(swap)
                raise dep.err(f"rollback failed on the board: {res.stderr.strip()[:200]}; the deployed model is "
                              "unchanged")
            restored = {k: v for k, v in (entry.get("previous") or {"sha256": prev_sha}).items()}
            restored.update(rolled_back_at=doc["created_at"])
            if current is not None:
                restored["previous"] = {k: v for k, v in entry.items() if k != "previous"} or {"sha256": current}
            manifest[name] = restored
            dep.write_manifest(manifest)
            doc.update(status="ok", board_path=final)
    return doc


def deployed(device: str) -> dict:
    """What is installed on the board: name, sha256 (computed there), size, date, and the previous version."""
    from edgecnn.devices.board import ssh_target
    from edgecnn.devices.ssh import SshBoard

    profile = ssh_profile(device)
    with SshBoard(ssh_target(profile)) as board:
        dep = Deployer(board, profile)
        q = shlex.quote(dep.dir)
        script = (f"[ -d {q} ] || exit 0; cd {q} || exit 3; for f in *.tflite *.tflite.prev; do [ -f \"$f\" ] || "
                  "continue; printf '%s %s ' \"$(stat -c '%s %Y' \"$f\")\" \"$f\"; "
                  + _SHA_CMD.format(p='"$f"', py="python3") + "; done")
        res = dep.sh(script)
        if res.exit_status != 0:
            raise dep.err(f"cannot list {dep.dir}: {res.stderr.strip()[:200]}")
        files = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0].isdigit() and parts[1].isdigit():
                files[parts[2]] = {"size": int(parts[0]), "mtime": int(parts[1]), "sha256": parts[3]}
        manifest = dep.manifest() if files else {}
    models = []
    for fname in sorted(f for f in files if f.endswith(".tflite")):
        name = fname[: -len(".tflite")]
        f, entry = files[fname], manifest.get(name) or {}
        p = files.get(f"{fname}.prev")
        models.append({
            "name": name, "path": posixpath.join(dep.dir, fname), "sha256": f["sha256"], "size": f["size"],
            "installed_at": entry.get("rolled_back_at") or entry.get("installed_at")
            or datetime.fromtimestamp(f["mtime"], timezone.utc).isoformat(timespec="seconds"),
            "source": entry.get("source"), "manifest_matches": entry.get("sha256") == f["sha256"] if entry else None,
            "previous": None if p is None else {
                "sha256": p["sha256"], "size": p["size"],
                "installed_at": (entry.get("previous") or {}).get("installed_at")
                or datetime.fromtimestamp(p["mtime"], timezone.utc).isoformat(timespec="seconds")},
        })
    return {"device": profile.name, "emulated": profile.emulated, "dir": dep.dir, "models": models}
