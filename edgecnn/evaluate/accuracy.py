"""Accuracy of any model (Keras or .tflite of any IO dtype) on a data source's test split.

Inputs are preprocessed with the model's own saved spec (the `.keras` zip entry or the `.tflite` appended zip),
so a model is evaluated exactly as it was trained and calibrated; a foreign model without one is fed as the user's
--scale/--offset or --mean/--std say (`spec_for`, the same construction as convert's).

Sharded (`edgecnn eval/compare --executor ray`): `shard_scores` is what one worker computes — the scores of the
models on one contiguous shard of the test split — and `sharded_scores` puts the shards back in order, so the
numbers are computed from exactly the predictions a single process makes (see `shard_bounds`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    if spec.labels and ds.class_names and len(ds.class_names) != len(spec.labels):
        raise EdgecnnError(f"{src}: has {len(ds.class_names)} classes but the model was trained on "
                           f"{len(spec.labels)}")
    return ds


def eval_data(src: str, spec: PreprocessSpec, limit: int | None = None, needs_labels: str | None = "eval",
              model="the model"):
    """(x, dataset): `src`'s test split preprocessed with `spec`, and the raw Dataset (labels, `labeled`)."""
    ds = test_split(src, spec, limit, needs_labels, model=model)
    return spec.apply(ds.images), ds


def eval_arrays(src: str, spec: PreprocessSpec, limit: int | None = None, command: str = "eval",
                model="the model"):
    """(x, y, class_names) of `src`'s test split, preprocessed with `spec`; `command` names who needs the labels."""
    x, ds = eval_data(src, spec, limit, command, model)
    return x, ds.labels, ds.class_names


def topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties (common in int8 outputs) go to the
    # lowest class index, as argmax does, so top-1 here equals argmax accuracy everywhere else
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """Samples [start, stop) of shard `index` of `count` over `n` samples: contiguous, in order, and starting on a
    multiple of KERAS_BATCH (a multiple of LiteRT's BATCH), so every shard runs exactly the batches of the whole."""
    from edgecnn.evaluate.predict import KERAS_BATCH

    blocks = -(-n // KERAS_BATCH)
    start, stop = blocks * index // count, blocks * (index + 1) // count
    return min(start * KERAS_BATCH, n), min(stop * KERAS_BATCH, n)


def shard_scores(root: Path, models: tuple[str, ...], src: str, spec: PreprocessSpec, limit: int | None,
                 needs_labels: str | None, index: int, count: int) -> dict:
    """One worker's part of a sharded eval/compare: the scores of each model (files under `root`) on shard `index`
    of `count` of `src`'s test split, with the shard's labels. LiteRT runs the whole split's batch size, so the
    scores are those of `predict` on the whole split, sample for sample."""
    from edgecnn.evaluate.predict import BATCH, predict

    ds = test_split(src, spec, limit, needs_labels)
    start, stop = shard_bounds(len(ds), index, count)
    part = ds.subset(np.arange(start, stop))
    x = spec.apply(part.images) if len(part) else None
    return {"scores": [None if x is None else predict(Path(root) / m, x, batch=min(BATCH, len(ds)))
                       for m in models], "labels": part.labels, "labeled": ds.labeled, "class_names": ds.class_names}


def sharded_scores(map_shards, models: list[Path], src: str, spec: PreprocessSpec, limit: int | None,
                   needs_labels: str | None):
    """([scores of each model], labels, labeled, class_names) from `shard_scores` run on every shard by
    `map_shards(fn, models, args)` (e.g. `RayExecutor.map_shards`), concatenated in shard order."""
    test_split(src, spec, limit, needs_labels, model=models[0])  # a bad source is one line here, not in a worker
    parts = [p for p in map_shards(shard_scores, models, (src, spec, limit, needs_labels)) if len(p["labels"])]
    if not parts:
        raise EdgecnnError(f"{src}: no samples in its test split")
    scores = [np.concatenate([p["scores"][i] for p in parts]) for i in range(len(models))]
    return scores, np.concatenate([p["labels"] for p in parts]), parts[0]["labeled"], parts[0]["class_names"]


def evaluate(model_path: str | Path, src: str, limit: int | None = None, scaling: InputScaling | None = None,
             map_shards=None, examples: int = 0) -> dict:
    """Top-1/top-5 of the model on `src`'s test split (labels needed); `scaling` for a model without a spec.

    `map_shards` (see `sharded_scores`) spreads the predictions over workers; the numbers are the same.
    A detector (spec `task: detection`) gets COCO mAP instead (`edgecnn.evaluate.detection`), and its boxes on the
    first `examples` test images.
    """
    from edgecnn.evaluate.predict import predict

    spec = model_spec(model_path, scaling)
    if spec.task == "detection":
        from edgecnn.evaluate.detection import evaluate_detection

        return evaluate_detection(model_path, src, limit, scaling, examples, map_shards)
    if map_shards is None:
        x, y, _ = eval_arrays(src, spec, limit, model=model_path)
        scores = predict(model_path, x)
    else:
        (scores,), y, _, _ = sharded_scores(map_shards, [Path(model_path)], src, spec, limit, "eval")
    return {"model": str(model_path), "data": src, "n": int(len(y)), "top1": topk(scores, y, 1),
            "top5": topk(scores, y, 5)}
