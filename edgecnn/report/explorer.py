"""The error on the graph: Model Explorer node data for a quantized model, and the viewer itself.

| function            | what it does                                                                              |
|---------------------|-------------------------------------------------------------------------------------------|
| `overlay_paths`     | `FILE.json` -> the three node-data files `compare --explorer FILE.json` writes             |
| `check_overlay_path`| a bad `--explorer` path in one line, before a comparison runs                              |
| `write_overlays`    | compare's layer rows + the quantized .tflite -> the three files, written atomically together |
| `explore`           | open Model Explorer on a model with overlays (the optional `explorer` extra)               |

| file                  | value per node                                        | keyed by                      |
|-----------------------|-------------------------------------------------------|-------------------------------|
| `FILE.json`           | relative RMSE vs float of every compared tensor       | output tensor name            |
| `FILE.precision.json` | the op's output dtype: int8, int16, float32, ...      | every op's first output's name |
| `FILE.delegate.json`  | `XNNPACK` or `outside XNNPACK` (LiteRT's CPU delegate) | every op's first output's name |

Model Explorer (`ai-edge-model-explorer`, read in 0.1.34: `model_explorer/node_data_builder.py`) takes node data
as one `GraphNodeData` per file: `{"name", "results": {KEY: {"value", "bgColor"?, "textColor"?}}, "thresholds":
[{"value", "bgColor", "textColor"?}], "gradient": [...], ...}` (or a dict of them keyed by graph id). Its web app
maps KEY to a node through the `tensor_name` of the node's outputs (what its .tflite adapter puts there is the
flatbuffer tensor name, the name `layer_error` matches float and quantized tensors by), else takes KEY as a node id.
A value is a number (coloured by `thresholds`) or a label string (coloured by its own `bgColor`); one value per node
per file, hence three files. ai-edge-quantizer's `validate()` writes the same single-`GraphNodeData` form.

When Model Explorer is installed the document goes through its own builder classes; without it the same JSON is
written directly (the extra is optional; `compare --explorer` works either way).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

from edgecnn.errors import EdgecnnError

INSTALL_HINT = "pip install 'edgecnn[explorer]'"
KINDS = ("error", "precision", "delegate")
# Relative RMSE bands (RMSE over the float tensor's RMS): green where int8 is rounding noise, red where it loses.
ERROR_BANDS = ((0.01, "#1a9850"), (0.03, "#91cf60"), (0.1, "#fee08b"), (0.3, "#fc8d59"), (sys.float_info.max,
                                                                                           "#d73027"))
PRECISION_COLORS = {"int8": "#91cf60", "int16": "#74add1", "float32": "#fc8d59", "float16": "#fdae61"}
PLACEMENT_COLORS = {"XNNPACK": "#91cf60", "outside XNNPACK": "#d73027", "unknown": "#dddddd"}
OTHER_COLOR = "#dddddd"


def overlay_paths(path: str | os.PathLike) -> dict[str, Path]:
    """`FILE.json` -> {"error": FILE.json, "precision": FILE.precision.json, "delegate": FILE.delegate.json}."""
    p = Path(path)
    return {kind: p if kind == "error" else p.with_name(f"{p.stem}.{kind}.json") for kind in KINDS}


def check_overlay_path(path: str | os.PathLike) -> dict[str, Path]:
    """The three paths of `path`, or one clear error (not .json, no such directory, a directory, not writable)."""
    from edgecnn.atomic import check_output_dir

    if Path(path).suffix.lower() != ".json":
        raise EdgecnnError(f"{path}: --explorer writes Model Explorer node data, a .json file")
    paths = overlay_paths(path)
    for p in paths.values():
        check_output_dir(p)
    parent = paths["error"].parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgecnnError(f"{path}: directory {parent} is not writable")
    return paths


def _document(name: str, results: dict[str, dict], thresholds: list[dict]) -> str:
    """One GraphNodeData as JSON text: through Model Explorer's own classes when installed, else the same dict."""
    doc = {"name": name, "results": results, "thresholds": thresholds}
    try:
        from model_explorer.node_data_builder import GraphNodeData, NodeDataResult, ThresholdItem
    except ImportError:
        return json.dumps(doc, indent=2, allow_nan=False)
    built = GraphNodeData(name=name, results={k: NodeDataResult(**v) for k, v in results.items()},
                          thresholds=[ThresholdItem(**t) for t in thresholds])
    return built.to_json_string(indent=2)


def error_results(layers: list[dict]) -> dict[str, dict]:
    """layer_error rows -> {tensor: {"value": relative RMSE, 4 significant digits}} (non-finite values left out)."""
    return {r["tensor"]: {"value": float(f"{r['relative_rmse']:.4g}")} for r in layers
            if math.isfinite(r["relative_rmse"])}


