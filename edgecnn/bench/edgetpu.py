"""Bench on a Coral Edge TPU: compile once, then run the compiled model with the Edge TPU delegate on its host.

The path for profiles with `kind: edgetpu` or `delegate: edgetpu` (a Coral USB Accelerator on a Linux host, a Coral
Dev Board): the Edge TPU preflight, a connection and probe of the host (it must have `libedgetpu.so.1`), one
`edgetpu_compiler` run (here, or on the host when only the host has it: `edgecnn.convert.edgetpu.compile_model`),
then the plain SSH bench (`edgecnn.bench.remote.run_remote`) of the compiled model with `--delegate
libedgetpu.so.1`. A missing compiler, runtime or delegate comes back as a failed document with one line saying
what to install, like every other runner. Nothing here fakes the compiler or the delegate.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from edgecnn.bench import remote
from edgecnn.bench.protocol import BenchSettings, failed_doc
from edgecnn.errors import EdgecnnError

PREFLIGHT_KEYS = ("maps_fully", "ops_total", "ops_edgetpu", "first_cpu_op")


def run_edgetpu(profile, model_path, settings: BenchSettings, samples_npz=None, cancel=None) -> dict:
    """One Edge TPU bench of `model_path` (an int8 .tflite, not yet compiled) on `profile`'s host."""
    from edgecnn.convert.edgetpu import INSTALL_RUNTIME, RUNTIME_LIB, compile_model, preflight
    from edgecnn.devices.board import connect, probe

    model_path = Path(model_path)
    pre = None
    tmp = tempfile.mkdtemp(prefix="edgecnn-edgetpu-")
    try:
        if not model_path.is_file():
            raise EdgecnnError(f"{model_path}: no such model file")
        pre = preflight(model_path)
        if profile.ssh is None:
            raise EdgecnnError(f"device {profile.name}: an Edge TPU profile needs an ssh: block "
                               "(the host the accelerator is plugged into)")
        with connect(profile) as board:
            info = probe(board, profile)
            if not info.libedgetpu:
                raise EdgecnnError(f"device {profile.name}: {RUNTIME_LIB} not found on the board; {INSTALL_RUNTIME}")
            compiled = compile_model(model_path, tmp, board=board, work_dir=profile.work_dir)
        # the compiled model runs through the same board runner, with the Edge TPU delegate loaded
        doc = remote.run_remote(profile, compiled["output"], dataclasses.replace(settings, delegate=RUNTIME_LIB),
                                samples_npz, cancel=cancel)
        ran = doc.get("model") if isinstance(doc.get("model"), dict) else {}
        # stored under the user's model (path, size, hash), so its runs group with its other benches; the
        # compiled twin the runner ran is named by its hash
        doc["model"] = {**failed_doc("", str(model_path))["model"], "edgetpu_compiled_sha256": ran.get("sha256"),
                        "edgetpu_compiled_size_bytes": ran.get("size_bytes"),
                        "board_path": ran.get("board_path")}
        doc["edgetpu_compiler"] = {k: v for k, v in compiled.items() if k != "output"}
    except EdgecnnError as exc:
        doc = remote.failed(str(exc), profile, model_path, settings=settings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if pre is not None:
        doc["edgetpu_preflight"] = {k: pre[k] for k in PREFLIGHT_KEYS}
    return doc
