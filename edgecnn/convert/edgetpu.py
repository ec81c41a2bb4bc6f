"""Coral Edge TPU, the conversion side: an offline preflight, the compiler and its log.

| function             | what it does                                                        | needs Coral software     |
|----------------------|---------------------------------------------------------------------|--------------------------|
| `preflight`          | reads the .tflite: integer-only, static shapes, batch 1, tensor rank, each op against Coral's supported-op list (`data/edgetpu_ops.yaml`), and where the compiler would cut the graph back to the CPU | no |
| `parse_compiler_log` | edgetpu_compiler's stdout / `*_edgetpu.log` -> JSON (ops mapped, on-chip/off-chip memory, subgraphs) | no |
| `compile_model`      | runs `edgetpu_compiler` (this machine, or the board's host over SSH) and parses its log | edgetpu_compiler |
| `for_edgetpu`        | `convert --target edgetpu`: preflight, then compile once, or the exact command to run | no            |

Everything here works without Coral's software except `compile_model`, which fails with one line naming the
package and where to get it: Coral's packages come only from Coral's own apt repository. Running a compiled model
with the Edge TPU delegate is the bench's work (`edgecnn.bench.edgetpu`).

The compiler cuts a graph once: "as soon as an unsupported operation occurs, that operation and everything after
it executes on the CPU" (Coral's model requirements). A QUANTIZE fed straight by a float graph input, or a
DEQUANTIZE feeding a graph output, runs on the CPU at the edge without cutting the graph.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.tflite.reader import const_ints, enum_names, is_constant, op_name, read_model, schema, tensor_name

OPS_FILE = Path(__file__).resolve().parent / "data" / "edgetpu_ops.yaml"
COMPILER = "edgetpu_compiler"
RUNTIME_LIB = "libedgetpu.so.1"
INSTALL_COMPILER = ("install edgetpu_compiler (x86-64 Debian/Ubuntu only) from Coral's apt repository: "
                    "https://coral.ai/docs/edgetpu/compiler/#download (sudo apt-get install edgetpu-compiler)")
INSTALL_RUNTIME = ("install the Edge TPU runtime from Coral's apt repository: "
                   "https://coral.ai/docs/accelerator/get-started/ (sudo apt-get install libedgetpu1-std)")

_INT_ACT = ("INT8", "UINT8")  # activation types the Edge TPU computes in
_BATCH_AXIS_OPS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN")


@functools.lru_cache(maxsize=1)
def supported_ops() -> dict:
    """Coral's supported-op table and requirements (`data/edgetpu_ops.yaml`), with its source."""
    import yaml

    with open(OPS_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# ---- preflight -----------------------------------------------------------------------------------------------


def preflight(path: str | Path, runtime_version: int | None = None) -> dict:
    """Would `path` compile fully for the Edge TPU? Checks the model requirements and walks the ops in order.

    Raises EdgecnnError for a file that is not a .tflite, or a model that is not integer-quantized (the Edge
    TPU runs nothing of a float model). Otherwise returns a report; `report["maps_fully"]` is the verdict.
    """
    table = supported_ops()
    runtime_version = runtime_version or int(table["source"]["runtime_version"])
    model = read_model(path)
    ttypes = enum_names(schema().TensorType)
    acts = enum_names(schema().ActivationFunctionType)
    sg = model.subgraphs[0]
    tensors = sg.tensors
    ops = sg.operators or []
    graph_inputs, graph_outputs = set(sg.inputs), set(sg.outputs)

    def tname(i):
        return ttypes.get(tensors[i].type, "?")

    def is_const(i):
        return is_constant(model, tensors[i])

    # activations = every tensor an op reads or writes that is not a constant
    act_ids = sorted({i for op in ops for i in list(op.inputs) + list(op.outputs) if i >= 0 and not is_const(i)})
    float_acts = [i for i in act_ids if tname(i) in ("FLOAT32", "FLOAT16")]
    non_edge_float = [i for i in float_acts if i not in graph_inputs and i not in graph_outputs]
    if float_acts and len(non_edge_float) > len(act_ids) // 2:
        raise EdgecnnError(
            f"{path}: not an integer-quantized model ({len(non_edge_float)} of {len(act_ids)} activation tensors "
            "are float): the Edge TPU runs only full-integer int8/uint8 models; convert with int8 quantization")

    checks = []

    def check(name, ok, detail=""):
        checks.append({"check": name, "ok": bool(ok), "detail": detail})

    check("single subgraph", len(model.subgraphs) == 1,
          "" if len(model.subgraphs) == 1 else f"{len(model.subgraphs)} subgraphs: more than one is not supported")
    io_types = [f"{'input' if i in graph_inputs else 'output'} {tensor_name(tensors[i])}: {tname(i)}"
                for i in list(sg.inputs) + list(sg.outputs)]
    float_io = [d for d in io_types if d.endswith("FLOAT32")]
    check("integer-only", not non_edge_float,
          f"float tensors inside the graph: {len(non_edge_float)}" if non_edge_float else
          ("integer inside; float I/O converted on the CPU: " + ", ".join(float_io)) if float_io else "int8/uint8 throughout")
    dynamic = [i for i in act_ids + list(sg.inputs)
               if tensors[i].shapeSignature is not None and any(int(d) < 0 for d in tensors[i].shapeSignature)]
    batch_only = all(int(d) >= 0 for i in dynamic for d in list(tensors[i].shapeSignature)[1:])
    check("static shapes", not dynamic,
          "" if not dynamic else (f"{len(dynamic)} tensors have a dynamic batch dimension (e.g. "
                                  f"{tensor_name(tensors[dynamic[0]])}): convert with the batch fixed at 1 "
                                  "(keras.Input(..., batch_size=1))" if batch_only else
                                  f"{len(dynamic)} tensors with dynamic dimensions, e.g. {tensor_name(tensors[dynamic[0]])}"))
    batches = {int(tensors[i].shape[0]) for i in sg.inputs if tensors[i].shape is not None and len(tensors[i].shape)}
    check("batch 1", batches <= {1}, "" if batches <= {1} else f"input batch size {sorted(batches)}; the Edge TPU runs batch 1")
    bad_rank = [i for i in act_ids if _bad_rank(tensors[i].shape)]
    check("tensor rank", not bad_rank,
          "" if not bad_rank else f"{len(bad_rank)} tensors with more than 3 non-1 innermost dimensions, e.g. "
          f"{tensor_name(tensors[bad_rank[0]])} {list(tensors[bad_rank[0]].shape)}")

    # ---- ops in execution order
    rows, cut = [], None
    for idx, op in enumerate(ops):
        name = op_name(model, op)
        reason = _op_problem(model, op, name, tensors, tname, is_const, acts, table, runtime_version)
        edge = (name == "QUANTIZE" and all(i in graph_inputs for i in op.inputs if i >= 0)
                and tname(op.inputs[0]) in ("FLOAT32", "FLOAT16")) or \
               (name == "DEQUANTIZE" and all(o in graph_outputs for o in op.outputs))
        if cut is None and reason and edge:
            rows.append({"index": idx, "op": name, "where": "cpu", "reason": f"{reason} (at the graph edge: no cut)"})
            continue
        if cut is None and reason:
            cut = {"index": idx, "op": name, "reason": reason}
        if cut is not None:
            rows.append({"index": idx, "op": name, "where": "cpu",
                         "reason": reason or f"after the cut at op {cut['index']} ({cut['op']})"})
        else:
            rows.append({"index": idx, "op": name, "where": "edgetpu", "reason": ""})
    mapped = sum(r["where"] == "edgetpu" for r in rows)
    summary: dict[tuple, int] = {}
    for r in rows:
        key = (r["op"], "Mapped to Edge TPU" if r["where"] == "edgetpu" else r["reason"].split(" (")[0])
        summary[key] = summary.get(key, 0) + 1
    structural_ok = all(c["ok"] for c in checks if c["check"] != "integer-only") and not non_edge_float
    return {
        "model": str(path),
        "source": table["source"]["url"],
        "compiler_version": table["source"]["compiler_version"],
        "runtime_version": runtime_version,
        "maps_fully": structural_ok and cut is None and mapped > 0,
        "checks": checks,
        "ops_total": len(rows),
        "ops_edgetpu": mapped,
        "ops_cpu": len(rows) - mapped,
        "first_cpu_op": cut,
        "ops": rows,
        "op_table": [{"op": k[0], "count": v, "status": k[1]} for k, v in summary.items()],
    }


def _bad_rank(shape) -> bool:
    """More than 3 dims and a non-1 size outside the 3 innermost ones."""
    if shape is None or len(shape) <= 3:
        return False
    return any(int(d) > 1 for d in list(shape)[:-3])


def _op_problem(model, op, name, tensors, tname, is_const, acts, table, runtime_version) -> str:
    """Why the compiler would not map `op` (its log's wording where it has one), or "" when it would."""
    entry = table["operations"].get(name)
    if entry is None:
        return "Operation not supported (not in Coral's supported-op list)"
    need = entry.get("runtime", "all")
    if need != "all" and int(need) > runtime_version:
        return f"Operation needs Edge TPU runtime {need} (target runtime {runtime_version})"
    io = [i for i in list(op.inputs) + list(op.outputs) if i >= 0 and not is_const(i)]
    bad_types = sorted({tname(i) for i in io if tname(i) not in _INT_ACT})
    if bad_types and not (name == "QUANTIZE" or name == "DEQUANTIZE"):
        return f"Operation is working on an unsupported data type ({', '.join(bad_types)})"
    if name in ("QUANTIZE",) and bad_types:
        return f"Operation is working on an unsupported data type ({', '.join(bad_types)})"
    if any(_bad_rank(tensors[i].shape) for i in io):
        return "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
    opts = op.builtinOptions
    act = acts.get(getattr(opts, "fusedActivationFunction", 0) or 0, "NONE")
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION") and act != "NONE":
        return f"Fused activation {act} not supported on {name}"
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and opts is not None:
        if int(opts.dilationHFactor or 1) != int(opts.dilationWFactor or 1):
            return "Dilation must be the same in x and y"
    if name == "FULLY_CONNECTED" and opts is not None and int(opts.weightsFormat or 0) != 0:
        return "Only the default format is supported for fully-connected weights"
    if name in _BATCH_AXIS_OPS and len(op.inputs) > 1:
        axes = const_ints(model, tensors[op.inputs[1]])
        rank = len(tensors[op.inputs[0]].shape)
        if axes is not None and any(a % rank == 0 for a in axes):
            return "Cannot operate on the batch dimension"
    if name == "STRIDED_SLICE" and opts is not None:
        strides = const_ints(model, tensors[op.inputs[3]]) if len(op.inputs) > 3 else None
        if (strides is not None and any(s != 1 for s in strides)) or opts.ellipsisMask or opts.newAxisMask:
            return "Strided slice needs all strides 1 and no ellipsis/new-axis masks"
    if name == "SOFTMAX":
        shape = [int(d) for d in tensors[op.inputs[0]].shape]
        n = 1
        for d in shape[1:]:
            n *= d
        if n > 16000:
            return f"Softmax over {n} elements (max 16,000)"
    if name == "PAD" and len(op.inputs) > 1:
        pads = const_ints(model, tensors[op.inputs[1]])
        if pads and any(pads[:2]):
            return "Padding along the batch dimension is not supported"
    if name == "PACK" and opts is not None and int(opts.axis or 0) == 0:
        return "No packing in batch dimension"
    if name == "SPLIT" and op.inputs:
        axis = const_ints(model, tensors[op.inputs[0]])
        if axis and axis[0] == 0:
            return "No splitting in batch dimension"
    return ""


# ---- the compiler log ----------------------------------------------------------------------------------------

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3}
_SIZE_KEYS = {
    "Input size": "input_size_bytes",
    "Output size": "output_size_bytes",
    "On-chip memory available for caching model parameters": "on_chip_available_bytes",
    "On-chip memory used for caching model parameters": "on_chip_used_bytes",
    "On-chip memory remaining for caching model parameters": "on_chip_remaining_bytes",
    "Off-chip memory used for streaming uncached model parameters": "off_chip_bytes",
}
_INT_KEYS = {
    "Number of Edge TPU subgraphs": "subgraphs",
    "Total number of operations": "ops_total",
    "Number of operations that will run on Edge TPU": "ops_edgetpu",
    "Number of operations that will run on CPU": "ops_cpu",
}
_TEXT_KEYS = {"Input model": "input_model", "Input": "input_model", "Output model": "output_model",
              "Output": "output_model", "Operation log": "operation_log"}
