"""Bench on a board over SSH: copy the runner and the model (cached by hash), run, bring the JSON back.

The board needs only sshd, Python 3 with numpy, and ai-edge-litert (or tflite-runtime). On the board, under
`work_dir` (default `~/edgecnn`), `cache/` holds `<sha256[:16]>-runner.py`, `<sha256[:16]>-postprocess.py` (the
model's task's decoder, `edgecnn.tasks.board_file`; the runner gets its path with --postprocess) and `<sha256[:16]>-<model>.tflite` (plus, for a model
with a TFLite_Detection_PostProcess op, its copy without the op, to time the op by difference): a file is copied once and reused until its content changes. A failed run (unreachable board, dropped connection,
missing runtime, full disk, Ctrl-C) comes back as `{"status": "failed", "error": "<one line>", ...}` like a failed
local run, so the caller records it; `run_remote` raises only on bad arguments. `cancel_all` stops every run in
progress (Ctrl-C during a multi-device bench).

Results carry `device` (profile name), `transport: "ssh"`, `host`, and `emulated` (from the profile: timings from
an emulated board, e.g. the qemu arm64 Pi used in tests, say nothing about a real board's speed).
Connecting and probing the board is `edgecnn.devices.board`'s work; this module only runs the model there.
"""

from __future__ import annotations

import secrets
import shlex
import threading
import time
from pathlib import Path

from edgecnn.bench.protocol import postprocess_path
from edgecnn.bench.protocol import RUNNER_PATH as RUNNER
from edgecnn.bench.protocol import SCHEMA
from edgecnn.devices.board import missing, probe, ssh_target
from edgecnn.devices.ssh import SshBoard, SshTarget
from edgecnn.errors import EdgecnnError


# ---- run -------------------------------------------------------------------------------------------------------


def _settings(settings):
    """A BenchSettings from BenchSettings, a dict of its fields, or None (defaults)."""
    from edgecnn.bench.protocol import BenchSettings

    if isinstance(settings, BenchSettings):
        return settings
    return BenchSettings(**(settings or {}))


def _label(doc: dict, profile, target: SshTarget | None, extra: dict | None = None) -> dict:
    doc.setdefault("schema", SCHEMA)
    doc["device"] = {"name": profile.name, "kind": profile.kind, "emulated": profile.emulated}
    doc["transport"] = "ssh"
    if target is not None:
        doc["host"] = target.address
    if extra:
        doc.update(extra)
    return doc


def failed(error: str, profile, model_path, target: SshTarget | None = None, settings=None) -> dict:
    """A failed document for a run on `profile` that never got to the runner (for callers around `run_remote`)."""
    return _failed(error, profile, target, model_path, settings=settings)


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
    import tempfile

    model_path = Path(model_path)
    with tempfile.TemporaryDirectory(prefix="edgecnn-remote-") as tmp:
        return _run_remote(profile, model_path, settings, samples_npz, cancel, tmp)


def _run_remote(profile, model_path: Path, settings, samples_npz, cancel, tmp: str) -> dict:
    from edgecnn.bench.protocol import parse_runner_output, runner_args, truncated_copy

    s = _settings(settings)
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
            truncated = truncated_copy(model_path, tmp)  # in-graph detection post-processing: timed by difference
            post = postprocess_path(model_path, s.head)  # the model's task's numpy post-processing
            files = [RUNNER, post, model_path] + ([Path(samples_npz)] if samples_npz else []) + \
                ([truncated] if truncated else [])
            need = sum(p.stat().st_size for p in files)
            if info.disk_free_bytes is not None and info.disk_free_bytes < need + (1 << 20):
                return _failed(f"device {target.name}: board disk full: {info.disk_free_bytes // 1024} KiB free "
                               f"in {info.work_dir}, the run needs {need // 1024 + 1024} KiB",
                               profile, target, model_path, extra, s)
            board.makedirs(cache)
            t1 = time.monotonic()
            runner = board.put_cached(RUNNER, cache)
            postprocess = board.put_cached(post, cache)  # the runner is told where: its cached name has a hash
            model = board.put_cached(model_path, cache)
            samples = board.put_cached(samples_npz, cache) if samples_npz else None
            cut = board.put_cached(truncated, cache) if truncated else None
            extra["timing_remote"]["copy_s"] = round(time.monotonic() - t1, 3)
            _check_cancel(cancel)
            args = [runner, *runner_args(model, s, samples, postprocess, cut)]
            py = info.python_path or profile.python
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


__all__ = ["cancel_all", "failed", "run_remote"]
