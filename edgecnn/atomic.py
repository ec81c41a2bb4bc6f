"""Files: atomic output (write to a temporary file beside the target, then `os.replace` it into place), and
the content hash every cache key is made of (`sha256_file`).

An interrupted run (exception, Ctrl-C) leaves no half-written output: the temporary file is removed and the
target is either absent or the previous complete version.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from edgecnn.errors import EdgecnnError


def check_output_dir(path: str | os.PathLike) -> Path:
    """Return `path` as a Path after checking that its directory exists (a clear error otherwise)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise EdgecnnError(f"{p}: output directory {parent} does not exist")
    if p.is_dir():
        raise EdgecnnError(f"{p}: is a directory, expected a file path")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any failure it is deleted.

    `suffix` keeps the extension libraries insist on (Keras only saves to names ending in `.keras`).
    """
    target = check_output_dir(path)
    suffix = target.suffix if suffix is None else suffix
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically and return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (model files can be large)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
