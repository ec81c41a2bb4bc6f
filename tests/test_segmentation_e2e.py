"""A segmenter end to end on the offline scenes:digits masks: train -> float32 / int8 .tflite -> eval (mIoU),
bench --data (the device's confusion matrix) = eval, Ray shards = one process, compare with and without masks,
and `edgecnn run` with the report's mask picture.

The model is a small LR-ASPP (MobileNetV3-Small, minimalistic, 64 px) trained one short epoch: no test asserts what
it reaches, only that the numbers agree wherever they are computed and that the masks and class maps compared are
not empty (the truth holds objects; the model's class maps hold more than one class).
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

import deploy_models
from helpers import run_cli

pytestmark = pytest.mark.slow

DATA = "scenes:digits"
LIMIT = 64
MODEL = "lraspp_mobilenet_v3_small"
KNOBS = {"alpha": 0.35, "minimalistic": True}


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg")
    keras = deploy_models.trained_keras(d, MODEL, DATA, epochs=1, input_size=64, knobs=KNOBS,
                                        max_train_samples=512)
    return keras, deploy_models.to_float32(keras, d / "f32.tflite"), deploy_models.to_int8(keras, d / "int8.tflite",
                                                                                          DATA, 64)


def _maps(result) -> list:
    from edgecnn.tasks.segmentation.metrics import example_map

    return [example_map(e) for e in result["examples"]]


def test_train_int8_eval_scores_every_model_by_miou(segmenter):
    from edgecnn.evaluate.accuracy import evaluate

    results = [evaluate(m, DATA, LIMIT, examples=8) for m in segmenter]
    for r in results:
        assert r["task"] == "segmentation" and r["metric"] == "mIoU" and r["value"] == r["miou"]
        assert r["n"] == LIMIT and r["pixels"] == LIMIT * 128 * 128  # scored in the scenes' own pixels
        assert 0.0 <= r["miou"] <= 1.0 and r["classes_scored"] >= 2
        assert sum(c["pixels"] > 0 for c in r["per_class"][1:]) >= 3  # the truth holds objects of several digits
        maps = _maps(r)
        assert len(maps) == 8 and maps[0].shape == (64, 64)  # the model's own size
        assert len(np.unique(np.concatenate([m.ravel() for m in maps]))) >= 2  # not one class everywhere
    # float32 .tflite and Keras agree closely; int8 is scored the same way
    assert abs(results[0]["miou"] - results[1]["miou"]) < 0.02


def test_bench_on_the_device_equals_eval(segmenter):
    """The runner arg-maxes on the device and returns one confusion matrix; its mIoU is eval's, to the last digit."""
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.bench.run import bench_model
    from edgecnn.devices.profiles import load_profile
    from edgecnn.evaluate.accuracy import evaluate

    _, _, int8 = segmenter
    doc = bench_model(str(int8), load_profile("local-cpu"), BenchSettings(warmup=1, runs=3), data=DATA, limit=LIMIT)
    assert doc["status"] == "ok", doc.get("error")
    acc, ev = doc["accuracy"], evaluate(int8, DATA, LIMIT)
    assert acc["task"] == "segmentation" and acc["metric"] == "mIoU" and acc["top1"] is None
    assert acc["pixels"] == ev["pixels"] > 0
    assert acc["miou"] == ev["miou"] and acc["value"] == ev["miou"]
    assert [c["iou"] for c in acc["per_class"]] == [c["iou"] for c in ev["per_class"]]
    post = doc["postprocess"]
    assert post["head"] == "argmax" and post["p50_ms"] is not None and len(post["classes_found"]) >= 1
    assert "confusion" not in doc  # scored and dropped
    from edgecnn.store.db import row_from_doc

    row = row_from_doc(doc)  # the results database keeps it as the task's metric
    assert row["accuracy_metric"] == "mIoU" and row["miou"] == ev["miou"] and row["top1"] is None


def test_ray_shards_equal_one_process(segmenter):
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.evaluate.compare import compare
    from edgecnn.executor.ray_cluster import RayExecutor

    _, f32, int8 = segmenter
    n = 300  # 256 + 44: two shards hold images
    local = evaluate(int8, DATA, n)
    local_cmp = compare(f32, int8, DATA, n, layer_samples=4)
    with RayExecutor() as ex:
        shards = functools.partial(ex.map_shards, count=3)
        assert evaluate(int8, DATA, n, map_shards=shards) == local
        sharded_cmp = compare(f32, int8, DATA, n, layer_samples=4, map_shards=shards)
    assert local["pixels"] > 0 and local["classes_scored"] >= 2
    assert {k: v for k, v in sharded_cmp.items() if k != "worst_layers"} == \
        {k: v for k, v in local_cmp.items() if k != "worst_layers"}


