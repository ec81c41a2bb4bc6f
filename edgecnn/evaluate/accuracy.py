"""Accuracy of any model (Keras or .tflite of any IO dtype) on a data source's test split.

Inputs are preprocessed with the model's own saved spec (the `.keras` zip entry or the `.tflite` appended zip),
so a model is evaluated exactly as it was trained and calibrated; a foreign model without one is fed as the user's
--scale/--offset or --mean/--std say (`spec_for`, the same construction as convert's).

What is measured is the model's task's metric (`edgecnn.tasks`): top-1 for a classifier, COCO mAP for a detector.
Sharded (`edgecnn eval/compare --executor ray`): `edgecnn.evaluate.engine` runs the models on contiguous shards
of the test split (`shard_bounds`) and puts them back in order, so the numbers are those of a single process.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.data.spec import InputScaling, PreprocessSpec, spec_for
from edgecnn.errors import EdgecnnError


def input_shape(model_path: str | Path, kind: str) -> tuple:
    """The model's input shape without the batch: (H, W, C) for an image model."""
    if kind == "tflite":
        from edgecnn.tflite.interpreter import make_interpreter

        return tuple(make_interpreter(model_path).get_input_details()[0]["shape"][1:])
    from edgecnn.modelfile import load_model

    return tuple(load_model(model_path)[0].input_shape[1:])


def model_spec(model_path: str | Path, scaling: InputScaling | None = None) -> PreprocessSpec:
    """The spec saved with the model, with `scaling` (--scale/--offset, --mean/--std) applied when given; a model
    without a saved spec needs them (one line naming the flags otherwise)."""
    from edgecnn.tflite.metadata import read_spec
    from edgecnn.modelfile import model_kind, read_keras_spec

    kind = model_kind(model_path)
    saved = read_spec(model_path) if kind == "tflite" else read_keras_spec(model_path) if kind == "keras" else None
    if saved is not None and not (scaling and scaling.given):
        return saved
    return spec_for(input_shape(model_path, kind), saved, scaling, str(model_path))


def test_split(src: str, spec: PreprocessSpec, limit: int | None = None, needs_labels: str | None = "eval",
               task: str | None = None, model="the model"):
    """The raw Dataset of `src`'s test split (its first `limit` samples), checked against the model's task
    (`task`, default the spec's: a labeled set of the other task is one line, `check_task`) and classes.

    `needs_labels` names who needs the labels (an unlabeled source is then one line); None accepts any source.
    """
    from edgecnn.data import load_split
    from edgecnn.data.dataset import check_task

    ds = load_split(src, "test", needs_labels=needs_labels)
    check_task(task or spec.task, ds, model, src)
    if limit:
        ds = ds.take(limit)
    from edgecnn import tasks

    t = tasks.get(task or spec.task)
    names = t.class_names(ds)  # a segmentation set's: its mask classes
    if spec.labels and names and not t.classes_fit(len(names), len(spec.labels)):
        raise EdgecnnError(f"{src}: has {len(names)} classes but the model was trained on {len(spec.labels)}")
    return ds


def eval_data(src: str, spec: PreprocessSpec, limit: int | None = None, needs_labels: str | None = "eval",
              model="the model", task: str | None = None):
    """(x, dataset): `src`'s test split preprocessed with `spec`, and the raw Dataset (labels, `labeled`)."""
    ds = test_split(src, spec, limit, needs_labels, task, model)
    return spec.apply(ds.images), ds


def eval_arrays(src: str, spec: PreprocessSpec, limit: int | None = None, command: str = "eval",
                model="the model"):
    """(x, y, class_names) of `src`'s test split, preprocessed with `spec`; `command` names who needs the labels."""
    x, ds = eval_data(src, spec, limit, command, model)
    return x, ds.labels, ds.class_names


def shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """Samples [start, stop) of shard `index` of `count` over `n` samples: contiguous, in order, and starting on a
    multiple of KERAS_BATCH (a multiple of LiteRT's BATCH), so every shard runs exactly the batches of the whole."""
    from edgecnn.evaluate.predict import KERAS_BATCH

    blocks = -(-n // KERAS_BATCH)
    start, stop = blocks * index // count, blocks * (index + 1) // count
    return min(start * KERAS_BATCH, n), min(stop * KERAS_BATCH, n)


def evaluate(model_path: str | Path, src: str, limit: int | None = None, scaling: InputScaling | None = None,
             map_shards=None, examples: int = 0) -> dict:
    """The model's task metric on `src`'s test split (labels needed): `{model, data, task, metric, value, n, ...}`
    with the task's details (a classifier's `top1`, `top5`; a detector's COCO `map50`, `map`, `per_class`; see
    `edgecnn.tasks`); `scaling` for a model without a spec. `map_shards` (e.g. `RayExecutor.map_shards`) spreads
    the inference over workers; the numbers are the same (`edgecnn.evaluate.engine`). `examples`: what the task
    pictures of the first `examples` test images (a detector's boxes), when it has any.
    """
    from edgecnn import tasks
    from edgecnn.evaluate import engine

    spec = model_spec(model_path, scaling)
    task, ctx = tasks.for_model(spec, model_path)
    ctx = {**ctx, "model": str(model_path)}
    r = engine.run(task, [model_path], [ctx], src, spec, limit, "eval", map_shards)
    ctx.update(r.info)
    out = {"model": str(model_path), "data": src, **task.score(r.preds[0], r.truth, r.class_names, ctx)}
    if examples:
        shown = task.examples(r.preds[0], r.truth, ctx, examples)
        if shown is not None:
            out["examples"] = shown
    return out
