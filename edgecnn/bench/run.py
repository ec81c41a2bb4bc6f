"""One bench: prepare inputs, run the board runner on a device, return the document (ok or failed).

`bench_model` never raises for a failed run — a missing model, bad --data, a runtime error, a crash or Ctrl-C all
come back as a document with `"status": "failed"` (Ctrl-C adds `"interrupted": true`), so the caller can record
every run, then report it. Device kinds other than `local` are dispatched through `RUNNERS`, which the board
runners (ssh, edgetpu) extend: a profile whose target has a board runner in the target table (`edgecnn.targets`;
the Edge TPU's is `bench.edgetpu`: compile, then run) goes to it, every other SSH profile to `bench.remote`.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from edgecnn import __version__
from edgecnn.devices.profiles import DeviceProfile
from edgecnn.bench.protocol import BenchSettings, failed_doc
from edgecnn.errors import EdgecnnError

if TYPE_CHECKING:
    from edgecnn.tasks.detection.device import Truth

# kind -> fn(model, settings, samples_path_or_None, profile) -> document
RUNNERS: dict[str, Callable[[str, BenchSettings, str | None, DeviceProfile], dict]] = {}


def _local(model: str, settings: BenchSettings, samples: str | None, profile: DeviceProfile) -> dict:
    from edgecnn.bench.local import run_local

    return run_local(model, settings, samples)


RUNNERS["local"] = _local


def _ssh(model: str, settings: BenchSettings, samples: str | None, profile: DeviceProfile) -> dict:
    from edgecnn.targets import TARGETS, hook

    board_runner = TARGETS[profile.target].board_runner  # the Edge TPU's: compile once, run with its delegate
    if board_runner:
        return hook(board_runner)(profile, model, settings, samples)
    from edgecnn.bench.remote import run_remote

    return run_remote(profile, model, settings, samples)


RUNNERS["ssh"] = _ssh
RUNNERS["edgetpu"] = _ssh


class Samples(NamedTuple):
    """What `prepare_samples` made: the runner's .npz, a label naming the data, and the true boxes a detector's
    boxes are scored against (None: not a detector's data, or no boxes in it)."""

    path: Path
    label: str
    truth: "Truth | None" = None


def prepare_samples(model: str, data: str, out: Path, limit: int) -> Samples:
    """Write the runner's samples .npz (float32 model input `x`, labels `y` if known) for `data`.

    A model made by edgecnn carries its preprocessing spec: `data` is any data source (`edgecnn.data.sources`),
    labeled or not (a flat folder such as `calibration:photos` gives real inputs and no top-1), and its raw images
    are preprocessed with that spec; the model's task says what goes to the device and what stays here
    (`Task.device_samples`: a classifier's `y`; a detector's true boxes, kept for `Task.score_device`). A foreign
    model has no spec: `data` must then be an .npz whose `x` is already the model's float input (N, H, W, C), `y`
    the labels (optional) and, for a detector, `boxes` the true boxes (optional; `tasks.detection.device` says how).
    """
    from edgecnn.tflite.metadata import read_spec

    spec = read_spec(model)
    if spec is not None:
        return _from_source(spec, data, out, limit, model)
    return _from_npz(model, data, out, limit)


def _from_source(spec, data: str, out: Path, limit: int, model: str) -> Samples:
    """Samples of a data source's test split, preprocessed with the model's spec."""
    from edgecnn import tasks
    from edgecnn.data.dataset import check_task
    from edgecnn.data.sources import load_split

    task = tasks.for_spec(spec)
    ds = load_split(data, "test")
    check_task(task.name, ds, model, data)
    if len(ds) == 0:
        raise EdgecnnError(f"{data}: no samples in its test split")
    ds = ds.take(min(limit, len(ds)))
    y, truth, what = task.device_samples(ds, (spec.height, spec.width))
    return Samples(_write(out, spec.apply(ds.images), y), f"{data} ({what}, model's preprocessing)", truth)


def _from_npz(model: str, data: str, out: Path, limit: int) -> Samples:
    """Samples of a foreign model: an .npz of its float input as given (and labels, and true boxes)."""
    from edgecnn.tasks.detection.device import truth_from_npz
    from edgecnn.data.sources import read_npz

    p = Path(data)
    if p.suffix != ".npz" or not p.is_file():
        raise EdgecnnError(f"{data}: {model} has no edgecnn preprocessing spec, so --data must be an .npz "
                           "file with the model's float input 'x' (N, H, W, C) and labels 'y'")
    arrays = read_npz(p, ("x", "y", "boxes"))
    x, y = arrays["x"][:limit], (arrays["y"][:limit] if "y" in arrays else None)
    if x.dtype.kind != "f":
        raise EdgecnnError(f"{data}: 'x' must be the model's preprocessed float input, got {x.dtype} "
                           "(a foreign model has no spec to preprocess raw images with)")
    truth = None
    if "boxes" in arrays and x.ndim == 4:
        truth = truth_from_npz(arrays["boxes"], len(arrays["x"]), len(x), tuple(x.shape[1:3]), data)
    return Samples(_write(out, x, y), f"{data} ({len(x)} samples, as given)", truth)


def _write(out: Path, x, y) -> Path:
    """The runner's samples file: float32 `x` and, when known, int64 `y` (or the arrays of a dict: what a task
    ships to the runner, a segmenter's packed masks)."""
    import numpy as np

    out_file = out / "samples.npz"
    arrays = {"x": x.astype(np.float32)}
    if isinstance(y, dict):
        arrays.update(y)
    elif y is not None:
        arrays["y"] = np.asarray(y).astype(np.int64)
    np.savez(out_file, **arrays)
    return out_file


def _name_metric(doc: dict) -> None:
    """Every measured `accuracy` says its task, metric and value (`edgecnn.tasks`), as eval's results do."""
    from edgecnn import tasks

    acc = doc.get("accuracy")
    if isinstance(acc, dict):
        task = tasks.get(acc.get("task"))
        acc.update(task=task.name, metric=task.metric, value=acc.get(task.metric_key))


def bench_model(model: str, profile: DeviceProfile, settings: BenchSettings, data: str | None = None,
                limit: int = 1000) -> dict:
    """Benchmark `model` on the device `profile`; return the runner's document plus device/version/time keys."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runner = RUNNERS.get(profile.kind)
    data_label = None
    try:
        if runner is None:
            raise EdgecnnError(f"device {profile.name}: kind {profile.kind!r} has no runner in this edgecnn")
        with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
            samples = prepare_samples(model, data, Path(tmp), limit) if data else None
            data_label = samples.label if samples else None
            doc = runner(model, settings, str(samples.path) if samples else None, profile)
            if samples and doc.get("error"):  # name the user's data, not our temporary file
                doc["error"] = doc["error"].replace(str(samples.path), data)
            if samples:  # what the device predicted, scored here as its task says (a detector's boxes -> mAP)
                from edgecnn import tasks

                tasks.get((doc.get("accuracy") or {}).get("task")).score_device(doc, samples.truth, data)
                _name_metric(doc)
    except EdgecnnError as exc:
        doc = failed_doc(str(exc), model, settings)
    except KeyboardInterrupt:
        doc = failed_doc("interrupted", model, settings)
    if (doc.get("delegation") or {}).get("ops_outside"):  # say why, and whether convert can fix it
        from edgecnn.bench.delegation import explain

        doc["delegation"]["ops_outside"] = explain(doc["delegation"]["ops_outside"])
    if doc.get("status") == "failed" and doc.get("error") == "interrupted":
        doc["interrupted"] = True
    if doc.get("model") is None or "sha256" not in (doc.get("model") or {}):
        doc["model"] = failed_doc("", model)["model"]
    doc.setdefault("settings", settings.to_dict())
    if data:
        doc["settings"]["data"] = data_label or data
        doc["settings"]["samples"] = data
    doc["device"] = {"name": profile.name, "kind": profile.kind, "emulated": profile.emulated}
    doc["edgecnn_version"] = __version__
    doc["created_at"] = created
    return doc
