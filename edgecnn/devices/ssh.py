"""SSH transport to a board (paramiko): verified host key, key or agent login, timeouts, cached uploads.

| step        | what it does                                                         | failure (one line, `EdgecnnError`)         |
|-------------|----------------------------------------------------------------------|--------------------------------------------|
| connect     | TCP + SSH handshake within `connect_timeout`                          | unreachable / refused / timed out          |
| host key    | compared with the profile's `host_key_fingerprint` or known_hosts     | unknown or changed key: shows the key seen |
| login       | the profile's key file, else the ssh-agent's keys, else ~/.ssh/id_*   | authentication failed (names the key file) |
| `put_cached`| SFTP to a temporary name, sha256 checked on the board, then renamed   | disk full / copy corrupted                 |
| `run`       | one command, stdout/stderr collected, within `run_timeout`            | timed out / connection dropped             |

Host keys are never accepted silently: an unknown key is an error that prints its SHA256 fingerprint and the two
ways to trust it. Passwords are not supported (key-only boards); key contents and passphrases are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import secrets
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from edgecnn.atomic import sha256_file
from edgecnn.errors import EdgecnnError


@dataclass
class SshTarget:
    """Where and how to log in: the `ssh:` block of a device profile."""

    host: str
    port: int = 22
    user: str | None = None
    key: str | None = None  # path to a private key file; None = ssh-agent, then ~/.ssh/id_*
    host_key_fingerprint: str | None = None  # "SHA256:..." as `ssh-keygen -lf` prints it
    known_hosts: str | None = None  # default ~/.ssh/known_hosts
    connect_timeout: float = 10.0
    run_timeout: float = 600.0
    name: str = "board"  # the device name, for messages

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass
class RunResult:
    exit_status: int
    stdout: str
    stderr: str
    seconds: float


class ConnectionDropped(EdgecnnError):
    """The SSH connection went away while a command was running."""


class RunTimeout(EdgecnnError):
    """A command on the board did not finish within run_timeout."""


def fingerprint(key) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key ("SHA256:" + unpadded base64)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")




class SshBoard:
    """One SSH connection to a board. Use as a context manager; every failure is an `EdgecnnError`."""

    def __init__(self, target: SshTarget):
        self.t = target
        self._transport = None
        self._sftp = None
        self.home: str | None = None

    # ---- connection -----------------------------------------------------------------------------------------
    def __enter__(self) -> "SshBoard":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def message(self, msg: str) -> str:
        """`msg` prefixed with the device and address, as every error of this board reads."""
        return f"device {self.t.name} ({self.t.user + '@' if self.t.user else ''}{self.t.address}): {msg}"

    def connect(self) -> None:
        import paramiko

        t = self.t
        try:
            sock = socket.create_connection((t.host, t.port), timeout=t.connect_timeout)
        except socket.timeout:
            raise EdgecnnError(self.message(f"unreachable: no answer within {t.connect_timeout:g} s (connect_timeout)"))
        except ConnectionRefusedError:
            raise EdgecnnError(self.message("connection refused: is sshd running on that port?"))
        except OSError as exc:
            raise EdgecnnError(self.message(f"unreachable: {exc.strerror or exc}"))
        transport = paramiko.Transport(sock)
        transport.banner_timeout = t.connect_timeout
        transport.auth_timeout = t.connect_timeout
        try:
            transport.start_client(timeout=t.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise EdgecnnError(self.message(f"SSH handshake failed: {exc or type(exc).__name__}"))
        self._transport = transport
        try:
            self._check_host_key(transport.get_remote_server_key())
            self._authenticate(transport)
            transport.set_keepalive(15)
        except BaseException:
            self.close()
            raise

    def _check_host_key(self, key) -> None:
        import paramiko

        t = self.t
        seen = fingerprint(key)
        seen_desc = f"{key.get_name()} {seen}"
        if t.host_key_fingerprint:
            want = t.host_key_fingerprint.strip()
            if not want.startswith("SHA256:"):
                raise EdgecnnError(self.message(f"host_key_fingerprint must look like SHA256:... (ssh-keygen -lf), got {want!r}"))
            if want.rstrip("=") != seen:
                raise EdgecnnError(self.message(
                    f"HOST KEY MISMATCH: the profile expects {want}, the board offered {seen_desc} "
                    "(a reinstalled board or a man-in-the-middle; if you trust the new key, update host_key_fingerprint)"))
            return
        path = Path(os.path.expanduser(t.known_hosts or "~/.ssh/known_hosts"))
        known = paramiko.HostKeys()
        if path.is_file():
            try:
                known.load(str(path))
            except (OSError, paramiko.SSHException) as exc:
                raise EdgecnnError(self.message(f"cannot read known_hosts {path}: {exc}"))
        entry = known.lookup(t.known_hosts_name)
        if not entry:
            raise EdgecnnError(self.message(
                f"host key not known ({seen_desc}); to trust it, set host_key_fingerprint: {seen} in the profile "
                f"or add it to {path} (ssh-keyscan -p {t.port} {t.host} >> {path})"))
        if key.get_name() in entry and entry[key.get_name()] == key:
            return
        expected = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in entry.values())
        raise EdgecnnError(self.message(
            f"HOST KEY MISMATCH: {path} has {expected}, the board offered {seen_desc} (a reinstalled board or a "
            f"man-in-the-middle; if you trust the new key: ssh-keygen -f {path} -R '{t.known_hosts_name}')"))

    def _authenticate(self, transport) -> None:
        import paramiko

        t = self.t
        user = t.user or os.environ.get("USER") or "pi"
        keys: list = []
        if t.key:
            path = Path(os.path.expanduser(t.key))
            if not path.is_file():
                raise EdgecnnError(self.message(f"key file {path} not found"))
            try:
                keys.append((str(path), paramiko.PKey.from_path(str(path))))
            except paramiko.PasswordRequiredException:
                raise EdgecnnError(self.message(f"key file {path} is encrypted: add it to ssh-agent and leave `key` unset"))
            except (paramiko.SSHException, OSError, ValueError) as exc:
                raise EdgecnnError(self.message(f"cannot load key file {path}: {type(exc).__name__}"))
        else:
            try:
                keys.extend(("ssh-agent", k) for k in paramiko.Agent().get_keys())
            except paramiko.SSHException:
                pass
            for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
                p = Path.home() / ".ssh" / name
                if p.is_file():
                    try:
                        keys.append((str(p), paramiko.PKey.from_path(str(p))))
                    except (paramiko.SSHException, OSError, ValueError):
                        continue  # encrypted or unreadable: the agent is the way for those
        if not keys:
            raise EdgecnnError(self.message("no SSH key: set `key:` in the profile or load one into ssh-agent"))
        tried = []
        for label, key in keys:
            tried.append(label)
            try:
                transport.auth_publickey(user, key)
            except paramiko.AuthenticationException:
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise EdgecnnError(self.message(f"login failed: {exc or type(exc).__name__}"))
            if transport.is_authenticated():
                return
        raise EdgecnnError(self.message(f"authentication failed for user {user} with key {', '.join(tried)}"))

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # closing a dead connection: nothing left to report
                pass
            self._sftp = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def alive(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    # ---- commands -------------------------------------------------------------------------------------------
    def run(self, command: str, timeout: float | None = None, stdin: bytes | None = None,
            on_start=None) -> RunResult:
        """Run `command` in the login shell; raise RunTimeout / ConnectionDropped, else return its result.

        `on_start(channel)` is called once the command runs (the caller can remember it to cancel on Ctrl-C).
        """
        import paramiko

        timeout = self.t.run_timeout if timeout is None else timeout
        if not self.alive:
            raise ConnectionDropped(self.message("connection dropped"))
        t0 = time.monotonic()
        try:
            chan = self._transport.open_session(timeout=self.t.connect_timeout)
            chan.exec_command(command)
            if on_start is not None:
                on_start(chan)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            chan.settimeout(1.0)
            out, err = bytearray(), bytearray()
            while True:
                got = False
                while chan.recv_ready():
                    out += chan.recv(1 << 16)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                    got = True
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed or not self._transport.is_active():
                    out += _drain(chan.recv, chan.recv_ready)
                    err += _drain(chan.recv_stderr, chan.recv_stderr_ready)
                    if chan.exit_status_ready():
                        break
                    raise ConnectionDropped(self.message(
                        f"connection dropped during the run after {time.monotonic() - t0:.1f} s"))
                if time.monotonic() - t0 > timeout:
                    chan.close()
                    raise RunTimeout(self.message(f"command did not finish within {timeout:g} s (run_timeout)"))
                if not got:
                    chan.status_event.wait(0.05)
            status = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if isinstance(exc, EdgecnnError):
                raise
            raise ConnectionDropped(self.message(
                f"connection dropped during the run after {time.monotonic() - t0:.1f} s ({exc or type(exc).__name__})"))
        if status == -1:
            raise ConnectionDropped(self.message(f"connection dropped during the run after {time.monotonic() - t0:.1f} s"))
        return RunResult(status, out.decode(errors="replace"), err.decode(errors="replace"),
                         time.monotonic() - t0)

    # ---- files ----------------------------------------------------------------------------------------------
    @property
    def sftp(self):
        import paramiko

        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport)
                self._sftp.get_channel().settimeout(max(self.t.connect_timeout, 30.0))
                self.home = self._sftp.normalize(".")
            except (paramiko.SSHException, EOFError, OSError) as exc:
                why = str(exc) or type(exc).__name__
                if self._transport is None or not self._transport.is_active():  # the board went away
                    raise ConnectionDropped(self.message(f"connection dropped (opening SFTP: {why})")) from None
                raise ConnectionDropped(self.message(f"SFTP unavailable: {why}")) from None
        return self._sftp

    def resolve(self, path: str) -> str:
        """A board path with `~` expanded to the login's home directory (SFTP and commands both need it)."""
        self.sftp  # noqa: B018 - opening SFTP learns the home directory
        if path == "~":
            return self.home
        if path.startswith("~/"):
            return posixpath.join(self.home, path[2:])
        return path if path.startswith("/") else posixpath.join(self.home, path)

    def makedirs(self, path: str) -> None:
        parts, cur = path.strip("/").split("/"), ""
        for part in parts:
            cur += "/" + part
            try:
                self.sftp.stat(cur)
            except FileNotFoundError:
                try:
                    self.sftp.mkdir(cur)
                except OSError as exc:
                    raise EdgecnnError(self.message(f"cannot create {cur} on the board: {exc}"))
            except OSError as exc:
                raise ConnectionDropped(self.message(f"SFTP failed: {exc}")) from None

    def free_bytes(self, path: str) -> int | None:
        """Free space at `path` on the board (df), or None when it cannot be told."""
        res = self.run(f"df -Pk {shlex.quote(path)} 2>/dev/null | tail -1", timeout=60)
        fields = res.stdout.split()
        if len(fields) >= 4 and fields[3].isdigit():
            return int(fields[3]) * 1024
        return None

    def put_cached(self, local: str | os.PathLike, remote_dir: str, digest: str | None = None) -> str:
        """Copy `local` into `remote_dir` as `<sha256[:16]>-<name>` unless it is there already; return its path.

        The copy goes to a temporary name, its sha256 is checked on the board, then it is renamed into place, so
        a file under its final name is always complete and correct: that name is the cache key.
        """
        local = Path(local)
        digest = digest or sha256_file(local)
        final = posixpath.join(remote_dir, f"{digest[:16]}-{local.name}")
        size = local.stat().st_size
        try:
            if self.sftp.stat(final).st_size == size:
                return final
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConnectionDropped(self.message(f"SFTP failed: {exc}")) from None
        tmp = f"{final}.tmp-{secrets.token_hex(4)}"
        try:
            self.sftp.put(str(local), tmp, confirm=True)
        except (OSError, EOFError) as exc:
            self.remove_quietly(tmp)
            if not self.alive:
                raise ConnectionDropped(self.message(f"connection dropped while copying {local.name}")) from None
            free = self.free_bytes(remote_dir)
            if free is not None and free < size + (1 << 20):
                raise EdgecnnError(self.message(
                    f"board disk full: {free // 1024} KiB free in {remote_dir}, {local.name} needs {size // 1024} KiB"))
            raise EdgecnnError(self.message(f"copying {local.name} to {remote_dir} failed: {exc}")) from None
        check = self.run(f"sha256sum {shlex.quote(tmp)}", timeout=120)
        seen = check.stdout.split()[0] if check.stdout.split() else ""
        if check.exit_status != 0 or seen != digest:
            self.remove_quietly(tmp)
            raise EdgecnnError(self.message(
                f"copy of {local.name} is corrupted on the board (sha256 {seen[:16] or 'unavailable'} != {digest[:16]})"))
        try:
            self.sftp.posix_rename(tmp, final)
        except OSError as exc:
            self.remove_quietly(tmp)
            raise EdgecnnError(self.message(f"cannot rename {tmp} on the board: {exc}")) from None
        return final

    def remove_quietly(self, path: str) -> None:
        """Remove `path` on the board if the connection is up; a failure is ignored (it was a temporary file)."""
        if not self.alive:
            return
        try:
            self.sftp.remove(path)
        except (OSError, EOFError):
            pass


def _drain(recv, ready) -> bytes:
    buf = bytearray()
    try:
        while ready():
            chunk = recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    return bytes(buf)
