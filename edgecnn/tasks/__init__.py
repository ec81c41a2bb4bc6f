"""The task table: what a model predicts, and everything that depends on it, in one place per task.

| task             | truth in a data set                    | predictions (`postprocess`)          | metric (`score`)      |
|------------------|----------------------------------------|--------------------------------------|-----------------------|
| `classification` | a class per image (`Dataset.labels`)   | scores (N, classes) of output 0      | top-1 (and top-5)     |
| `detection`      | boxes per image (`Dataset.boxes`)      | boxes, scores, classes per image     | COCO mAP@.5 (and @[.5:.95]) |
| `segmentation`   | a class per pixel (`Dataset.masks`)    | a class map per image (arg-max)      | mIoU (one confusion matrix) |

A task is one object (`edgecnn.tasks.base.Task`) whose hooks every stage calls instead of asking "is this a
detector?": the evaluate/compare engine (local and Ray, `edgecnn.evaluate.engine`), the quality tools of convert
(rewrite check, `--calibration-method best`, guided mode), `bench --data` scoring, `mcu-check --data`, the pipeline,
the console, the store and the report. The task of a model is decided once, from its spec (`for_spec`), a
foreign detector's recognised head (`for_model`), or a data set (`for_dataset`).

Adding a task is one module with a `Task` subclass and one line in `_BUILTIN` (or `register(task)` from outside, as
the test suite registers a toy task): no stage changes. Modules are imported on first use, so `edgecnn --help`
imports none of them. Like Ultralytics' `task_map` (task -> model, trainer, validator, predictor) with validator hooks
`postprocess -> update_metrics -> get_stats`, but as small functions over numpy, not large classes.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edgecnn.errors import EdgecnnError

DEFAULT = "classification"  # the task of a spec that names none (every model before tasks existed)

# name -> "module:attribute" of the task object; imported on first use
_BUILTIN = {
    "classification": "edgecnn.tasks.classification:TASK",
    "detection": "edgecnn.tasks.detection:TASK",
    "segmentation": "edgecnn.tasks.segmentation:TASK",
}
_LOADED: dict = {}

# the numpy-only post-processing shipped beside the board runner (`--postprocess`) for a model whose task has none of
# its own (`Task.board_file`): detection's, which recognises foreign detectors (BlazeFace, TFLite_Detection_PostProcess)
BOARD_POSTPROCESS = Path(__file__).resolve().parent / "detection" / "postprocess.py"


# tasks whose models edgecnn recognises in a foreign .tflite (no spec, or a spec of the default task), in this order:
# each task's `recognise` reads the graph's outputs (`edgecnn.tflite.detect.recognise_head`)
FOREIGN = ("detection", "segmentation")


def board_file(spec, model=None) -> Path:
    """The post-processing file to ship beside the board runner for `model` with `spec` (None: a foreign model): its
    task's `board_file` (a foreign model's recognised task's), else detection's, which recognises foreign detectors
    on the board by their outputs."""
    task = for_spec(spec) if spec is not None else get(DEFAULT)
    if task.name == DEFAULT and model is not None:
        task = _foreign(model)[0] or task
    return getattr(task, "board_file", None) or BOARD_POSTPROCESS


def register(task) -> None:
    """Add (or replace) a task object under `task.name`: a `Task` subclass instance."""
    _LOADED[task.name] = task


def names() -> list[str]:
    """Every known task name, built-in and registered."""
    return sorted(set(_BUILTIN) | set(_LOADED))


def get(name):
    """The task object named `name` (None: classification, what a spec without a task means; a task object is
    returned as it is)."""
    if name is not None and not isinstance(name, str):
        return name
    name = name or DEFAULT
    if name not in _LOADED:
        if name not in _BUILTIN:
            raise EdgecnnError(f"unknown task {name!r}; known: {', '.join(names())}")
        module, attr = _BUILTIN[name].split(":")
        _LOADED[name] = getattr(importlib.import_module(module), attr)
    return _LOADED[name]


def known(name):
    """The task named `name` in a stored document, or the default task when this edgecnn does not know the name (a
    result written by a task registered elsewhere still shows, under the default task's cells)."""
    return get(name if name is None or name in names() else None)


def for_spec(spec) -> object:
    """The task of a model with an edgecnn spec (`PreprocessSpec.task`)."""
    return get(getattr(spec, "task", None))


def for_model(spec, model_path, head: dict | None = None):
    """(task, context) of a model: its spec's task, or a foreign .tflite's recognised by its outputs (`FOREIGN`: a
    detector's head, a segmenter's logits; a given `head` is a detector's); the context is what the task's
    `postprocess` needs (`Task.context`)."""
    task = for_spec(spec)
    if task.name == DEFAULT:
        found, found_head = (get("detection"), head) if head else _foreign(model_path)
        if found is not None:
            return found, found.context(spec, head=found_head)
    return task, task.context(spec, head=head)


def for_dataset(ds) -> object:
    """The task whose truth a data set carries: the first other task that owns it, else the default task (whose
    truth, a class per image, every set without another task's truth is taken to carry)."""
    for name in names():
        if name != DEFAULT and get(name).owns(ds):
            return get(name)
    return get(DEFAULT)


def _foreign(model_path) -> tuple:
    """(task, head) of a .tflite (a path, or the flatbuffer's bytes) whose outputs a `FOREIGN` task recognises, else
    (None, None) (any other model file)."""
    if isinstance(model_path, (bytes, bytearray)):
        source = bytes(model_path)
    else:
        source = Path(model_path) if model_path is not None else None
        if source is None or not source.is_file():
            return None, None
        with open(source, "rb") as fh:
            if fh.read(8)[4:8] != b"TFL3":  # the flatbuffer identifier (edgecnn.modelfile.model_kind reads it too)
                return None, None
    from edgecnn.tflite.detect import recognise_head

    for name in FOREIGN:
        head = recognise_head(source, get(name).recognise)
        if head is not None:
            return get(name), head
    return None, None
