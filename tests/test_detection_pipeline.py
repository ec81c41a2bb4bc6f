"""`edgecnn run` on a detector: train -> float32/int8 -> COCO mAP -> compare -> bench -> report with mAP and boxes.

Structure only (what one short epoch reaches depends on the machine): the rows are detection rows with mAP in
place of top-1, computed on boxes found (not an empty list, whose mAP 0 would pass too), the drop is float mAP@.5 minus int8's, and both reports show mAP and a picture of the boxes.
"""

from __future__ import annotations

import json

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow


def test_run_a_detector_recipe(tmp_path):
    recipe = tmp_path / "det.yaml"
    recipe.write_text("name: det\ndata: scenes:digits\nmodels:\n"
                      "  - {name: centernet_mobilenet_v1, input_size: 64, epochs: 1, batch_size: 32,\n"
                      "     options: {head_channels: 16}}\n"
                      "quant: [float32, int8]\ndevices: [local-cpu]\nbench_runs: 5\nmax_train_samples: 96\n"
                      "eval_samples: 32\ncalibration_samples: 16\n")
    p = run_cli("run", recipe, "-o", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads(p.stdout)["rows"]
    assert [(r["precision"], r["task"]) for r in rows] == [("float32", "detection"), ("int8", "detection")]
    f32, i8 = rows
    for r in rows:
        assert 0.0 <= r["map"] <= r["map50"] <= 1.0 and r["value"] == r["map50"] and r["bench_status"] == "ok"
        assert r["objects"] > 0 and r["detections"] > 0  # the mAP is of boxes found, against true ones
        assert len(r["examples"]) == 4 and all(set(e) == {"truth", "boxes", "scores", "classes"}
                                               for e in r["examples"])
    assert i8["float_map50"] == f32["map50"]
    assert abs(i8["drop_points"] - 100 * (f32["map50"] - i8["map50"])) < 1e-9
    assert "train centernet_mobilenet_v1_head_channels16: test loss" in p.stderr and "mAP@.5" in p.stderr
    html = (tmp_path / "run" / "report.html").read_text()
    assert "mAP@.5" in html and "Boxes: centernet_mobilenet_v1_head_channels16 float32 and int8" in html
    md = (tmp_path / "run" / "report.md").read_text()
    assert "mAP@.5" in md and "boxes" in md
    assert list((tmp_path / "run").glob("report*boxes*.png"))
