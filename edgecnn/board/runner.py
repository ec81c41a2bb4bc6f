#!/usr/bin/env python3
"""edgecnn board runner: benchmark one .tflite model and print one JSON document.

This file is copied to boards and run there as a script, so it imports only the standard library, numpy and a
TFLite interpreter (ai_edge_litert, else tflite_runtime, else tensorflow.lite as a last resort) — never Keras,
click or the rest of edgecnn. A board needs nothing but `pip install ai-edge-litert numpy`.

    python runner.py MODEL [--threads N] [--warmup N] [--runs N] [--min-secs S] [--no-xnnpack]
                           [--op-profile] [--samples FILE.npz] [--seed N]
                           [--head KIND|JSON] [--postprocess postprocess.py] [--truncated MODEL]

What it measures, in the order benchmark_model does: model load + allocate_tensors (init), the first inference,
`--warmup` inferences, then steady-state inferences until both `--runs` and `--min-secs` are met. Inputs are set
once before timing and the timed loop is bare `invoke()` calls timed with `perf_counter_ns`, as benchmark_model
does. Inputs are the first sample of `--samples` (an .npz with float32 `x` (N, ...) quantized here with the
model's own scale/zero-point, optional int labels `y`), else seeded random values of each input's dtype.

Detectors: when the model is one (its embedded edgecnn spec says task detection and has a head; `--head` names
one; or the outputs are recognised as BlazeFace-style raw outputs or a TFLite_Detection_PostProcess op's), the
post-processing is timed apart from invoke and reported under `postprocess` (head, method, p50/mean ms, ...):
- raw outputs (centernet, blazeface): after the invoke loop, as many runs of reading the outputs, dequantizing
  them and `postprocess.decode` (boxes, scores, NMS) as the invoke loop timed;
- in-graph post-processing (TFLite_Detection_PostProcess): the op's time is p50 (mean) of the model minus p50
  (mean) of `--truncated`, a copy without the op whose outputs are the op's inputs, timed here the same way.
The decoder is edgecnn/tasks/detection/postprocess.py, the same file the host uses: found next to this file, or at
`--postprocess PATH` (on boards both are copied into the cache under content-hashed names).

With `--samples`, a detector's or segmenter's accuracy is not a top-1: each sample's outputs are decoded the same way
and what the task's post-processing file returns (`device_result`) comes back for the host to score: a detector's
boxes (in input pixels) in `detections` (`pack_detections`: compact and exact, scored as COCO mAP as `edgecnn eval`
does); a segmenter's summed pixel `confusion` matrix against the masks packed in the samples (the mIoU is the
host's, from that matrix, as `edgecnn eval` computes it); `accuracy` then names the task and `top1` is null.
Segmenters (their spec names task segmentation) load `tasks/segmentation/postprocess.py` the same way (the host
passes the file of the model's task with `--postprocess`): the arg-max over the logits is timed apart from invoke.

The JSON (keys listed in `SCHEMA`) goes to stdout; on any failure it is `{"status": "failed", "error": ...}` and
the exit code is non-zero (130 for Ctrl-C). The runtime's own log lines (e.g. XNNPACK's) go to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time

SCHEMA = "edgecnn.bench/1"
EXIT_FAILED = 2
EXIT_INTERRUPTED = 130


class RunnerError(Exception):
    """A failure whose message is written for the user (becomes the JSON `error`)."""


# --- runtime ---------------------------------------------------------------------------------------------------


def load_runtime():
    """Return (runtime name, version, Interpreter class, OpResolverType or None), preferring ai_edge_litert."""
    try:
        from ai_edge_litert import interpreter as mod

        return "ai_edge_litert", _dist_version("ai-edge-litert"), mod.Interpreter, mod.OpResolverType
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod

        return "tflite_runtime", _dist_version("tflite-runtime"), mod.Interpreter, getattr(mod, "OpResolverType", None)
    except ImportError:
        pass
    try:
        import tensorflow as tf  # last resort only: slow to import, and deprecated as an interpreter
    except ImportError:
        raise RunnerError("no TFLite runtime found: pip install ai-edge-litert (or tflite-runtime)") from None
    return "tensorflow.lite", tf.__version__, tf.lite.Interpreter, getattr(tf.lite.experimental, "OpResolverType", None)


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - a missing version must not fail a benchmark
        return "unknown"


def load_external_delegate(runtime_name: str, library: str):
    """Load a delegate library (e.g. libedgetpu.so.1 for a Coral Edge TPU) with the runtime's own loader."""
    try:
        if runtime_name == "ai_edge_litert":
            from ai_edge_litert.interpreter import load_delegate
        elif runtime_name == "tflite_runtime":
            from tflite_runtime.interpreter import load_delegate
        else:
            import tensorflow as tf

            load_delegate = tf.lite.experimental.load_delegate
        return load_delegate(library)
    except (ValueError, OSError, RuntimeError, AttributeError) as exc:  # AttributeError: ctypes finds no
        # tflite_plugin_create_delegate in the library (not a delegate, or a broken/foreign libedgetpu)
        hint = " (Coral: install the Edge TPU runtime, apt-get install libedgetpu1-std, and plug the accelerator in)" \
            if "edgetpu" in library else ""
        raise RunnerError(f"cannot load delegate {library}: {' '.join(str(exc).split())[:200]}{hint}") from None