def test_compare_with_and_without_masks(segmenter):
    from edgecnn.evaluate.compare import compare

    _, f32, int8 = segmenter
    r = compare(f32, int8, DATA, LIMIT, layer_samples=4)
    assert r["task"] == "segmentation" and r["labeled"]
    assert 0.0 < r["pixel_agreement"] <= 1.0 and r["agreement"] == r["pixel_agreement"]
    assert r["kl_per_pixel"] >= 0.0 and r["output_snr_db"]["logits"] > 0
    assert r["drop_points"] == pytest.approx(100 * (r["float_miou"] - r["quant_miou"]))
    assert r["per_class"] and all(c["delta_points"] is not None for c in r["per_class"])
    assert r["worst_layers"]
    free = compare(f32, int8, "calibration:photos", 16, layer_samples=4)  # a flat folder of photos: no masks
    assert not free["labeled"] and "float_miou" not in free and 0.0 < free["pixel_agreement"] <= 1.0
    assert free["kl_per_pixel"] >= 0.0
    cli = run_cli("compare", str(f32), str(int8), "--data", DATA, "--limit", str(LIMIT))
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "pixel agreement" in cli.stdout and "float mIoU" in cli.stdout


def test_a_segmenter_given_a_classification_set_is_one_line(segmenter):
    keras, _, int8 = segmenter
    for cmd in (["eval", str(int8), "--data", "digits"], ["bench", str(int8), "--data", "digits"]):
        cli = run_cli(*cmd)
        assert cli.returncode != 0
        lines = [ln for ln in (cli.stderr + cli.stdout).strip().splitlines() if ln.strip()]
        assert any("a classification set, but" in ln and "segmentation model" in ln for ln in lines), cli.stderr
        assert "Traceback" not in cli.stderr


