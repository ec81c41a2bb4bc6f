"""One engine for `eval` and `compare`, whatever the task, in one process or sharded over workers (Ray).

| step (per shard, where the models run)                      | then (on the driver)                               |
|-------------------------------------------------------------|----------------------------------------------------|
| the test split's samples [start, stop), preprocessed by spec | shards back in order (`Task.join`)                 |
| each model's dequantized outputs (`predict_outputs`)         | `Task.score` against the split's truth (eval)      |
| `Task.check_outputs`, `Task.postprocess` -> predictions     | `Task.compare` of the two models' predictions      |
| per output, per sample: sum f^2 and sum (f - q)^2 (compare)  | output SNR of each output from those sums          |

The task (`edgecnn.tasks`) is decided once, from the model (`tasks.for_model`), and checked against the data set
(`data.dataset.check_task`); nothing here knows a task by name. A shard runs the whole split's LiteRT batch size
and starts on a multiple of KERAS_BATCH (`accuracy.shard_bounds`), so every shard runs exactly the batches of the
whole: the numbers are the same sharded or not, to the last bit (the SNR sums are per sample, concatenated, then
summed in one place).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError


@dataclass
class Run:
    """What the models did on a split: per model its predictions, and the split's truth (None: unlabeled)."""

    preds: list
    truth: object | None
    class_names: tuple
    labeled: bool
    n: int
    info: dict = field(default_factory=dict)  # the task's `sample_info` of the split (raw image sizes...)
    shapes: list = field(default_factory=list)  # per model, its output shapes without the batch
    snr_sums: list = field(default_factory=list)  # compare: per output, (per-sample sum f^2, per-sample noise)
    pair_stats: dict = field(default_factory=dict)  # compare: the task's `pair_stats`, per sample, in order


def _predict(task, models, ctxs, x, batch, pair: bool) -> dict:
    """Predictions (and, for a pair, per-sample SNR sums of each output) of `models` on `x`."""
    from edgecnn.evaluate.predict import predict_outputs

    preds, shapes, sums, stats = [], [], [], {}
    outs = []
    for model, ctx in zip(models, ctxs):
        o = predict_outputs(model, x, batch)
        shapes.append([list(a.shape[1:]) for a in o])
        task.check_outputs([a.shape[1:] for a in o], ctx, model)
        try:
            preds.append(task.postprocess(o, ctx))
        except ValueError as exc:  # outputs the task cannot decode (e.g. a 3-D map that is not class ids)
            raise EdgecnnError(f"{model}: {exc}") from None
        outs.append(o)
    if pair and shapes[0] == shapes[1]:
        n = len(x)
        for f, q in zip(*outs):
            f, q = f.astype(np.float64).reshape(n, -1), q.astype(np.float64).reshape(n, -1)
            sums.append((np.sum(f * f, axis=1), np.sum((f - q) ** 2, axis=1)))
        stats = task.pair_stats(outs[0], outs[1], ctxs[0])
    return {"preds": preds, "shapes": shapes, "sums": sums, "stats": stats}


def shard(root: Path, names: tuple[str, ...], src: str, spec, task, ctxs: list, limit: int | None,
          needs_labels: str | None, pair: bool, index: int, count: int) -> dict:
    """One worker's part: the models (files under `root`) on shard `index` of `count` of `src`'s test split. The
    task object comes with the call: a worker knows it even when it was registered only in the driver."""
    from edgecnn import tasks
    from edgecnn.evaluate.accuracy import shard_bounds, test_split
    from edgecnn.evaluate.predict import BATCH

    if task.name not in tasks.names():
        tasks.register(task)
    ds = test_split(src, spec, limit, needs_labels, task=task.name)
    start, stop = shard_bounds(len(ds), index, count)
    if start >= stop:
        return {"preds": None}
    x = spec.apply(ds.subset(np.arange(start, stop)).images)
    return _predict(task, [Path(root) / m for m in names], ctxs, x, min(BATCH, len(ds)), pair)


def run(task, models: list, ctxs: list, src: str, spec, limit: int | None = None, needs_labels: str | None = "eval",
        map_shards=None, pair: bool = False) -> Run:
    """`models` (paths) on `src`'s test split, in this process or over `map_shards(fn, models, args)` (e.g.
    `RayExecutor.map_shards`); `ctxs`: each model's `task.context`; `pair`: also the per-output SNR sums of model 1
    against model 0 (compare)."""
    from edgecnn.evaluate.accuracy import test_split

    ds = test_split(src, spec, limit, needs_labels, task=task.name, model=models[0])  # a bad source: one line here
    if map_shards is None:
        parts = [_predict(task, [Path(m) for m in models], ctxs, spec.apply(ds.images), None, pair)] if len(ds) else []
    else:
        parts = [p for p in map_shards(shard, [Path(m) for m in models],
                                       (src, spec, task, ctxs, limit, needs_labels, pair)) if p["preds"] is not None]
    if not parts:
        raise EdgecnnError(f"{src}: no samples in its test split")
    sums = [(np.concatenate([p["sums"][k][0] for p in parts]), np.concatenate([p["sums"][k][1] for p in parts]))
            for k in range(min(len(p["sums"]) for p in parts))]
    stats = {k: np.concatenate([p["stats"][k] for p in parts]) for k in parts[0]["stats"]}
    return Run(preds=[task.join([p["preds"][i] for p in parts]) for i in range(len(models))],
               truth=task.truth(ds) if ds.labeled else None, class_names=task.class_names(ds), labeled=ds.labeled,
               n=len(ds), info=task.sample_info(ds), shapes=parts[0]["shapes"], snr_sums=sums, pair_stats=stats)