_OP_ROW = re.compile(r"^([A-Z][A-Z0-9_]*(?:\([^)]*\))?)\s+(\d+)\s+(\S.*?)\s*$")


def _size(text: str) -> int | None:
    m = re.match(r"\s*([\d.]+)\s*([KMG]?i?B)\s*$", text)
    if not m:
        return None
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))


def parse_compiler_log(text: str) -> dict:
    """edgetpu_compiler's console output and/or its `*_edgetpu.log` -> a dict.

    Keys (present when the text has them): compiler_version, compiled (bool), compile_ms, input_model,
    output_model, *_bytes for each size line, subgraphs, ops_total, ops_edgetpu, ops_cpu, operations (the
    Operator/Count/Status table), error. Several segments (`-n`) are summed where that makes sense.
    """
    out: dict = {"compiled": False, "operations": []}
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = re.match(r"Edge TPU Compiler version (\S+)", line)
        if m:
            out["compiler_version"] = m.group(1)
            continue
        m = re.match(r"Model compiled successfully in (\d+) ms", line)
        if m:
            out["compiled"] = True
            out["compile_ms"] = out.get("compile_ms", 0) + int(m.group(1))
            continue
        if "Internal compiler error" in line or line.startswith("ERROR:") or "Compilation failed" in line:
            out["error"] = line
            continue
        if re.match(r"Operator\s+Count\s+Status", line):
            in_table = True
            continue
        if in_table:
            m = _OP_ROW.match(line)
            if m:
                out["operations"].append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3),
                                          "mapped": m.group(3) == "Mapped to Edge TPU"})
                continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in _SIZE_KEYS:
            size = _size(value)
            if size is not None:
                k = _SIZE_KEYS[key]
                out[k] = out.get(k, 0) + size if k in ("on_chip_used_bytes", "off_chip_bytes") else size
        elif key in _INT_KEYS and value.isdigit():
            k = _INT_KEYS[key]
            out[k] = out.get(k, 0) + int(value) if k != "subgraphs" else out.get(k, 0) + int(value)
        elif key in _TEXT_KEYS:
            out.setdefault(_TEXT_KEYS[key], value)
    if out["operations"]:
        on = sum(r["count"] for r in out["operations"] if r["mapped"])
        off = sum(r["count"] for r in out["operations"] if not r["mapped"])
        out.setdefault("ops_edgetpu", on)
        out.setdefault("ops_cpu", off)
        out.setdefault("ops_total", on + off)
    elif out.get("compiled") and "ops_total" in out and "ops_cpu" not in out:
        # "See the operation log file": the console shows no table when every op maps
        out["ops_edgetpu"], out["ops_cpu"] = out["ops_total"], 0
    if "compiler_version" in out and "input_model" in out and "error" not in out and not out["compiled"] \
            and out["operations"]:
        out["compiled"] = True  # an operation log file (`*_edgetpu.log`) has no "compiled successfully" line
    return out


