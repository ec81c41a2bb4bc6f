"""One bench: prepare inputs, run the board runner on a device, return the document (ok or failed).

`bench_model` never raises for a failed run — a missing model, bad --data, a runtime error, a crash or Ctrl-C all
come back as a document with `"status": "failed"` (Ctrl-C adds `"interrupted": true`), so the caller can record
every run, then report it. Device kinds other than `local` are dispatched through `RUNNERS`, which the board
runners (ssh, edgetpu) extend: an Edge TPU profile goes to `bench.edgetpu` (compile, then run), every
other SSH profile to `bench.remote`.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgecnn import __version__
from edgecnn.devices.profiles import DeviceProfile
from edgecnn.bench.protocol import BenchSettings, failed_doc
from edgecnn.errors import EdgecnnError

# kind -> fn(model, settings, samples_path_or_None, profile) -> document
RUNNERS: dict[str, Callable[[str, BenchSettings, str | None, DeviceProfile], dict]] = {}


def _local(model: str, settings: BenchSettings, samples: str | None, profile: DeviceProfile) -> dict:
    from edgecnn.bench.local import run_local

    return run_local(model, settings, samples)


RUNNERS["local"] = _local


def _ssh(model: str, settings: BenchSettings, samples: str | None, profile: DeviceProfile) -> dict:
    if profile.kind == "edgetpu" or profile.delegate == "edgetpu":
        from edgecnn.bench.edgetpu import run_edgetpu  # compile once, then run with the Edge TPU delegate

        return run_edgetpu(profile, model, settings, samples)
    from edgecnn.bench.remote import run_remote

    return run_remote(profile, model, settings, samples)


RUNNERS["ssh"] = _ssh
RUNNERS["edgetpu"] = _ssh


def prepare_samples(model: str, data: str, out: Path, limit: int) -> tuple[Path, str]:
    """Write the runner's samples .npz (float32 model input `x`, labels `y` if known) for `data`; return it and a label.

    A model made by edgecnn carries its preprocessing spec: `data` is any data source (`edgecnn.data.sources`),
    labeled or not (a flat folder such as `calibration:photos` gives real inputs and no top-1), and its raw images
    are preprocessed with that spec. A foreign model has no spec: `data` must then be an .npz whose `x` is already
    the model's float input (N, H, W, C) and `y` the labels (optional).
    """
    import numpy as np

    from edgecnn.data.sources import load_split, read_npz
    from edgecnn.tflite.metadata import read_spec

    spec = read_spec(model)
    if spec is not None:
        ds = load_split(data, "test")
        if len(ds) == 0:
            raise EdgecnnError(f"{data}: no samples in its test split")
        n = min(limit, len(ds))
        x = spec.apply(ds.images[:n])
        y = np.asarray(ds.labels[:n], dtype=np.int64) if ds.labeled else None
        label = (f"{data} (test split, {n} samples, model's preprocessing)" if ds.labeled else
                 f"{data} ({n} unlabeled images, model's preprocessing)")
    else:
        p = Path(data)
        if p.suffix != ".npz" or not p.is_file():
            raise EdgecnnError(f"{data}: {model} has no edgecnn preprocessing spec, so --data must be an .npz "
                               "file with the model's float input 'x' (N, H, W, C) and labels 'y'")
        arrays = read_npz(p, ("x", "y"))
        x, y = arrays["x"][:limit], (arrays["y"][:limit] if "y" in arrays else None)
        if x.dtype.kind != "f":
            raise EdgecnnError(f"{data}: 'x' must be the model's preprocessed float input, got {x.dtype} "
                               "(a foreign model has no spec to preprocess raw images with)")
        label = f"{data} ({len(x)} samples, as given)"
    out_file = out / "samples.npz"
    arrays = {"x": x.astype(np.float32)}
    if y is not None:
        arrays["y"] = np.asarray(y).astype(np.int64)
    np.savez(out_file, **arrays)
    return out_file, label


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
            samples = None
            if data:
                samples, data_label = prepare_samples(model, data, Path(tmp), limit)
            doc = runner(model, settings, str(samples) if samples else None, profile)
            if samples and doc.get("error"):  # name the user's data, not our temporary file
                doc["error"] = doc["error"].replace(str(samples), data)
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
