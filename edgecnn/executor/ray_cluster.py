"""`--executor ray[:ADDRESS]`: a run's steps as Ray tasks, a sharded eval/compare, boards as resources.

| what                  | how it runs on Ray                                                                          |
|-----------------------|---------------------------------------------------------------------------------------------|
| a pipeline step       | one task (`_staged_call`) running the step function the local executor runs                 |
| its dependencies      | tracked by the driver: a step is submitted once the steps it reads have finished, because   |
|                       | its cache key is the content of their outputs (a cached step is never submitted)            |
| its resources         | train/convert/eval/compare/local bench: 1 CPU; an SSH board's bench: 0 CPU (the board works)|
| a board               | custom resource `board:HOST:PORT` (`board:local-cpu` for this CPU) of capacity 1: two       |
|                       | benches never share a board, benches on different boards run at once                       |
| files                 | inputs go to the task through the object store, outputs come back as bytes: a worker writes |
|                       | only to its own staging folder, so any node can run any step (no shared file system)        |
| results               | written once, by the driver: output files atomically, then the manifest entry, then the     |
|                       | bench's SQLite row. A failed step stops new submissions; running ones finish and are kept   |
| a lost worker         | the task is retried (`MAX_RETRIES`); it wrote nothing in the run directory                  |
| Ctrl-C                | the driver disconnects (`ray.shutdown`, when this command connected) and Ray ends the job's |
|                       | running tasks; finished steps are already                                                    |
|                       | recorded. Not `ray.cancel`: in Ray 2.x it races the task's reply and a failed RAY_CHECK     |
|                       | ends the driver with exit code 1 and a C++ stack (ray-project/ray#54738, seen in our CI)    |
| eval/compare          | `map_shards`: one task per shard of the test split (LiteRT in each worker), merged in order |

Without ADDRESS a Ray instance is started for the command (`address="local"`, all cores, the recipe's boards
registered on this node). With ADDRESS the cluster must already hold each board resource (`ray start
--resources`); the error says the command when it does not.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from edgecnn.atomic import sha256_file, write_bytes_atomic
from edgecnn.errors import EdgecnnError

MAX_RETRIES = 2  # a task whose worker process or node dies is run again (it only wrote to its staging folder)
STAGE_PREFIX = "edgecnn-ray-"  # a task's staging folder: <tmp>/edgecnn-ray-<worker pid>-<random>


def _sweep_stale_stages() -> None:
    """Remove the staging folders of killed workers (their pid is gone), so a lost worker leaves nothing behind."""
    for d in Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*-*"):
        pid = d.name[len(STAGE_PREFIX):].split("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _relocate(value, old: str, new: str):
    """`value` (a step's JSON-like result) with every string's `old` prefix folder replaced by `new`."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_relocate(v, old, new) for v in value)
    return value


def _staged_call(fn, root: str | None, names: list[str], outputs: list[str], args: tuple, *blobs: bytes) -> dict:
    """Run in a Ray worker: write the input files `names` (contents `blobs`) into a private staging folder, call
    `fn(stage, *args)`, and return its result (paths under the stage rewritten to `root`), the `outputs` files'
    bytes, and when and where it ran. Nothing outside the staging folder is written, so a killed or retried
    task leaves no trace."""
    started = time.time()
    _sweep_stale_stages()
    with tempfile.TemporaryDirectory(prefix=f"{STAGE_PREFIX}{os.getpid()}-") as tmp:
        stage = Path(tmp)
        for name, data in zip(names, blobs):
            (stage / name).write_bytes(data)
        value = fn(stage, *args)
        files = {rel: (stage / rel).read_bytes() for rel in outputs}
    if root is not None:
        value = _relocate(value, str(stage), root)
    return {"value": value, "files": files, "span": (started, time.time()), "host": socket.gethostname(),
            "pid": os.getpid()}


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """One line now for a cluster address nobody answers at (Ray itself would retry and log forever)."""
    host_port = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not port.isdigit():
        if address == "auto":
            return
        raise EdgecnnError(f"--executor ray:{address}: expected HOST:PORT (e.g. 10.0.0.5:6379 or "
                           "ray://10.0.0.5:10001)")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EdgecnnError(f"--executor ray:{address}: no Ray cluster answers there ({exc.strerror or exc}); start "
                           "one with `ray start --head --port 6379`") from None


class RayExecutor:
    """A connection to Ray for one command; `run_steps` (the pipeline) and `map_shards` (eval/compare)."""

    def __init__(self, address: str | None = None, boards: tuple[str, ...] = (), num_cpus: int | None = None):
        self.address, self.boards, self.num_cpus = address, tuple(dict.fromkeys(boards)), num_cpus
        self.started = False
        self._blobs: dict[tuple[str, str], object] = {}

    def __enter__(self) -> "RayExecutor":
        import ray

        self.ray = ray
        _sweep_stale_stages()  # left by workers killed in an earlier run on this machine
        if not ray.is_initialized():
            quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if self.address:
                    _check_reachable(self.address)
                    ray.init(address=self.address, **quiet)
                else:
                    ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                             resources={b: 1 for b in self.boards}, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise EdgecnnError(f"--executor ray{':' + self.address if self.address else ''}: cannot connect "
                                   f"to Ray ({first})") from None
            self.started = True
        try:
            self._check_boards()
        except BaseException:
            self.__exit__()
            raise
        self._task = ray.remote(max_retries=MAX_RETRIES)(_staged_call)
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.started = False
            try:
                self.ray.shutdown()
            except Exception:  # noqa: BLE001 — while a Ctrl-C or a step's error propagates, that is what to report
                if not exc or exc[0] is None:
                    raise

    def _check_boards(self) -> None:
        have = self.ray.cluster_resources()
        where = self.address or "this machine"
        for b in self.boards:
            if have.get(b) != 1:
                raise EdgecnnError(
                    f"Ray cluster at {where}: resource {b!r} has capacity {have.get(b, 0):g}, it must be 1 (one "
                    f"bench at a time on a board); on the node that reaches the board: ray start --address "
                    f"{self.address or 'HEAD:6379'} --resources '{{\"{b}\": 1}}'")

    def _blob(self, path: Path):
        """The file's bytes in the object store (put once per content)."""
        key = (str(path), sha256_file(path))
        if key not in self._blobs:
            self._blobs[key] = self.ray.put(Path(path).read_bytes())
        return self._blobs[key]

    def _submit(self, root: Path, s):
        opts = {"num_cpus": s.resources.get("num_cpus", 1), "resources": s.resources.get("resources", {})}
        inputs, outputs = ([str(p.relative_to(root)) for p in paths] for paths in (s.inputs, s.outputs))
        return self._task.options(**opts).remote(s.fn, str(root), inputs, outputs, s.args,
                                                 *[self._blob(p) for p in s.inputs])

    def run_steps(self, run, steps: list) -> dict[str, dict]:
        """Run the planned steps as tasks as soon as their dependencies are done; results recorded here as they
        arrive (same contract as `pipeline.LocalExecutor.run_steps`)."""
        from edgecnn.pipeline import finish_step

        waiting, running, results, error = list(steps), {}, {}, None
        # Ctrl-C, or a bench interrupted on its board, propagates: what is done is recorded; the job's end (at
        # `__exit__`) stops what runs (see "Ctrl-C" above for why not ray.cancel)
        while waiting or running:
            while error is None:  # submit what is ready; a cached step may make more ready at once
                ready = [s for s in waiting if all(a in results for a in s.after)]
                if not ready:
                    break
                for s in ready:
                    waiting.remove(s)
                    key = run.key(s.settings, s.inputs)
                    hit = run.lookup(s.name, key)
                    if hit is None:
                        running[self._submit(run.root, s)] = (s, key)
                        continue
                    results[s.name] = hit
                    if s.done:
                        s.done(hit, True)
            if not running:
                break
            (ref,), _ = self.ray.wait(list(running), num_returns=1)
            s, key = running.pop(ref)
            try:
                out = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 — turned into the step's one-line error below
                error = error or self._failure(exc, f"step {s.name}", f"; finished steps are kept in "
                                               f"{run.manifest_path}: run again to resume")
                continue
            for rel, data in out["files"].items():
                write_bytes_atomic(run.root / rel, data)
            results[s.name] = finish_step(run, s, key, out["value"], tuple(out["span"]))
            if s.done:
                s.done(results[s.name], False)
        if error is not None:
            raise error
        if waiting:
            raise EdgecnnError(f"steps never became ready: {', '.join(s.name for s in waiting)}")
        return results

    def _failure(self, exc: Exception, what: str, hint: str = "") -> BaseException:
        """What to raise for a failed task: our one-line error as the worker raised it, a bug's remote traceback
        as Ray reports it, a lost worker (retries spent) as one line."""
        from ray.exceptions import RayTaskError

        if isinstance(exc, RayTaskError):
            cause = getattr(exc, "cause", None)
            return cause if isinstance(cause, (EdgecnnError, KeyboardInterrupt)) else exc
        return EdgecnnError(f"{what}: its Ray worker was lost ({type(exc).__name__}) after {MAX_RETRIES} "
                            f"retries{hint}")

    def map_shards(self, fn, models: list[Path], args: tuple, count: int | None = None) -> list:
        """`fn(stage, names, *args, index, count)` on every shard index in its own task, the model files staged
        under `names`; the results in shard order. `count` defaults to the cluster's CPUs."""
        for m in models:
            if not Path(m).is_file():
                raise EdgecnnError(f"{m}: --executor ray ships model files to the workers; give a .keras or "
                                   ".tflite file (save a SavedModel folder as .keras)")
        count = count or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        names = [f"{i}-{Path(m).name}" for i, m in enumerate(models)]
        blobs = [self._blob(Path(m)) for m in models]
        refs = [self._task.options(num_cpus=1).remote(fn, None, names, [], (tuple(names), *args, i, count), *blobs)
                for i in range(count)]
        try:
            outs = self.ray.get(refs)
        except Exception as exc:  # noqa: BLE001 — the shard's own error, one line when it is ours
            raise self._failure(exc, "a shard of the evaluation") from None
        return [o["value"] for o in outs]
