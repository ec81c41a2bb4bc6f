"""Where `edgecnn run`, `eval` and `compare` compute (`--executor`).

| `--executor`              | where the work runs                                                                |
|---------------------------|------------------------------------------------------------------------------------|
| `local` (default)         | this process, one step after another (`edgecnn.pipeline.LocalExecutor`)           |
| `ray`                     | a Ray instance started here for the command (all cores; boards registered here)    |
| `ray:HOST:6379`           | a running Ray cluster (`ray start --head`), joined as a driver                     |
| `ray:ray://HOST:10001`    | the same cluster through Ray Client                                                |

With Ray (`ray_cluster.py`, installed by `pip install 'edgecnn[ray]'`) every pipeline step is a task, a board is a
custom resource of capacity 1 (never two benches on it at once), and eval/compare shard the test split over
workers. Ray is imported only on that path, so `edgecnn --help` and local runs never load it.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

from edgecnn.errors import EdgecnnError

INSTALL = "pip install 'edgecnn[ray]'"
_RAY = re.compile(r"ray(?::(?P<address>.+))?")


def parse(value: str | None) -> tuple[str, str | None]:
    """`--executor VALUE` -> ("local", None) or ("ray", ADDRESS or None); anything else is one line."""
    if value in (None, "", "local"):
        return "local", None
    m = _RAY.fullmatch(value)
    if not m or (m.group("address") is not None and not m.group("address").strip()):
        raise EdgecnnError(f"--executor {value!r}: use local, ray (a Ray instance started here) or ray:ADDRESS "
                           "(a running cluster, e.g. ray:10.0.0.5:6379 or ray:ray://10.0.0.5:10001)")
    return "ray", m.group("address")


@contextlib.contextmanager
def open_executor(value: str | None, boards: tuple[str, ...] = ()) -> Iterator[object | None]:
    """The executor `--executor VALUE` names, connected for the duration: None for local (callers then run
    in-process, unchanged), else a `RayExecutor` whose cluster holds the board resources `boards`."""
    kind, address = parse(value)
    if kind == "local":
        yield None
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise EdgecnnError(f"--executor {value}: Ray is not installed; install it with: {INSTALL}") from None
    from edgecnn.executor.ray_cluster import RayExecutor

    with RayExecutor(address, boards) as executor:
        yield executor
