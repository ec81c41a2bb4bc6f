"""The task table (`edgecnn.tasks`): a task registered from outside the package runs through eval and compare
without any stage knowing it, and the guard rails of the design hold (checked on the source, by AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import task_toy
from helpers import REPO

PACKAGE = REPO / "edgecnn"
STAGES = ("zoo", "data", "train", "convert", "evaluate", "bench", "deploy", "store", "report")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy "brightness" task registered, its exact Keras model and an int8 conversion of it."""
    import deploy_models
    from edgecnn import tasks

    tasks.register(task_toy.TASK)
    d = tmp_path_factory.mktemp("toy-task")
    keras = task_toy.brightness_model(d / "bright.keras")
    return keras, deploy_models.to_int8(keras, d / "bright_int8.tflite", "digits", num_calibration=32)


def _by_hand(model, src="digits", limit=None):
    """The toy metric computed here, from the model's own outputs and the images, not through edgecnn's engine."""
    from edgecnn.data import load_split
    from edgecnn.evaluate.accuracy import model_spec
    from edgecnn.evaluate.predict import predict

    spec = model_spec(model)
    ds = load_split(src, "test")
    ds = ds.take(limit) if limit else ds
    est = predict(model, spec.apply(ds.images)).reshape(-1)
    truth = np.array([np.asarray(im, np.float64).mean() / 255 for im in ds.images])
    return est, truth


@pytest.mark.slow
def test_a_task_registered_from_outside_runs_through_eval(toy):
    from edgecnn.evaluate.accuracy import evaluate

    for model in toy:
        r = evaluate(model, "digits")
        est, truth = _by_hand(model)
        assert len(est) == r["n"] > 300 and est.std() > 0.01  # real estimates of real images, not constants
        assert r["task"] == "brightness" and r["metric"] == "within-0.1"
        assert r["value"] == r["within"] == pytest.approx(float(np.mean(np.abs(est - truth) <= 0.1)))
        assert r["mae"] == pytest.approx(float(np.mean(np.abs(est - truth))), rel=1e-5)


@pytest.mark.slow
def test_a_task_registered_from_outside_runs_through_compare(toy):
    from edgecnn.evaluate.compare import compare

    keras, int8 = toy
    r = compare(keras, int8, "digits", limit=100, top_layers=3)
    f, truth = _by_hand(keras, limit=100)
    q, _ = _by_hand(int8, limit=100)
    assert r["task"] == "brightness" and r["n"] == 100 and r["labeled"] is True
    assert r["agreement"] == pytest.approx(float(np.mean(np.abs(f - q) <= task_toy.AGREE)))
    assert r["float_value"] == pytest.approx(float(np.mean(np.abs(f - truth) <= 0.1)))
    assert r["drop_points"] == pytest.approx(100 * (r["float_value"] - r["quant_value"]))
    assert list(r["output_snr_db"]) == ["output0"] and r["output_snr_db"]["output0"] > 10  # int8 of a mean
    assert r["layers_compared"] > 0


def test_an_unknown_task_in_a_spec_is_one_line():
    from edgecnn.data.spec import PreprocessSpec
    from edgecnn.errors import EdgecnnError

    with pytest.raises(EdgecnnError, match=r"m\.keras: field 'task' must be one of .*classification.*detection"):
        PreprocessSpec.from_dict({"height": 8, "width": 8, "channels": 1, "task": "pose"}, "m.keras")


# --- guard rails, on the source -----------------------------------------------------------------------------------

def _modules():
    for f in sorted(PACKAGE.rglob("*.py")):
        yield f, f.relative_to(PACKAGE).parts, ast.parse(f.read_text(), str(f))


def _imports(tree) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


# deploy/flash.py records each flash in the results database (store/) — the one import to the right, kept until
# flash returns its record for the caller to store
RIGHTWARD_EXCEPTIONS = {("deploy/flash.py", "store")}


def test_no_stage_imports_a_stage_to_its_right():
    found = []
    for f, parts, tree in _modules():
        if parts[0] not in STAGES:
            continue
        for module in _imports(tree):
            p = module.split(".")
            if p[0] == "edgecnn" and len(p) > 1 and p[1] in STAGES and STAGES.index(p[1]) > STAGES.index(parts[0]):
                if ("/".join(parts), p[1]) not in RIGHTWARD_EXCEPTIONS:
                    found.append(f"{'/'.join(parts)} imports {module}")
    assert not found, found


