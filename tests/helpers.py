"""Helpers shared by tests: run the CLI as a user would and check the one-line-error contract."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run `python -m edgecnn.cli ARGS` in a subprocess (the real entry point, real exit codes)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "edgecnn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=timeout)


# Warning categories a fresh `python` hides from users (its default filters): a real run would not print them.
_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@contextlib.contextmanager
def _fd_captured(fd: int):
    """Point file descriptor `fd` at a temporary file for the duration; yields a callable returning what was
    written (C++ writes and stale stream references included, like a real process's stderr)."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = os.dup(fd)
        os.dup2(tmp.fileno(), fd)
        text = []
        try:
            yield lambda: "".join(text)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            text.append(tmp.read().decode("utf-8", "replace"))


def _op_determinism(turn_off: bool = False) -> bool | None:
    """Whether TensorFlow's op determinism is on in this process (None: TensorFlow not imported yet); with
    `turn_off`, turn it off first. (The public tf.config.experimental has only the setter that turns it on.)"""
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.framework import config

    if turn_off:
        config.disable_op_determinism()
    return config.is_op_determinism_enabled()


def run_cli_in_process(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`edgecnn ARGS` in this process (click's CliRunner on the `edgecnn` group): no interpreter and TensorFlow
    start-up per call. The result reads like `run_cli`'s: the exit code; on stdout click's output and anything
    written to file descriptor 1; on stderr everything a real process would print there: click's output, anything
    written to file descriptor 2, the warnings a fresh interpreter shows, and the traceback of an exception the
    command let escape (which a real run prints and CliRunner hides).

    For commands that fail before changing process-wide state: it refuses (AssertionError) one that turned on
    TensorFlow's op determinism, which a training run does and which would leak into the tests after it; such a
    case runs through `run_cli`. The global Python and NumPy random states are put back after the call.
    """
    from click.testing import CliRunner

    from edgecnn.cli import main

    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1: stderr apart from stdout only on request
    except TypeError:
        runner = CliRunner()  # click >= 8.2: always apart
    determinism = _op_determinism()
    py_state, np_state = random.getstate(), None
    if "numpy" in sys.modules:
        np_state = sys.modules["numpy"].random.get_state()
    old_cwd = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings(record=True) as caught, _fd_captured(1) as fd1, _fd_captured(2) as fd2:
            result = runner.invoke(main, [str(a) for a in args], env=env, prog_name="edgecnn", catch_exceptions=True)
    finally:
        os.chdir(old_cwd)
        random.setstate(py_state)
        if np_state is not None:
            sys.modules["numpy"].random.set_state(np_state)
    stderr = result.stderr + fd2()
    stderr += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                      for w in caught if not issubclass(w.category, _HIDDEN_WARNINGS))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    if _op_determinism() and not determinism:
        _op_determinism(turn_off=True)
        raise AssertionError(f"`edgecnn {' '.join(map(str, args))}` turned on TensorFlow's op determinism in the "
                             "test process: run it with run_cli (a process of its own) instead")
    return subprocess.CompletedProcess(["edgecnn", *map(str, args)], result.exit_code, result.stdout + fd1(), stderr)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """A failed command: non-zero exit, exactly one line on stderr starting 'edgecnn: error:', no traceback."""
    assert proc.returncode != 0, f"expected failure, got rc=0; stdout={proc.stdout[-500:]}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{proc.stderr[-2000:]}"
    assert lines[0].startswith("edgecnn: error:"), lines[0]
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def assert_detector_eval(keras_path, int8_path, limit: int = 64, run=run_cli) -> list[dict]:
    """`edgecnn eval` of a float and an int8 detector on scenes:digits: both detection rows, the same objects,
    mAP numbers in [0, 1] from boxes found (not from an empty list, whose mAP 0 passes any range check), and the 10
    classes (structure only: what a short training reaches is not asserted). `run`: run_cli or run_cli_in_process."""
    import json

    proc = run("eval", keras_path, int8_path, "--data", "scenes:digits", "--limit", str(limit), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert [r["task"] for r in rows] == ["detection", "detection"]
    assert rows[0]["objects"] == rows[1]["objects"] > limit
    for r in rows:
        assert 0.0 <= r["map"] <= r["map50"] <= 1.0 and len(r["per_class"]) == 10
        assert r["detections"] > 0, r  # boxes were found: an empty result would score 0 and pass the line above
    return rows
