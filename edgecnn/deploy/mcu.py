"""`edgecnn mcu-check MODEL.tflite`: will this model run on a microcontroller under TFLM, and does it fit?

| reports           | how it is measured                                                                          |
|-------------------|---------------------------------------------------------------------------------------------|
| float tensors     | the flatbuffer's tensor dtypes (`TfliteInfo`); a float model is refused unless --allow-float |
| ops TFLM lacks    | the model is loaded in TFLM (tflite-micro's Python package: TFLM's own reference kernels on |
|                   | the host); the op names come from TFLM's "Didn't find op" / "failed to prepare" lines        |
| arena_bytes       | the smallest tensor arena that allocates *and* invokes, found by bisection from the          |
|                   | RecordingMicroAllocator's total (which alone was measured to be a few bytes short)          |
| flash_bytes       | the model bytes as `export-c` embeds them. TFLM's runtime and kernels are code on top, not   |
|                   | estimated here (they depend on the ops, the toolchain and CMSIS-NN / ESP-NN)                |
| fits              | arena <= --ram and model <= --flash (or the budgets of an MCU profile, `--device`)           |
| accuracy (--data) | the task's metric (top-1, mAP) under TFLM and LiteRT on the test split, and their agreement: |
|                   | the two use different int8 kernels and are not bit-exact                                    |

The arena is measured on x86-64, where TFLM's bookkeeping structs hold 8-byte pointers; on a 32-bit MCU they are
smaller, so the number is an upper bound for the same TFLM version (tensor buffers, the bulk, are identical).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

INSTALL_HINT = "pip install 'edgecnn[mcu]'"
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_INTEGER_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "bool")


def parse_size(text: str | int | None, what: str = "size") -> int | None:
    """'256K' / '1M' / '1.5MB' / '262144' -> bytes (K and M are binary: 1024 and 1024**2)."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise EdgecnnError(f"--{what} {text!r}: expected bytes or a size like 256K, 1M")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise EdgecnnError(f"--{what} {text!r}: must be positive")
    return value


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise EdgecnnError(f"mcu-check needs the tflite-micro package: {INSTALL_HINT}") from None
    return runtime


def tflm_version() -> str | None:
    try:
        from tflite_micro.python.tflite_micro._version import __version__
    except ImportError:
        return None
    return __version__


@contextlib.contextmanager
def captured_fd2():
    """Capture what native code writes to file descriptor 2 (TFLM logs there); yields a list filled on exit."""
    import sys

    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


_MISSING_RE = (re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'"),
               re.compile(r"Failed to get registration from op code ([A-Z0-9_]+)"))
_PREPARE_RE = re.compile(r"Node ([A-Z0-9_]+) \(number (\d+)\) failed to (prepare|invoke)")
_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")
_SHORT_RE = re.compile(r"Failed to allocate (?:tail|temp|memory)|missing: \d+")


def _zero_input(details: dict) -> np.ndarray:
    return np.zeros([int(v) for v in details["shape"]], details["dtype"])


def _try_tflm(runtime, data: bytes, arena: int, num_inputs: int) -> tuple[object | None, list[str]]:
    """(interpreter, log) after one invoke on zero inputs with `arena` bytes; interpreter None on failure."""
    with captured_fd2() as log:
        try:
            it = runtime.Interpreter.from_bytes(data, arena_size=int(arena))
            for i in range(num_inputs):
                it.set_input(_zero_input(it.get_input_details(i)), i)
            it.invoke()
        except (RuntimeError, ValueError):
            it = None
    return it, log