# ---- the compiler and the runtime ----------------------------------------------------------------------------


def find_compiler() -> str:
    """The path of edgetpu_compiler, or an error that says how to install it."""
    path = shutil.which(COMPILER)
    if not path:
        raise EdgecnnError(f"{COMPILER} not found on PATH; {INSTALL_COMPILER}")
    return path


def compile_model(path: str | Path, out_dir: str | Path, timeout: float = 600.0, board=None,
                  work_dir: str = "~/edgecnn") -> dict:
    """Compile `path` with edgetpu_compiler into `out_dir`; return the parsed log + `output` path.

    Uses the compiler on this machine when it is on PATH; else, given `board` (an open SshBoard), the one on the
    board's host (run in `work_dir`/edgetpu there; the compiled model is copied back into `out_dir`). Neither: an
    EdgecnnError that says what to install. The output is always `out_dir/<stem>_edgetpu.tflite`, a local file.
    """
    path, out_dir = Path(path), Path(out_dir)
    preflight(path)  # one clear line for a float model before anything runs
    local = shutil.which(COMPILER)
    if local:
        try:
            res = subprocess.run([local, "-s", "-o", str(out_dir), str(path)], capture_output=True, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgecnnError(f"{path}: {COMPILER} did not finish within {timeout:g} s") from None
        text = res.stdout + "\n" + res.stderr
        log = out_dir / f"{path.stem}_edgetpu.log"
        parsed = _parse_console_and_log(text, log.read_text(errors="replace") if log.is_file() else "")
        output = out_dir / f"{path.stem}_edgetpu.tflite"
        if res.returncode != 0 or not output.is_file():
            raise EdgecnnError(f"{path}: {COMPILER} failed (exit {res.returncode}): "
                               f"{parsed.get('error') or _last(text)}")
        return {**parsed, "output": str(output), "where": "local"}
    if board is not None:
        import shlex

        has = board.run(f"command -v {COMPILER}", timeout=30)
        if has.exit_status == 0 and has.stdout.strip():
            work = board.resolve(f"{work_dir.rstrip('/')}/edgetpu")
            board.makedirs(work)
            remote = board.put_cached(path, work)
            res = board.run(f"cd {shlex.quote(work)} && {COMPILER} -s -o {shlex.quote(work)} {shlex.quote(remote)}",
                            timeout=timeout)
            stem = Path(remote).stem
            log = board.run(f"cat {shlex.quote(work)}/{shlex.quote(stem)}_edgetpu.log 2>/dev/null", timeout=30)
            parsed = _parse_console_and_log(res.stdout + "\n" + res.stderr, log.stdout)
            if res.exit_status != 0:
                raise EdgecnnError(f"{path}: {COMPILER} on {board.t.name} failed (exit {res.exit_status}): "
                                   f"{parsed.get('error') or _last(res.stdout + res.stderr)}")
            output = out_dir / f"{path.stem}_edgetpu.tflite"  # brought back: the bench copies what it runs
            try:
                board.sftp.get(f"{work}/{stem}_edgetpu.tflite", str(output))
            except OSError as exc:
                raise EdgecnnError(f"{path}: {COMPILER} on {board.t.name} wrote no {stem}_edgetpu.tflite ({exc})") \
                    from None
            return {**parsed, "output": str(output), "where": board.t.name}
    where = " here or on the board's host" if board is not None else ""
    raise EdgecnnError(f"{COMPILER} not found on PATH{where}; {INSTALL_COMPILER}")


def _parse_console_and_log(console: str, log: str) -> dict:
    """The compiler's console output plus its operation log file (`*_edgetpu.log`), parsed once.

    With `-s` the console already prints the log's Operator/Count/Status table: the file is added only when the
    console has no table, else every operation would be counted twice.
    """
    if re.search(r"^\s*Operator\s+Count\s+Status", console, re.M):
        return parse_compiler_log(console)
    return parse_compiler_log(console + "\n" + log)


def for_edgetpu(path: str | Path) -> dict:
    """`convert --target edgetpu` after the model is written: the preflight, then one compile when
    edgetpu_compiler is installed; without it (x86-64 Debian/Ubuntu only, absent on most hosts) the exact command
    to run where it is, and where to get it. Never an error for a missing compiler: the model is ready for it."""
    import shlex

    path = Path(path)
    out = {"preflight": preflight(path)}
    if shutil.which(COMPILER):
        out["compiler"] = compile_model(path, path.resolve().parent)
    else:
        out["compiler"] = {"compiled": False, "install": INSTALL_COMPILER,
                           "command": f"{COMPILER} -s -o {shlex.quote(str(path.resolve().parent))} "
                                      f"{shlex.quote(str(path))}"}
    return out


def _last(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"
