"""Run the board runner on this machine's CPU, in a fresh subprocess.

Why a subprocess rather than calling the runner in-process: it is the same file, interpreter start-up and code path
as on a board, the timed loop does not share a process with click/rich/TensorFlow (imported or not), and peak RSS is
the runner's alone. benchmarks/bench_fidelity.py shows its p50 matches a bare `invoke()` loop.

Ctrl-C: the terminal sends SIGINT to the whole process group, so the runner stops and answers "interrupted";
if only this process got it, the runner is sent SIGINT, then killed if it does not stop within 5 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from edgecnn.bench.protocol import (RUNNER_PATH, BenchSettings, parse_runner_output, postprocess_path, runner_args,
                                    truncated_copy)


def run_local(model: str, settings: BenchSettings, samples: str | None = None, python: str | None = None,
              timeout: float | None = None) -> dict:
    """Benchmark `model` here and return the runner's document (status ok or failed; never raises for a failure).

    `python` defaults to this interpreter; `timeout` (s) kills a hung run. Ctrl-C propagates as KeyboardInterrupt
    after the runner has been stopped.
    """
    with tempfile.TemporaryDirectory(prefix="edgecnn-local-") as tmp:
        truncated = truncated_copy(model, tmp)
        cmd = [python or sys.executable, str(RUNNER_PATH),
               *runner_args(model, settings, samples, postprocess_path(model, settings.head), truncated)]
        return _run(cmd, timeout)


def _run(cmd: list[str], timeout: float | None) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        doc = parse_runner_output("", stderr, -signal.SIGKILL, "local runner")
        doc["error"] = f"local runner timed out after {timeout:g} s"
        return doc
    except KeyboardInterrupt:
        _stop(proc)
        raise
    return parse_runner_output(stdout, stderr, proc.returncode, "local runner")


def _stop(proc: subprocess.Popen) -> None:
    """Make sure the runner is gone: SIGINT (it may already have it), then SIGKILL after 5 s."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=5)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
            proc.communicate()