def _missing_ops(log: list[str], info) -> tuple[list[str], list[str]]:
    """(ops TFLM has no kernel for, ops whose kernel refused this model's form) from TFLM's log."""
    missing: list[str] = []
    for line in log:
        for rx in _MISSING_RE:
            m = rx.search(line)
            if m and m.group(1) not in missing:
                missing.append(m.group(1))
    if "CUSTOM" in missing:
        custom = sorted({op.op for op in info.ops if op.op.startswith("CUSTOM:")})
        missing = [m for m in missing if m != "CUSTOM"] + (custom or ["CUSTOM"])
    refused = []
    for i, line in enumerate(log):
        m = _PREPARE_RE.search(line)
        if m:
            why = next((ln.strip() for ln in reversed(log[max(0, i - 3):i]) if ln.strip()), "")
            refused.append(f"{m.group(1)} (node {m.group(2)}){': ' + why if why else ''}")
    return missing, refused


def float_tensors(info) -> tuple[list[str], list[str]]:
    """(float activation/IO tensor names, float constant tensor names): what keeps a model off an int8 MCU."""
    idx = [t for t in range(len(info.tensors)) if info.dtype(t) in ("float32", "float16", "float64", "bfloat16")]
    io = {t.name for t in info.inputs + info.outputs}
    acts = sorted((info.tensor_name(t) for t in idx if not info._is_constant(t)), key=lambda n: n not in io)
    return acts, [info.tensor_name(t) for t in idx if info._is_constant(t)]


def _float_message(path: Path, acts: list[str], consts: list[str]) -> str:
    shown = ", ".join(acts[:4]) + (f" ... (+{len(acts) - 4} more)" if len(acts) > 4 else "")
    parts = [f"{len(acts)} float activation/IO tensor(s): {shown}"] if acts else []
    if consts:
        parts.append(f"{len(consts)} float weight tensor(s)")
    return (f"{path}: not an int8 model for an MCU target: {' and '.join(parts)}; convert with --quant int8 "
            "(int8 IO) or pass --allow-float")


def minimal_arena(runtime, data: bytes, recorded: int, works: int, num_inputs: int) -> tuple[int, int]:
    """Smallest arena (16-byte steps) that allocates and invokes, between `recorded` and a size that `works`."""
    trials = 0
    lo, hi = max(16, recorded - 16), works  # lo fails (assumed, checked below), hi works
    it, _ = _try_tflm(runtime, data, lo, num_inputs)
    trials += 1
    if it is not None:
        return lo, trials
    step = 64
    while hi - lo > step * 4:  # grow from the recorded total first: the answer is usually a few bytes above it
        probe = lo + step
        it, _ = _try_tflm(runtime, data, probe, num_inputs)
        trials += 1
        if it is not None:
            hi = probe
            break
        lo, step = probe, step * 4
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if mid <= lo:
            break
        it, _ = _try_tflm(runtime, data, mid, num_inputs)
        trials += 1
        if it is None:
            lo = mid
        else:
            hi = mid
    return hi, trials


def budgets(ram: str | None, flash: str | None, device: str | None) -> tuple[int | None, int | None, str | None]:
    """(ram bytes, flash bytes, device name): explicit --ram/--flash win over the profile's."""
    ram_b, flash_b, name = parse_size(ram, "ram"), parse_size(flash, "flash"), None
    if device:
        from edgecnn.devices.profiles import load_profile

        prof = load_profile(device)
        if prof.kind != "mcu":
            raise EdgecnnError(f"device {prof.name}: kind {prof.kind}, not an MCU profile (kind: mcu with ram and "
                               "flash); see devices/cortex-m4-256k.yaml")
        name = prof.name
        ram_b = ram_b if ram_b is not None else prof.ram
        flash_b = flash_b if flash_b is not None else prof.flash
    return ram_b, flash_b, name