def test_run_a_segmentation_recipe_reports_miou_and_masks(tmp_path):
    recipe = tmp_path / "seg.yaml"
    recipe.write_text(f"name: seg-tiny\ndata: {DATA}\nmodels:\n  - {{name: {MODEL}, input_size: 64, epochs: 1, "
                      f"options: {json.dumps(KNOBS)}}}\nquant: [float32, int8]\ndevices: [local-cpu]\n"
                      "calibration_samples: 32\neval_samples: 64\nmax_train_samples: 512\nbench_runs: 5\nseed: 0\n")
    p = run_cli("run", recipe, "-o", tmp_path / "run", "--json", timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads(p.stdout)["rows"]
    assert [(r["precision"], r["task"]) for r in rows] == [("float32", "segmentation"), ("int8", "segmentation")]
    for r in rows:
        assert r["metric"] == "mIoU" and r["value"] is not None and r["miou"] == r["value"]
        assert r["examples"] and r["float_examples"]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "mIoU" in html and "Masks: " in html


def test_a_foreign_float_segmenter_converts_and_compares_label_free(segmenter, tmp_path):
    """A float segmentation .tflite made elsewhere (no edgecnn spec: this one's stripped of it) is recognised by its
    one (1, H, W, C) output: it converts to int8 and compares pixel by pixel on photos, out of the box."""
    from edgecnn.tflite.metadata import read_spec, strip

    _, f32, _ = segmenter
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(strip(f32.read_bytes()))
    assert read_spec(foreign) is None
    q = tmp_path / "foreign_int8.tflite"
    scaling = ["--scale", str(2 / 255), "--offset", "-1"]
    conv = run_cli("convert", foreign, "-o", q, "--quant", "int8", "--calibration", "photos",
                   "--num-calibration", "16", *scaling)
    assert conv.returncode == 0, conv.stderr[-2000:]
    cmp = run_cli("compare", foreign, q, "--data", "calibration:photos", "--limit", "16", "--json", *scaling)
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    r = json.loads(cmp.stdout)
    r = r[0] if isinstance(r, list) else r
    assert r["task"] == "segmentation" and not r["labeled"] and r["n"] == 16
    assert 0.0 < r["pixel_agreement"] <= 1.0 and r["kl_per_pixel"] >= 0.0


def test_a_saved_segmenter_fine_tunes_on_scenes_as_a_segmenter(segmenter, tmp_path):
    """scenes: carry boxes and masks: a saved model's own task (its spec's) decides what it is trained for."""
    from edgecnn.train.trainer import TrainConfig, train

    keras, _, _ = segmenter
    r = train(TrainConfig(str(keras), DATA, epochs=1, batch_size=32, max_train_samples=64), tmp_path / "ft.keras",
              progress=False)
    assert r["task"] == "segmentation" and r["test_samples"] == 500 and r["test_miou"] is not None


def test_a_mask_folder_without_classes_txt_scores_a_model_of_more_classes(segmenter, tmp_path):
    """A mask folder names only the classes up to the largest it holds: fewer names than the model's classes is
    fine; a class above the model's is one line."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.evaluate.accuracy import evaluate
    from mask_folders import mask_dir

    _, _, int8 = segmenter
    root = tmp_path / "masks"
    mask_dir(root, n=10, classes=(), sizes=[(64, 48)] * 10)
    r = evaluate(int8, str(root))
    assert r["task"] == "segmentation" and r["pixels"] > 0 and r["classes_scored"] >= 2
    big = tmp_path / "big"
    mask_dir(big, n=10, classes=tuple(f"c{i}" for i in range(12)))
    with pytest.raises(EdgecnnError, match="has 12 classes but the model was trained on 11"):
        evaluate(int8, str(big))


def _with_arg_max(keras_path, out):
    """The segmenter as a DeepLab export ships: a float .tflite whose one output is ARG_MAX's (1, H, W) int64 ids
    (exported the Keras 3 way, through a SavedModel)."""
    import tensorflow as tf

    from edgecnn.modelfile import load_model

    import keras

    model = load_model(keras_path)[0]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: tf.argmax(model(x, training=False), axis=-1),
                         input_signature=[tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)])
    saved = out.parent / f"{out.stem}_savedmodel"
    archive.write_out(str(saved), verbose=False)
    out.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    return out


def test_a_foreign_segmenter_ending_in_arg_max_converts_to_logits_and_scores_the_same(segmenter, tmp_path):
    """A float .tflite ending in ARG_MAX (no XNNPACK kernel, not an Edge TPU op) is recognised as a segmenter by that
    op; convert cuts it off (the int8 model outputs its class scores); the float file's class ids score as the
    same model's logits do, and compare pairs it with its int8 pixel by pixel."""
    from edgecnn.convert.edgetpu import preflight
    from edgecnn.convert.tflite_source import read_float_tflite
    from edgecnn.tflite.reader import op_name, parse

    _, f32, _ = segmenter
    foreign = _with_arg_max(segmenter[0], tmp_path / "deeplab_like.tflite")
    assert "ARG_MAX" in {op_name(parse(foreign.read_bytes()), op)
                         for op in parse(foreign.read_bytes()).subgraphs[0].operators}
    data, _, hw, notes, _ = read_float_tflite(foreign)
    cut = parse(data)
    assert hw == (64, 64, 3) and any("ARG_MAX" in n for n in notes)
    assert "ARG_MAX" not in {op_name(cut, op) for op in cut.subgraphs[0].operators}
    assert [int(d) for d in cut.subgraphs[0].tensors[int(cut.subgraphs[0].outputs[0])].shape] == [1, 64, 64, 11]

    scaling = ["--scale", str(2 / 255), "--offset", "-1"]
    ev = run_cli("eval", foreign, f32, "--data", DATA, "--limit", "32", "--json", *scaling)
    assert ev.returncode == 0, ev.stderr[-2000:]
    ids, logits = json.loads(ev.stdout)
    assert ids["task"] == logits["task"] == "segmentation" and ids["classes_scored"] >= 2
    assert ids["pixels"] == logits["pixels"] > 0 and ids["miou"] == pytest.approx(logits["miou"], abs=1e-9)

    bench = run_cli("bench", foreign, "--runs", "5", "--json")  # the board runner recognises it by its ARG_MAX too
    assert bench.returncode == 0, bench.stderr[-2000:]
    pp = json.loads(bench.stdout)["postprocess"]
    assert (pp["head"], pp["head_source"]) == ("argmax", "recognised") and pp["classes_found"], pp

    q = tmp_path / "deeplab_like_int8.tflite"
    conv = run_cli("convert", foreign, "-o", q, "--quant", "int8", "--calibration", DATA, "--num-calibration", "32",
                   "--json", *scaling)
    assert conv.returncode == 0, conv.stderr[-2000:]
    qm = parse(q.read_bytes())
    assert "ARG_MAX" not in {op_name(qm, op) for op in qm.subgraphs[0].operators}
    delegate = json.loads(conv.stdout)["delegate"]  # what the cut is for: the whole int8 graph in XNNPACK
    assert delegate["partitions"] == 1 and delegate["ops_outside"] == [], delegate
    assert preflight(q)["maps_fully"]  # ... and on the Edge TPU
    cmp = run_cli("compare", foreign, q, "--data", DATA, "--limit", "32", "--json", *scaling)
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    r = json.loads(cmp.stdout)
    r = r[0] if isinstance(r, list) else r
    assert r["task"] == "segmentation" and r["labeled"] and r["n"] == 32
    assert 0.5 < r["pixel_agreement"] <= 1.0 and r["float_miou"] == pytest.approx(ids["miou"], abs=1e-9)
    assert "kl_per_pixel" not in r  # class ids on one side: no scores to compare
