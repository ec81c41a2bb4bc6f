"""Shared test fixtures and the rule for system parts that may be missing.

A test that needs a system part (qemu, sshd, Chromium, a C compiler, the Debian Fashion-MNIST package) calls
`require(available, why)`: on a user's machine it skips with the reason; under CI (`EDGECNN_REQUIRE_ALL=1`, set by
`.ci/run`) a missing part fails the test instead, so CI never silently skips a check.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # before any TF import: see edgecnn/_tf.py

# A suite started in the background of a non-interactive shell (`cmd &`) inherits SIGINT ignored, and so would
# every process it starts: the Ctrl-C tests would fail for a reason that is not the product's. Restore it here;
# the processes the tests start then get the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REQUIRE_ALL = os.environ.get("EDGECNN_REQUIRE_ALL", "") not in ("", "0")


def require(available: bool, why: str) -> None:
    """Skip (user machine) or fail (CI) when a system part is missing."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required system part missing under EDGECNN_REQUIRE_ALL: {why}")
    pytest.skip(why)


@pytest.fixture
def db_path(tmp_path, monkeypatch) -> Path:
    """A database of the test's own (EDGECNN_DB), never the user's; its path."""
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("EDGECNN_DB", str(path))
    return path