def compare_on_data(runtime, data: bytes, model_path: Path, src: str, limit: int, arena: int) -> dict:
    """The model's task metric (`edgecnn.tasks`: top-1, mAP...) under TFLM and under LiteRT on `src`'s test split
    (batch 1 each, every output), and the task's agreement of their predictions."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn import tasks
    from edgecnn.tflite.metadata import read_spec
    from edgecnn.data import load_split
    from edgecnn.data.dataset import check_task
    from edgecnn.tflite.quant import dequantize, quantize

    spec = read_spec(data)
    if spec is None:
        raise EdgecnnError(f"{model_path}: no preprocessing spec embedded (convert it with edgecnn), so --data "
                           "cannot be preprocessed for it")
    task, ctx = tasks.for_model(spec, model_path)
    ds = load_split(src, "test", needs_labels="mcu-check --data")
    check_task(task.name, ds, model_path, src)
    if len(ds) == 0:
        raise EdgecnnError(f"{src}: the test split is empty")
    ds = ds.take(limit, seed=0) if limit and limit < len(ds) else ds
    ctx = {**ctx, "model": str(model_path), **task.sample_info(ds)}
    x = spec.apply(ds.images)
    tflm = runtime.Interpreter.from_bytes(data, arena_size=arena)
    t_in = tflm.get_input_details(0)
    with captured_fd2():  # LiteRT announces XNNPACK on fd 2
        lite = Interpreter(model_content=data, num_threads=1)
        lite.allocate_tensors()
    l_in, l_outs = lite.get_input_details()[0], lite.get_output_details()
    if list(t_in["shape"][1:]) != list(x.shape[1:]):
        raise EdgecnnError(f"{model_path}: input shape {list(t_in['shape'])} does not match the spec's "
                           f"{list(x.shape[1:])}")
    xq = quantize(x, t_in)
    outs_tflm = [[] for _ in l_outs]
    outs_lite = [[] for _ in l_outs]
    same_bytes = 0
    max_diff = 0
    t_tflm = t_lite = 0.0
    for i in range(len(xq)):
        sample = xq[i:i + 1]
        t = time.perf_counter()
        tflm.set_input(sample, 0)
        tflm.invoke()
        a = [np.asarray(tflm.get_output(k)) for k in range(len(l_outs))]
        t_tflm += time.perf_counter() - t
        t = time.perf_counter()
        lite.set_tensor(l_in["index"], sample)
        lite.invoke()
        b = [lite.get_tensor(d["index"]) for d in l_outs]
        t_lite += time.perf_counter() - t
        same_bytes += int(all(np.array_equal(u, v) for u, v in zip(a, b)))
        for k, (u, v, d) in enumerate(zip(a, b, l_outs)):
            # the same tensors of the same flatbuffer: LiteRT's quantization parameters dequantize both
            outs_tflm[k].append(dequantize(u.reshape(v.shape), d))
            outs_lite[k].append(dequantize(v, d))
            if u.dtype.kind in "iu":
                max_diff = max(max_diff, int(np.max(np.abs(u.astype(np.int64).reshape(v.shape) - v.astype(np.int64)))))
    p_tflm = task.postprocess([np.concatenate(o) for o in outs_tflm], ctx)
    p_lite = task.postprocess([np.concatenate(o) for o in outs_lite], ctx)
    truth, n = task.truth(ds), len(xq)
    v_tflm = task.score(p_tflm, truth, task.class_names(ds), ctx)["value"]
    v_lite = task.score(p_lite, truth, task.class_names(ds), ctx)["value"]
    agreement = task.agreement(p_lite, p_tflm, ctx, ctx)
    return {
        "data": src, "split": "test", "samples": n, "task": task.name, "metric": task.metric,
        "value_tflm": v_tflm, "value_litert": v_lite, "prediction_agreement": agreement,
        f"{task.metric_key}_tflm": v_tflm, f"{task.metric_key}_litert": v_lite,  # top1_tflm... as before tasks
        "identical_outputs": float(same_bytes / n),
        "max_output_diff_quantized": max_diff if any(np.dtype(d["dtype"]).kind in "iu" for d in l_outs) else None,
        "ms_per_sample_tflm_host": round(1000 * t_tflm / n, 3),
        "ms_per_sample_litert_host": round(1000 * t_lite / n, 3),
    }


def mcu_check(model: str | Path, ram: str | None = None, flash: str | None = None, device: str | None = None,
              data: str | None = None, limit: int = 1000, allow_float: bool = False) -> dict:
    """The mcu-check report (see the module table). Raises EdgecnnError for inputs it cannot check."""
    from edgecnn.tflite.metadata import strip
    from edgecnn.tflite.reader import read_tflite

    t0 = time.perf_counter()
    path = Path(model)
    ram_b, flash_b, device_name = budgets(ram, flash, device)
    blob = read_tflite(path)
    runtime = _runtime()
    from edgecnn.tflite.reader import TfliteInfo

    info = TfliteInfo(blob, str(path))  # TensorFlow-free: mcu-check never imports TensorFlow
    float_acts, float_consts = float_tensors(info)
    if (float_acts or float_consts) and not allow_float:
        raise EdgecnnError(_float_message(path, float_acts, float_consts))
    report = {
        "model": str(path), "device": device_name, "tflm_version": tflm_version(),
        "flash_bytes": len(blob), "flatbuffer_bytes": len(strip(blob)),
        "flash_note": "model bytes only (as export-c embeds them); TFLM runtime + kernel code not included",
        "ram_budget": ram_b, "flash_budget": flash_b,
        "ops": info.op_histogram(), "float_tensors": float_acts, "float_weight_tensors": float_consts,
        "inputs": [t.to_dict() for t in info.inputs], "outputs": [t.to_dict() for t in info.outputs],
    }
    generous = max(len(blob) * 10, 4 * 1024 * 1024)
    it, log = _try_tflm(runtime, blob, generous, len(info.inputs))
    if it is None and any(_SHORT_RE.search(ln) for ln in log):
        generous *= 8
        it, log = _try_tflm(runtime, blob, generous, len(info.inputs))
    missing, refused = _missing_ops(log, info)
    report.update({"tflm_missing_ops": missing, "tflm_refused_ops": refused, "runs_in_tflm": it is not None})
    if it is None:
        reason = ("ops TFLM lacks: " + ", ".join(missing) if missing else
                  "kernels refused: " + "; ".join(refused) if refused else
                  "TFLM could not load it: " + (next((ln for ln in log if ln.strip()), "no log")))
        report.update({"arena_bytes": None, "fits": False, "problems": [reason],
                       "wall_seconds": round(time.perf_counter() - t0, 3)})
        return report
    with captured_fd2() as alloc_log:
        it.print_allocations()
    recorded = next((int(m.group(1)) for ln in alloc_log if (m := _ARENA_RE.search(ln))), None)
    if recorded is None:
        arena, trials, method = None, 0, "unavailable"
    else:
        arena, trials = minimal_arena(runtime, blob, recorded, generous, len(info.inputs))
        method = "bisection (16-byte steps) from the RecordingMicroAllocator total"
    report.update({
        "arena_bytes": arena, "arena_recorded_bytes": recorded, "arena_method": method, "arena_trials": trials,
        "arena_note": "measured on x86-64 (64-bit pointers): an upper bound for a 32-bit MCU",
    })
    problems = []
    if ram_b is not None and arena is not None and arena > ram_b:
        problems.append(f"tensor arena {arena} B exceeds the RAM budget {ram_b} B")
    if flash_b is not None and len(blob) > flash_b:
        problems.append(f"model {len(blob)} B exceeds the flash budget {flash_b} B")
    report["fits"] = (not problems) if (ram_b is not None or flash_b is not None) else None
    report["problems"] = problems
    if data:
        report["accuracy"] = compare_on_data(runtime, blob, path, data, limit, arena or generous)
    report["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return report


def failure_line(report: dict) -> str | None:
    """The one error line for a report that does not run or does not fit (None when all is well)."""
    if not report.get("problems"):
        return None
    return f"{report['model']}: " + "; ".join(report["problems"])