def make_interpreter(runtime, model_path: str, threads: int, xnnpack: bool, delegate: str | None = None):
    """Build and allocate an interpreter; XNNPACK (the default delegate) is left out with `xnnpack=False`;
    `delegate` names an external delegate library (the Edge TPU's libedgetpu.so.1) to run the model with."""
    _, _, interpreter_cls, resolver = runtime
    kwargs = {"model_path": model_path, "num_threads": threads}
    if delegate:
        kwargs["experimental_delegates"] = [load_external_delegate(runtime[0], delegate)]
    if not xnnpack:
        if resolver is None:
            raise RunnerError("this runtime cannot disable XNNPACK (no OpResolverType); drop --no-xnnpack")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = interpreter_cls(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise RunnerError(explain_load_error(model_path, str(exc))) from None
    return interp


def explain_load_error(model_path: str, message: str) -> str:
    """Turn the runtime's multi-line load error into one line that names the problem (and a missing op)."""
    text = " ".join(message.split())
    lowered = text.lower()
    for marker in ("unresolved custom op:", "didn't find op for builtin opcode"):
        i = lowered.find(marker)
        if i >= 0:
            rest = text[i + len(marker):].strip()
            op = rest.split(" ")[0].rstrip(".,'\"")
            if "custom" in marker:
                return f"{model_path}: needs custom op {op!r}, which this runtime does not have"
            return f"{model_path}: needs builtin op {rest.split('.')[0]!r}, which this runtime does not have"
    if any(m in lowered for m in ("not a valid flatbuffer", "model identifier", "could not open", "failed to open")):
        return f"{model_path}: not a valid .tflite model, truncated or corrupt ({text[:200]})"
    return f"{model_path}: cannot load model: {text[:300]}"


# --- model file ------------------------------------------------------------------------------------------------


def check_model_file(path: str) -> dict:
    """Size and SHA-256 of the model file, after the checks the runtime would otherwise crash or mumble on."""
    if not os.path.exists(path):
        raise RunnerError(f"{path}: no such file")
    if os.path.isdir(path):
        raise RunnerError(f"{path}: is a directory, expected a .tflite file")
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        raise RunnerError(f"{path}: file is empty")
    # A TFLite flatbuffer carries the file identifier "TFL3" at bytes 4..8.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise RunnerError(f"{path}: not a .tflite flatbuffer (no TFL3 identifier)")
    return {"path": path, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# --- machine ---------------------------------------------------------------------------------------------------


def machine_info() -> dict:
    """CPU model, architecture and core count, read the way that works on Linux boards and desktops alike."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            info = fh.read()
        for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
            for line in info.splitlines():
                if line.split(":")[0].strip() == key and ":" in line:
                    cpu = line.split(":", 1)[1].strip()
                    break
            if cpu:
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu_model": cpu or platform.processor() or "unknown",
        "arch": platform.machine(),
        "cores": os.cpu_count() or 0,
        "cores_usable": usable,
        "os": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
    }


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MiB.

    Linux: VmHWM from /proc/self/status, the high-water mark of this program's own address space. Not ru_maxrss:
    Linux carries ru_maxrss across execve, so a runner started from a large parent (a TensorFlow-loaded
    `edgecnn run`, ~800 MB) would report the parent's peak instead of its own (~50 MB for a small model).
    Elsewhere: ru_maxrss (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 2)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 2)


# --- inputs ----------------------------------------------------------------------------------------------------


def io_details(details: list[dict]) -> list[dict]:
    """The JSON form of get_input_details()/get_output_details(): name, shape, dtype, scale, zero point."""
    out = []
    for d in details:
        scale, zp = d.get("quantization", (0.0, 0))
        out.append({
            "name": d["name"],
            "shape": [int(s) for s in d["shape"]],
            "dtype": str(d["dtype"].__name__ if hasattr(d["dtype"], "__name__") else d["dtype"]),
            "scale": float(scale),
            "zero_point": int(zp),
        })
    return out


def random_input(np, rng, detail: dict):
    """Seeded random values of the input's dtype: [-1, 1] floats, full-range 8-bit ints, small other ints."""
    shape, dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = (info.min, info.max) if dtype.itemsize == 1 else (0, 10)
        return rng.integers(low, high, shape, endpoint=True, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 1, shape, endpoint=True).astype(bool)
    raise RunnerError(f"input {detail['name']!r}: cannot make random values of dtype {dtype}")


def quantize_for(np, x, detail: dict):
    """Float samples -> the input's dtype: q = clip(round(x / scale) + zero_point) for int inputs, a cast else.

    In float32, as the host's `edgecnn.tflite.quant.quantize` (which `eval` feeds models with): preprocessed pixels
    often land on x / scale = k + 0.5 exactly, where float32 and float64 round to different integers (5% of a
    scenes:digits input did), so computing in float64 here made a bench's accuracy differ from eval's."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    if dtype.kind not in "iu":
        raise RunnerError(f"input {detail['name']!r}: samples cannot feed a {dtype} input")
    scale, zp = detail.get("quantization", (0.0, 0))
    if not scale:
        raise RunnerError(f"input {detail['name']!r} is {dtype} without quantization parameters; samples need "
                          "a float or quantized input")
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / np.float32(scale)) + np.float32(zp)
    return np.clip(q, info.min, info.max).astype(dtype)


def load_samples(np, path: str, inputs: list[dict]):
    """Read x (float32 (N, ...)) and optional y from an .npz; check that x fits the model's single input."""
    if not os.path.isfile(path):
        raise RunnerError(f"{path}: no such samples file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise RunnerError(f"{path}: samples .npz has no array 'x' (found: {', '.join(z.files) or 'none'})")
            x = z["x"]
            y = z["y"] if "y" in z.files else None
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{path}: not a readable .npz ({exc})") from None
    if len(inputs) != 1:
        raise RunnerError(f"{path}: samples feed single-input models; this model has {len(inputs)} inputs")
    want = [int(s) for s in inputs[0]["shape"]]
    if x.ndim != len(want) or list(x.shape[1:]) != want[1:]:
        raise RunnerError(f"{path}: samples x has shape {tuple(x.shape)}, the model input is {tuple(want)} "
                          f"(expected (N, {', '.join(str(s) for s in want[1:])}))")
    if len(x) == 0:
        raise RunnerError(f"{path}: samples x is empty")
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise RunnerError(f"{path}: samples x has {len(x)} rows but y has {len(y)} labels")
        y = y.astype(np.int64)
    return x.astype(np.float32, copy=False), y


# --- delegate partitions ---------------------------------------------------------------------------------------


def delegated_ops(ops: list[dict]) -> tuple[list[dict], list[dict], set[int]]:
    """(DELEGATE nodes, original ops, indices of the original ops a partition runs) of `_get_ops_details()` after
    `allocate_tensors()`: an original op is delegated when it lies between a partition's inputs and outputs (walk
    back from each DELEGATE node's outputs through producers until reaching that partition's inputs)."""
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {}
    for op in originals:
        for t in op["outputs"]:
            producer[int(t)] = op["index"]
    by_index = {op["index"]: op for op in originals}
    covered: set[int] = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        seen: set[int] = set()
        while todo:
            t = todo.pop()
            if t in seen or t in stop or t not in producer:
                continue
            seen.add(t)
            node = producer[t]
            if node in covered:
                continue
            covered.add(node)
            todo.extend(int(i) for i in by_index[node]["inputs"] if int(i) >= 0)
    return delegates, originals, covered


def delegation(interp) -> dict:
    """Delegate partitions and the ops of subgraph 0 that run outside them (in the plain TFLite interpreter):
    after `allocate_tensors()` the node list holds every original op plus one DELEGATE node per partition
    (`delegated_ops`). What is left runs outside XNNPACK.
    """
    try:
        ops = interp._get_ops_details()  # noqa: SLF001 - the only view of partitions the Python API gives
    except Exception as exc:  # noqa: BLE001
        return {"available": False, "reason": f"op details unavailable: {exc}"}
    delegates, originals, covered = delegated_ops(ops)
    outside: dict[str, int] = {}
    for op in originals:
        if op["index"] not in covered:
            outside[op["op_name"]] = outside.get(op["op_name"], 0) + 1
    return {
        "available": True,
        "scope": "subgraph 0",
        "ops_total": len(originals),
        "partitions": len(delegates),
        "ops_delegated": len(covered),
        "ops_outside": [{"op": k, "count": v} for k, v in sorted(outside.items(), key=lambda kv: (-kv[1], kv[0]))],
    }


def op_profile(interp) -> dict:
    """Per-op times. LiteRT's Python Interpreter exposes no profiler, so none are invented here.

    What is real is reported: each op of subgraph 0 in order and whether a delegate partition runs it.
    """
    return {
        "available": False,
        "reason": ("this runtime's Python API exposes no op profiler (LiteRT 2.3 Interpreter and "
                   "CompiledModel have none; litert-benchmark does no op profiling either)"),
        "ops": [{"index": op["index"], "op": op["op_name"]} for op in interp._get_ops_details()],  # noqa: SLF001
    }


# --- timing ----------------------------------------------------------------------------------------------------


def percentile(sorted_ms: list[float], p: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if not sorted_ms:
        return float("nan")
    k = (len(sorted_ms) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (k - lo) * (sorted_ms[hi] - sorted_ms[lo])


def summarize(times_ns: list[int]) -> dict:
    """mean, std (sample), min, p50, p90, p99, max in milliseconds."""
    ms = sorted(t / 1e6 for t in times_ns)
    n = len(ms)
    mean = sum(ms) / n if n else float("nan")
    std = (sum((v - mean) ** 2 for v in ms) / (n - 1)) ** 0.5 if n > 1 else 0.0
    r = lambda v: round(v, 4)  # noqa: E731
    return {"n": n, "mean_ms": r(mean), "std_ms": r(std), "min_ms": r(ms[0]) if n else None,
            "p50_ms": r(percentile(ms, 50)), "p90_ms": r(percentile(ms, 90)), "p99_ms": r(percentile(ms, 99)),
            "max_ms": r(ms[-1]) if n else None}


def timed_loop(invoke, runs: int, min_secs: float) -> tuple[list[int], float]:
    """Bare invoke() calls until both `runs` and `min_secs` are met; returns per-run ns and the wall seconds."""
    clock = time.perf_counter_ns
    times: list[int] = []
    append = times.append
    min_ns = int(min_secs * 1e9)
    start = clock()
    while True:
        t0 = clock()
        invoke()
        t1 = clock()
        append(t1 - t0)
        if len(times) >= runs and t1 - start >= min_ns:
            break
    return times, (clock() - start) / 1e9


def run_batches(np, interp, inputs, x):
    """Run all samples, one batch of the model's batch size at a time; yield each batch's real sample count after
    its invoke (the outputs are then read by the caller). The last batch is padded by repeating its final sample."""
    batch = max(1, int(inputs[0]["shape"][0]))
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        interp.set_tensor(inputs[0]["index"], quantize_for(np, chunk, inputs[0]))
        interp.invoke()
        yield n


def accuracy(np, interp, inputs, outputs, x, y) -> tuple[dict, list[int]]:
    """Top-1 over all samples (one batch of the model's batch size at a time); predictions from output 0."""
    preds: list[int] = []
    for n in run_batches(np, interp, inputs, x):
        out = interp.get_tensor(outputs[0]["index"])
        out = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(1, -1)
        preds.extend(int(v) for v in np.argmax(out, axis=1)[:n])
    result = {"n": len(preds), "top1": None}
    if y is not None:
        result["top1"] = round(float(np.mean(np.asarray(preds) == y)), 6)
    return result, preds


# --- detector post-processing ----------------------------------------------------------------------------------


def load_postprocess(path: str | None):
    """The postprocess module from `path` (default: postprocess.py next to this file), or None when absent."""
    import importlib.util

    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "postprocess.py")
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location("edgecnn_board_postprocess", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def embedded_spec(path: str) -> dict | None:
    """The edgecnn preprocessing spec (JSON) appended to the model in a zip, or None (a foreign model)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("edgecnn_preprocessing.json").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return None


def detector_head(a, pp, interp, inputs, outputs) -> tuple[dict | None, str | None]:
    """(head description, where it came from) for this model, or (None, None) when it is not a detector."""
    if a.head:
        if pp is None:
            raise RunnerError(f"--head needs postprocess.py next to the runner or at --postprocess ({a.postprocess})")
        try:
            return pp.parse_head(a.head), "given"
        except ValueError as exc:
            raise RunnerError(f"--head: {exc}") from None
    spec = embedded_spec(a.model)
    named = spec.get("task") if spec is not None else None
    if named and named == getattr(pp, "TASK", None):  # the task whose outputs the shipped post-processing decodes
        # a spec without a head means the task's default one (a detector's: an early CenterNet, as `edgecnn eval`)
        return dict(spec.get("head") or pp.DEFAULT_HEAD), "spec"
    if named and spec.get("head") and (pp is None or named != getattr(pp, "TASK", None)):  # a head, no decoder
        raise RunnerError(f"{a.model} is a {named} model but its post-processing is missing "
                          f"({a.postprocess or 'postprocess.py'}{'' if pp is None else f' decodes {pp.TASK} models'})")
    # no spec of a task with post-processing: a foreign detector, maybe converted by edgecnn (input-only spec)
    if pp is None or not hasattr(pp, "recognise"):
        return None, None
    try:
        ops = [{"name": op["op_name"], "outputs": list(op["outputs"])} for op in interp._get_ops_details()]  # noqa: SLF001
    except Exception:  # noqa: BLE001 - no op list: recognise by shapes only
        ops = []
    outs = [{"index": int(d["index"]), "shape": [int(v) for v in d["shape"]]} for d in outputs]
    head = pp.recognise(outs, ops, input_hw(inputs))
    return (head, "recognised") if head else (None, None)


def input_hw(inputs) -> tuple[int, int]:
    shape = [int(v) for v in inputs[0]["shape"]]
    return (shape[1], shape[2]) if len(shape) == 4 else (shape[-2], shape[-1]) if len(shape) >= 2 else (1, 1)


def dequantize(np, value, detail: dict):
    """An output tensor's float values: (q - zero_point) * scale when quantized, else as float32."""
    scale, zp = detail.get("quantization", (0.0, 0))
    if scale and np.dtype(detail["dtype"]).kind in "iu":
        return (value.astype(np.float32) - np.float32(zp)) * np.float32(scale)
    return value.astype(np.float32, copy=False)


def time_decode(np, pp, interp, inputs, outputs, head: dict, runs: int) -> tuple[dict, int]:
    """`runs` timed rounds of get_tensor + dequantize + decode of the outputs; (summary, prediction of sample 0)."""
    hw = input_hw(inputs)
    clock = time.perf_counter_ns
    times = [0] * max(1, runs)
    first = None
    for i in range(len(times)):
        t0 = clock()
        outs = [dequantize(np, interp.get_tensor(d["index"]), d) for d in outputs]
        preds = pp.decode(outs, head, hw)
        times[i] = clock() - t0
        first = preds[0] if len(preds) else None
    return summarize(times), first


def postprocess_timing(np, a, pp, runtime, interp, inputs, outputs, head, source, steady, input_values) -> dict:
    """The `postprocess` section: post-processing timed apart from invoke (see the module docstring)."""
    try:
        decoded, first = time_decode(np, pp, interp, inputs, outputs, head, steady["n"])
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise RunnerError(f"{a.model}: {pp.TASK} head {head.get('kind')!r} ({source}) does not fit the model's "
                          f"outputs {[tuple(int(v) for v in d['shape']) for d in outputs]}: "
                          f"{' '.join(str(exc).split())[:200]}") from None
    doc = {"head": head.get("kind"), "head_source": source, **pp.found(np, first)}
    if head.get("kind") in getattr(pp, "IN_GRAPH_HEADS", ()):
        doc["decode"] = decoded
        if not a.truncated:
            doc.update(method="in-graph op; not separated (no --truncated copy of the model was given)",
                       p50_ms=None, mean_ms=None)
            return doc
        trunc = make_interpreter(runtime, a.truncated, a.threads, not a.no_xnnpack, a.delegate)
        for d, value in zip(trunc.get_input_details(), input_values):
            trunc.set_tensor(d["index"], value)
        for _ in range(a.warmup + 1):
            trunc.invoke()
        times, wall = timed_loop(trunc.invoke, steady["n"], 0.0)
        without = summarize(times)
        without["wall_s"] = round(wall, 4)
        doc.update(method=f"in-graph {pp.DETECTION_POSTPROCESS_OP} op: the model's p50/mean minus those of a copy "
                          "without the op (its inputs as outputs), same inputs and runs",
                   p50_ms=round(steady["p50_ms"] - without["p50_ms"], 4),
                   mean_ms=round(steady["mean_ms"] - without["mean_ms"], 4), without_postprocess=without)
        return doc
    doc.update(method="after the invoke loop, as many runs of get_tensor + dequantize + postprocess.decode",
               **{k: decoded[k] for k in ("n", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "max_ms")})
    return doc


def decode_samples(np, pp, interp, inputs, outputs, x, head: dict) -> list:
    """Per sample what this device predicts (a detector's boxes (K, 4) in input pixels, scores, classes; a
    segmenter's class map): each batch's outputs dequantized and decoded by `postprocess.decode` (the decoder
    `edgecnn eval` uses), for the host to score."""
    hw = input_hw(inputs)
    preds: list = []
    for n in run_batches(np, interp, inputs, x):
        outs = [dequantize(np, interp.get_tensor(d["index"]), d) for d in outputs]
        preds.extend(list(pp.decode(outs, head, hw))[:n])
    return preds


# --- main ------------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a RunnerError, so even usage errors answer with JSON."""

    def error(self, message):
        raise RunnerError(f"bad arguments: {message}")


def parse_args(argv=None):
    p = _Parser(description="Benchmark one .tflite model; print one JSON document.")
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-secs", type=float, default=0.0)
    p.add_argument("--no-xnnpack", action="store_true")
    p.add_argument("--op-profile", action="store_true")
    p.add_argument("--samples", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--delegate", default=None, help="external delegate library, e.g. libedgetpu.so.1")
    p.add_argument("--head", default=None, help="detection head: a kind (blazeface) or a JSON description")
    p.add_argument("--postprocess", default=None, help="path of postprocess.py (default: next to this file)")
    p.add_argument("--truncated", default=None, help="the model without its in-graph detection post-processing")
    return p.parse_args(argv)


def check_settings(a) -> None:
    if a.threads < 1:
        raise RunnerError(f"--threads must be at least 1, got {a.threads}")
    if a.warmup < 0:
        raise RunnerError(f"--warmup must not be negative, got {a.warmup}")
    if a.runs < 0:
        raise RunnerError(f"--runs must not be negative, got {a.runs}")
    if not a.min_secs >= 0:
        raise RunnerError(f"--min-secs must not be negative, got {a.min_secs}")
    if a.runs == 0 and a.min_secs == 0:
        raise RunnerError("nothing to time: give --runs > 0 or --min-secs > 0")


def run(a) -> dict:
    """The whole benchmark for parsed arguments `a`; returns the JSON document (status ok)."""
    check_settings(a)
    settings = {"threads": a.threads, "warmup": a.warmup, "runs": a.runs, "min_secs": a.min_secs,
                "xnnpack": not a.no_xnnpack, "op_profile": a.op_profile, "seed": a.seed,
                "samples": a.samples, "delegate": a.delegate, "head": a.head}
    model = check_model_file(a.model)
    runtime = load_runtime()
    import numpy as np

    t0 = time.perf_counter_ns()
    interp = make_interpreter(runtime, a.model, a.threads, not a.no_xnnpack, a.delegate)
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    inputs, outputs = interp.get_input_details(), interp.get_output_details()

    x = y = None
    if a.samples:
        x, y = load_samples(np, a.samples, inputs)
    rng = np.random.default_rng(a.seed)
    input_values = []
    for i, d in enumerate(inputs):
        if x is not None and i == 0:
            batch = int(d["shape"][0])
            first = x[:batch] if len(x) >= batch else np.repeat(x[:1], batch, axis=0)
            value = quantize_for(np, first, d)
        else:
            value = random_input(np, rng, d)
        interp.set_tensor(d["index"], value)
        input_values.append(value)
    pp = load_postprocess(a.postprocess)
    head, head_source = detector_head(a, pp, interp, inputs, outputs)

    invoke = interp.invoke
    t0 = time.perf_counter_ns()
    invoke()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    warm = [0] * a.warmup
    for i in range(a.warmup):
        t0 = time.perf_counter_ns()
        invoke()
        warm[i] = time.perf_counter_ns() - t0
    times, wall = timed_loop(invoke, a.runs, a.min_secs)
    steady = summarize(times)
    steady["wall_s"] = round(wall, 4)

    doc = {
        "schema": SCHEMA,
        "status": "ok",
        "model": model,
        "settings": settings,
        "runtime": {"name": runtime[0], "version": runtime[1], "python": platform.python_version(),
                    "numpy": np.__version__},
        "machine": machine_info(),
        "io": {"inputs": io_details(inputs), "outputs": io_details(outputs)},
        "subgraphs": int(interp.num_subgraphs()) if hasattr(interp, "num_subgraphs") else None,
        "input_source": "samples" if x is not None else "random",
        "timing": {"init_ms": round(init_ms, 4), "first_ms": round(first_ms, 4),
                   "warmup": summarize(warm) if warm else {"n": 0}, "steady": steady},
        "delegation": delegation(interp),
        "peak_rss_mb": None,
        "op_profile": op_profile(interp) if a.op_profile else None,
        "accuracy": None,
        "postprocess": None,
    }
    if head is not None:
        doc["postprocess"] = postprocess_timing(np, a, pp, runtime, interp, inputs, outputs, head, head_source,
                                                steady, input_values)
    if x is not None and head is not None:  # a task with post-processing: what the host scores, never a top-1
        preds = decode_samples(np, pp, interp, inputs, outputs, x, head)
        doc["accuracy"] = {"n": len(preds), "task": pp.TASK, "top1": None}
        try:
            key, value = pp.device_result(np, preds, a.samples, [list(d["shape"]) for d in outputs])
        except (ValueError, KeyError) as exc:
            raise RunnerError(f"{a.samples}: {' '.join(str(exc).split())[:300]}") from None
        doc[key] = value
    elif x is not None:
        doc["accuracy"], doc["outputs_top1"] = accuracy(np, interp, inputs, outputs, x, y)
    doc["peak_rss_mb"] = peak_rss_mb()
    return doc


def failed(error: str, argv) -> dict:
    return {"schema": SCHEMA, "status": "failed", "error": error, "argv": list(argv)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        doc, code = run(parse_args(argv)), 0
    except RunnerError as exc:
        doc, code = failed(str(exc), argv), EXIT_FAILED
    except KeyboardInterrupt:
        doc, code = failed("interrupted", argv), EXIT_INTERRUPTED
    except MemoryError:
        doc, code = failed("out of memory", argv), EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the board side must always answer with JSON
        doc, code = failed(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", argv), EXIT_FAILED
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