def test_tasks_import_no_stage_and_the_shipped_files_import_nothing_of_edgecnn():
    """Tasks are infrastructure every stage uses, so they use no stage; the files that run on boards (the runner,
    a task's post-processing) carry nothing of edgecnn with them."""
    found = []
    for f, parts, tree in _modules():
        mods = _imports(tree)
        if parts[0] == "tasks":
            found += [f"{'/'.join(parts)} imports {m}" for m in mods
                      if m.split(".")[0] == "edgecnn" and len(m.split(".")) > 1 and m.split(".")[1] in STAGES]
        if parts in (("board", "runner.py"), ("tasks", "detection", "postprocess.py")):
            found += [f"{'/'.join(parts)} imports {m}" for m in mods if m.split(".")[0] == "edgecnn"]
    assert not found, found
    assert not (PACKAGE / "board" / "postprocess.py").exists()  # board/ keeps only the runner


# Files that still name a task as a string outside the task table and the zoo (each a place a new task would have
# to be added by hand), with how many times. This list may only shrink: a new file naming a task, or more names in
# one of these, fails the test.
TASK_NAME_DEBT: dict[str, int] = {}


def test_task_names_appear_only_in_the_task_table_and_the_zoo():
    counts = {}
    for f, parts, tree in _modules():
        if parts[0] in ("tasks", "zoo"):
            continue
        tasks_named = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in
                       ("classification", "detection")]
        if tasks_named:
            counts["/".join(parts)] = len(tasks_named)
    grown = {k: v for k, v in counts.items() if v > TASK_NAME_DEBT.get(k, 0)}
    assert not grown, f"task names outside edgecnn/tasks and edgecnn/zoo: {grown}"
    assert counts == TASK_NAME_DEBT, "a file paid its debt: lower its count in TASK_NAME_DEBT (it only shrinks)"


def test_a_task_without_a_trainer_is_refused_by_train_in_one_line():
    from edgecnn.errors import EdgecnnError
    from edgecnn.train.trainer import task_trainer

    with pytest.raises(EdgecnnError, match=r"cannot train brightness models .*trainable: classification, detection"):
        task_trainer(task_toy.TASK)


def test_results_written_before_value_existed_still_read():
    """A run directory's cached eval results from before the task table hold `top1` / `map50`, not `value`: a
    re-run reads them through the task's own key."""
    from edgecnn import pipeline, tasks

    assert pipeline._accuracy_text({"model": "m", "n": 3, "top1": 0.5, "top5": 1.0}) == "top-1 0.5000"
    assert tasks.get("detection").value({"task": "detection", "map50": 0.25, "map": 0.1}) == 0.25
    assert tasks.known("a-task-from-elsewhere").name == tasks.DEFAULT  # stored documents of unknown tasks show


def test_a_registered_task_that_owns_a_set_is_found_before_the_default():
    from edgecnn import tasks
    from edgecnn.data.dataset import Dataset
    from edgecnn.tasks.base import Task

    class Keypoints(Task):
        name = "zz-keypoints"

        def owns(self, ds):
            return getattr(ds, "keypoints", None) is not None

    tasks.register(Keypoints())
    ds = Dataset(np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.int64), ("a",), "t")
    assert tasks.for_dataset(ds).name == "classification"
    ds.keypoints = [np.zeros((4, 2))] * 2
    assert tasks.for_dataset(ds).name == "zz-keypoints"
    tasks._LOADED.pop("zz-keypoints")
    del ds.keypoints
    ds.masks = [np.zeros((4, 4), np.uint8)] * 2  # a set with masks is a segmentation set ...
    assert tasks.for_dataset(ds).name == "segmentation"
    ds.boxes = [np.zeros((0, 5), np.float32)] * 2  # ... and one with boxes too (scenes:) a detection set first
    assert tasks.for_dataset(ds).name == "detection"
    assert tasks.get("segmentation").accepts(ds) and tasks.get("detection").accepts(ds)
