"""Helpers shared by tests: run the CLI as a user would and check the one-line-error contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run `python -m edgecnn.cli ARGS` in a subprocess (the real entry point, real exit codes)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "edgecnn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=timeout)


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


def assert_detector_eval(keras_path, int8_path, limit: int = 64) -> list[dict]:
    """`edgecnn eval` of a float and an int8 detector on scenes:digits: both detection rows, the same objects,
    mAP numbers in [0, 1] from boxes found (not from an empty list, whose mAP 0 passes any range check), and the 10
    classes (structure only: what a short training reaches is not asserted)."""
    import json

    proc = run_cli("eval", keras_path, int8_path, "--data", "scenes:digits", "--limit", str(limit), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert [r["task"] for r in rows] == ["detection", "detection"]
    assert rows[0]["objects"] == rows[1]["objects"] > limit
    for r in rows:
        assert 0.0 <= r["map"] <= r["map50"] <= 1.0 and len(r["per_class"]) == 10
        assert r["detections"] > 0, r  # boxes were found: an empty result would score 0 and pass the line above
    return rows