def _labels(values: dict[str, str], colors: dict[str, str]) -> dict[str, dict]:
    return {k: {"value": v, "bgColor": colors.get(v, OTHER_COLOR)} for k, v in values.items()}


def graph_facts(quant_path: str | Path) -> tuple[dict[str, str], dict[str, str], dict]:
    """Per op of subgraph 0, keyed by its first output tensor's name: the output dtype and where it runs on this
    CPU (XNNPACK, as `bench` runs it, or outside: the board runner's own walk); and the delegation summary."""
    import numpy as np

    from edgecnn.board.runner import delegated_ops, delegation
    from edgecnn.tflite.interpreter import allocate, make_interpreter

    interp = make_interpreter(quant_path, threads=1)
    allocate(interp)
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    _, originals, covered = delegated_ops(interp._get_ops_details())  # noqa: SLF001 - the only view of partitions
    d = delegation(interp)
    precision, placement = {}, {}
    for op in originals:
        if not len(op["outputs"]):
            continue
        out = tensors[int(op["outputs"][0])]
        precision[out["name"]] = np.dtype(out["dtype"]).name
        placement[out["name"]] = ("unknown" if not d.get("available") else
                                  "XNNPACK" if op["index"] in covered else "outside XNNPACK")
    return precision, placement, {k: d[k] for k in ("available", "partitions", "ops_total", "ops_delegated",
                                                      "reason") if k in d}


def write_overlays(path: str | os.PathLike, quant_path: str | Path, layers: list[dict]) -> dict:
    """Write the three node-data files of `path` for `quant_path`'s graph (see the module docstring) and return what
    was written. All three are written to temporary files first and put in place together: a failure leaves none."""
    from edgecnn.atomic import atomic_path

    paths = check_overlay_path(path)
    precision, placement, delegate = graph_facts(quant_path)
    name = Path(quant_path).name
    thresholds = [{"value": v, "bgColor": c} for v, c in ERROR_BANDS]
    texts = {"error": _document(f"{name}: relative RMSE vs float", error_results(layers), thresholds),
             "precision": _document(f"{name}: output precision", _labels(precision, PRECISION_COLORS), []),
             "delegate": _document(f"{name}: CPU delegate", _labels(placement, PLACEMENT_COLORS), [])}
    try:
        with contextlib.ExitStack() as stack:
            for kind, p in paths.items():
                tmp = stack.enter_context(atomic_path(p))
                tmp.write_text(texts[kind], encoding="utf-8")
    except OSError as exc:
        raise EdgecnnError(f"{path}: cannot write Model Explorer node data ({exc.strerror or exc})") from None
    return {"files": {k: str(p) for k, p in paths.items()}, "layers": len(error_results(layers)),
            "ops": len(precision), "delegate": delegate}


# --- the viewer -------------------------------------------------------------------------------------------------


def _overlay_files(overlays) -> list[Path]:
    """The precision/delegate files `compare --explorer` wrote beside each --overlay, then the overlay itself (Model
    Explorer shows the last one loaded on the graph first); each checked."""
    files: list[Path] = []
    for given in overlays:
        p = Path(given)
        if not p.is_file():
            raise EdgecnnError(f"{p}: no such node-data file")
        siblings = [s for kind, s in overlay_paths(p).items() if kind != "error" and s.is_file()]
        for f in [*siblings, p]:
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise EdgecnnError(f"{f}: not a JSON file ({str(exc).splitlines()[0][:120]})") from None
            if not isinstance(doc, dict) or not ("results" in doc or any(
                    isinstance(v, dict) and "results" in v for v in doc.values())):
                raise EdgecnnError(f"{f}: not Model Explorer node data (no \"results\")")
            if f not in files:
                files.append(f)
    return files


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("localhost", port)) == 0


def explore(model: str | Path, overlays=(), port: int = 8080, browser: bool = True) -> None:
    """Serve `model` with its overlays in Model Explorer until Ctrl-C (a browser tab opens unless `browser=False`).

    Port 8080 lets Model Explorer pick the next free one; another port must be free. Needs the `explorer` extra.
    """
    m = Path(model)
    if not m.is_file():
        raise EdgecnnError(f"{m}: no such model file")
    if m.suffix.lower() == ".tflite":
        from edgecnn.tflite.reader import read_model

        read_model(m)  # one clear error for a file that is not a .tflite
    files = _overlay_files(overlays)
    if port != 8080 and _port_in_use(port):
        raise EdgecnnError(f"--port {port}: already in use")
    try:
        import model_explorer
    except ImportError:
        raise EdgecnnError(f"Model Explorer is not installed; to view models: {INSTALL_HINT}") from None
    config = model_explorer.config().add_model_from_path(str(m.resolve()))
    for f in files:
        config.add_node_data_from_path(str(f.resolve()))
    model_explorer.visualize_from_config(config, port=port, no_open_in_browser=not browser)
