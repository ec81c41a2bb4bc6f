"""The host side of the board runner's contract: what to pass it and how to read what it prints.

Every runner (local subprocess, SSH board, ...) builds the command line with `runner_args` and turns
(stdout, stderr, exit code) into a document with `parse_runner_output`, so a crash, a silent exit or a runtime
error looks the same wherever the model ran. The runner itself is `edgecnn/board/runner.py` (`RUNNER_PATH`):
a single stdlib + numpy + LiteRT file that is copied as is to boards.
"""

from __future__ import annotations

import json
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

RUNNER_PATH = Path(__file__).resolve().parents[1] / "board" / "runner.py"
SCHEMA = "edgecnn.bench/1"


@dataclass(frozen=True)
class BenchSettings:
    """How to time a model. Steady-state runs stop when both `runs` and `min_secs` are met."""

    threads: int = 1
    warmup: int = 10
    runs: int = 100
    min_secs: float = 0.0
    xnnpack: bool = True
    op_profile: bool = False
    seed: int = 0
    delegate: str | None = None  # an external delegate library on the device (libedgetpu.so.1 for Coral)
    head: str | None = None  # a detection head for a foreign model: a kind (blazeface) or a JSON description

    def to_dict(self) -> dict:
        return asdict(self)


def postprocess_path(model, head: str | None = None) -> Path:
    """The post-processing file shipped beside the runner for `model`: its task's (`edgecnn.tasks.board_file`);
    detection's when a detection `head` is given (--head) or the model cannot be read (the runner then says why)."""
    from edgecnn import tasks
    from edgecnn.errors import EdgecnnError
    from edgecnn.tflite.metadata import read_spec

    if head:
        return tasks.BOARD_POSTPROCESS
    try:
        return tasks.board_file(read_spec(model), model)
    except (EdgecnnError, OSError, ValueError):  # an unreadable model: the runner says what is wrong with it
        return tasks.BOARD_POSTPROCESS


def runner_args(model: str, settings: BenchSettings, samples: str | None = None, postprocess: str | None = None,
                truncated: str | None = None) -> list[str]:
    """The runner's arguments (after `python runner.py`) for `model` with `settings` and an optional samples .npz;
    `postprocess`: where postprocess.py is (default: beside the runner); `truncated`: `truncated_copy`'s model
    without its in-graph post-processing."""
    args = [str(model), "--threads", str(settings.threads), "--warmup", str(settings.warmup),
            "--runs", str(settings.runs), "--min-secs", repr(float(settings.min_secs)), "--seed", str(settings.seed)]
    if not settings.xnnpack:
        args.append("--no-xnnpack")
    if settings.op_profile:
        args.append("--op-profile")
    if settings.delegate:
        args += ["--delegate", settings.delegate]
    if samples:
        args += ["--samples", str(samples)]
    if settings.head:
        args += ["--head", settings.head]
    if postprocess:
        args += ["--postprocess", str(postprocess)]
    if truncated:
        args += ["--truncated", str(truncated)]
    return args


def truncated_copy(model, directory) -> Path | None:
    """For a model with in-graph detection post-processing (TFLite_Detection_PostProcess), write a copy without it
    into `directory` (the runner times both; the difference is the op's time) and return it; else None.

    Every runner (local, SSH, Edge TPU through SSH) calls this on the file it is about to run. An unreadable model
    gives None: the runner then reports its own clear error about the file.
    """
    from edgecnn.errors import EdgecnnError
    from edgecnn.tflite.detect import without_postprocess

    try:
        raw = Path(model).read_bytes()
        if b"TFLite_Detection_PostProcess" not in raw:  # the custom op's name is stored as a string: skip the parse
            return None
        data = without_postprocess(raw)
    except (OSError, EdgecnnError):
        return None
    if data is None:
        return None
    out = Path(directory) / f"{Path(model).stem}-without-postprocess.tflite"
    out.write_bytes(data)
    return out


def failed_doc(error: str, model: str | None = None, settings: BenchSettings | None = None) -> dict:
    """A failed-run document for failures the runner never got to report (crash, bad --data, Ctrl-C)."""
    doc = {"schema": SCHEMA, "status": "failed", "error": error, "model": _model_identity(model)}
    if settings is not None:
        doc["settings"] = settings.to_dict()
    return doc


def _model_identity(model: str | None) -> dict | None:
    """Path, size and hash of the model when it is a readable file (so failed rows still group by model)."""
    if model is None:
        return None
    import hashlib

    try:
        with open(model, "rb") as fh:
            data = fh.read()
    except OSError:
        return {"path": str(model)}
    return {"path": str(model), "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if "XNNPACK delegate" not in ln] or lines
    return lines[-1][:300] if lines else ""


def parse_runner_output(stdout: str, stderr: str, returncode: int, where: str = "runner") -> dict:
    """The runner's JSON document, or a failed document saying why there is none (crash, signal, garbage)."""
    doc = None
    for line in reversed((stdout or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                cand = json.loads(line)
            except ValueError:
                continue
            if isinstance(cand, dict) and cand.get("schema") == SCHEMA:
                doc = cand
                break
    if doc is not None:
        if returncode != 0 and doc.get("status") == "ok":
            doc = dict(doc, status="failed", error=f"{where} reported ok but exited with code {returncode}")
        return doc
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = f"{where} was killed by {name}"
    else:
        why = f"{where} exited with code {returncode} without a result"
    tail = _last_line(stderr)
    return {"schema": SCHEMA, "status": "failed", "error": f"{why}{': ' + tail if tail else ''}"}
