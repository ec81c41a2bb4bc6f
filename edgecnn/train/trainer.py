"""Train or fine-tune a zoo model (or a saved Keras model) on a data source, and save it with its spec.

The preprocessing spec is decided once here (input size and channels from the model, value range from the
architecture) and saved inside the `.keras`; every later stage reads it back instead of guessing.
Reproducible with `seed`: Python, NumPy and TF seeds are set and TF ops run deterministically.

The task is decided once: a zoo model's own task, or for a saved model the training set's truth
(`edgecnn.tasks.for_dataset`: class labels, or boxes for `scenes:digits`, a COCO or YOLO folder); every task trains
through the same steps, and what differs is the module its `Task.trainer` names (`classification.py`,
`detection.py`, `segmentation.py`), with three hooks. A pretrained backbone (a saved model given a new head, a zoo model
with `-O weights=`) trains in phases (`transfer.py`: head first with the backbone frozen, then its top blocks).

| hook                                                   | gives                                                |
|--------------------------------------------------------|------------------------------------------------------|
| `adopt(task, model, spec, cfg, train_ds)`              | (model, spec, transfer) of a saved model, or one line |
|                                                        | (a classifier of other classes: a new head)           |
| `fit(model, spec, cfg, x, train_ds, tr, va, lr, cbs)`  | compile + fit on rows `tr` (validation `va`): history |
| `measure(model, spec, hist, train_ds, test_ds, tr, va)`| the task's summary keys (test top-1, test loss...)   |
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgecnn import tasks
from edgecnn.data import PreprocessSpec, load_split
from edgecnn.data.dataset import split_indices
from edgecnn.errors import EdgecnnError
from edgecnn.train import transfer


@dataclass
class TrainConfig:
    model: str  # a zoo name or a path to a .keras/.h5 model to fine-tune
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    val_split: float = 0.1
    seed: int = 0
    input_size: int | None = None  # square side; default: the architecture's own default input size
    knobs: dict = field(default_factory=dict)  # builder options, e.g. {"alpha": 0.5}
    skip_bad: bool = False
    max_train_samples: int | None = None
    lr_schedule: str = "cosine"  # "cosine" (decay to 0 over the run) or "constant"
    augment: tuple[str, ...] | None = None  # "flip" (random left-right), "shift" (+-10%); None: a new head's
    # frozen phase gets transfer.DEFAULT_AUGMENT, anything else none
    input_scale: tuple[float, float] | None = None  # (scale, offset) for a saved model without a spec (--mean/--std)
    # transfer learning (transfer.py): where the new head goes, the frozen phase, the fine-tuning phase
    cut_at: str | None = None  # the top-level layer whose output feeds a new head (default: found)
    freeze: bool | None = None  # freeze the backbone while the head trains (default: when the backbone is pretrained)
    fine_tune_blocks: int = 0  # then unfreeze the top N blocks ...
    fine_tune_lr: float | None = None  # ... at this learning rate (default: learning_rate * FINE_TUNE_LR_RATIO)
    fine_tune_epochs: int | None = None  # ... for this many epochs (default: epochs)
    qat: bool = False  # quantization-aware: train through the int8 simulation (qat.py); the ranges saved with it
    per_tensor: bool = False  # --qat for a per-tensor int8 model (one weight range per layer)


def default_spec(name: str, input_shape, class_names, dataset: str, model=None) -> PreprocessSpec:
    """The spec for a zoo model: its input size and channels, the value range its architecture expects, its task,
    and given the built `model`, a detector's head (its kind, anchors, strides: how its outputs decode). Without the
    model a detector's spec has no head, which readers take as CenterNet's."""
    from edgecnn.zoo import get_entry

    entry = get_entry(name)
    lo, hi = entry.input_range
    spec = PreprocessSpec(height=int(input_shape[0]), width=int(input_shape[1]), channels=int(input_shape[2]),
                          scale=(hi - lo) / 255.0, offset=lo, labels=tuple(class_names), dataset=dataset,
                          task=entry.task)
    return spec.replace(head=entry.head(model)) if model is not None and entry.head else spec


def task_trainer(task):
    """The training hooks of `task` (the module its `trainer` names); one line when it has none."""
    if not task.trainer:
        raise EdgecnnError(f"edgecnn cannot train {task.name} models (no trainer in its task; "
                           f"trainable: {', '.join(n for n in tasks.names() if tasks.get(n).trainer)})")
    return importlib.import_module(task.trainer)


def _model_and_spec(cfg: TrainConfig, train_ds, task, hooks):
    """(model, spec, transfer) for the run: `transfer` says where a pretrained backbone ends (None: no backbone)."""
    from edgecnn.data.dataset import check_task
    from edgecnn.modelfile import load_model
    from edgecnn.zoo import build, get_entry

    if _saved(cfg.model):
        model, spec = load_model(cfg.model)
        if spec is None:
            shape = model.input_shape[1:]
            spec = PreprocessSpec(int(shape[0]), int(shape[1]), int(shape[2]), labels=train_ds.class_names,
                                  dataset=train_ds.name)
        if cfg.input_scale is not None:
            spec = spec.replace(scale=cfg.input_scale[0], offset=cfg.input_scale[1])
        return hooks.adopt(task, model, spec, cfg, train_ds)
    entry = get_entry(cfg.model)
    check_task(entry.task, train_ds, cfg.model, cfg.data)
    side = cfg.input_size
    h, w = (side, side) if side else entry.default_input[:2]
    channels = train_ds.channels if train_ds.channels in (1, 3) else 3
    names = task.class_names(train_ds)
    model = build(cfg.model, (h, w, channels), len(names), **cfg.knobs)
    spec = default_spec(cfg.model, (h, w, channels), names, train_ds.name, model)
    given = {k: str(cfg.knobs[k]) for k in ("weights", "backbone_weights") if cfg.knobs.get(k) is not None}
    moved = {"from": cfg.model, **given} if given else None  # pretrained: ImageNet, a weights file, a backbone's
    return model, spec, moved


def _saved(model: str) -> bool:
    return Path(model).suffix in (".keras", ".h5", ".hdf5", ".model") or Path(model).is_dir()


def _task(cfg: TrainConfig, train_ds):
    """The task a run trains: a zoo model's own, or a saved model's (its spec's task; a set may carry several truths:
    `scenes:` has boxes and masks), else the task whose truth the set carries (`tasks.for_dataset`)."""
    from edgecnn.zoo import get_entry

    if not _saved(cfg.model):
        return tasks.get(get_entry(cfg.model).task)
    from edgecnn.modelfile import read_keras_spec

    keras_file = Path(cfg.model).suffix == ".keras" and Path(cfg.model).is_file()  # a missing one: load says so
    spec = read_keras_spec(cfg.model) if keras_file else None
    named = spec.task if spec is not None else None  # a saved model's own task, when its spec says one ...
    if named and named != tasks.DEFAULT:
        return tasks.get(named)
    return tasks.for_dataset(train_ds)  # ... else the task whose truth the set carries


def fit_bn_momentum(model, total_steps: int) -> None:
    """Shorten batch-norm moving averages so they settle within the run.

    keras.applications MobileNets use momentum 0.999 (a ~1000-step horizon), tuned for ImageNet-length runs; on
    a short run the moving statistics lag the weights and the trained model predicts at chance in inference mode
    (measured: MobileNetV3-Small on digits, 6 epochs, test top-1 0.10; MobileNetV2 0.35 on Fashion-MNIST, 2 epochs
    = 850 steps, validation top-1 0.10 with momentum capped at 0.996). Capped here at 0.9 for runs under 1,000
    steps and at 0.99 (Keras' own default) for longer ones.
    """
    import keras

    cap = 0.9 if total_steps < 1000 else 0.99
    for layer in model._flatten_layers(include_self=False) if hasattr(model, "_flatten_layers") else model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum > cap:
            layer.momentum = cap


def _phases(cfg: TrainConfig, model, moved: dict | None):
    """The run's phases (transfer.py) and the transfer summary; one phase training everything without a backbone.

    The frozen phase is the default for a pretrained backbone under a classifier head (one output of class scores);
    a detector's or segmenter's pretrained backbone trains with its head (as Ultralytics' default) unless --freeze."""
    scores = not isinstance(model.output_shape, list) and len(model.output_shape) == 2
    freeze = cfg.freeze if cfg.freeze is not None else (moved is not None and scores)
    if cfg.fine_tune_blocks and not freeze:
        raise EdgecnnError(f"{cfg.model}: --fine-tune-blocks follows a frozen phase: "
                           + ("drop --no-freeze" if cfg.freeze is False else "add --freeze"))
    if not freeze and not cfg.cut_at:
        return [None], moved
    cut = transfer.find_cut(model, cfg.cut_at or (moved or {}).get("cut_at"), cfg.model)
    backbone, head = transfer.split(model, cut.name)
    plan = transfer.phases(replace(cfg, freeze=freeze), backbone, head, cfg.model)
    units = transfer.blocks(backbone)
    return plan, {**(moved or {"from": cfg.model}), "cut_at": cut.name, "backbone_layers": len(backbone),
                  "blocks": len(units), "fine_tune_blocks": [n for n, _ in units[-cfg.fine_tune_blocks:]]
                  if cfg.fine_tune_blocks and freeze else []}


def _check_qat(cfg: TrainConfig, plan, moved, model, task) -> None:
    """--qat fine-tunes a trained model of these classes as a whole, of layers it simulates; one line otherwise."""
    if cfg.per_tensor and not cfg.qat:
        raise EdgecnnError("--per-tensor goes with --qat (the int8 weights the training simulates)")
    if not cfg.qat:
        return
    if not task.qat:  # the task table says which tasks --qat trains
        raise EdgecnnError(f"{cfg.model}: --qat trains {', '.join(n for n in tasks.names() if tasks.get(n).qat)} "
                           f"models for now, not {task.name}")
    if moved and moved.get("head"):
        raise EdgecnnError(f"{cfg.model}: --qat fine-tunes a model already trained for these classes "
                           f"({moved['head']}): train the new head first without --qat")
    if plan != [None]:
        raise EdgecnnError(f"{cfg.model}: --qat trains the whole model through the int8 simulation: drop "
                           "--cut-at / --fine-tune-blocks, and train a pretrained backbone with --no-freeze")
    from edgecnn.train import qat

    qat.check(model)
    if not _saved(cfg.model) and not moved and qat.has_batch_norm(model):  # a fresh build's statistics: 0 and 1
        raise EdgecnnError(f"{cfg.model}: --qat fine-tunes a trained model (its batch norm is folded with the "
                           f"statistics training gave it): train it in float first, then `edgecnn train "
                           f"MODEL.keras --qat`")


def _fit_phase(cfg, phase, model, spec, hooks, x, train_ds, tr, va, steps, progress):
    """One phase's fit (`phase` None: the whole model, the run's epochs and learning rate): the Keras history."""
    from edgecnn import _tf

    keras = _tf.keras()
    epochs, lr0 = (phase.epochs, phase.learning_rate) if phase else (cfg.epochs, cfg.learning_rate)
    if phase:
        transfer.set_trainable(model, phase)
    fit_bn_momentum(model, epochs * steps)
    lr = (keras.optimizers.schedules.CosineDecay(lr0, decay_steps=epochs * steps)
          if cfg.lr_schedule == "cosine" else lr0)
    callbacks = []
    if progress:
        from edgecnn.train.progress import rich_progress_callback

        callbacks.append(rich_progress_callback(epochs, steps))
    if cfg.qat:
        from edgecnn.train import qat

        callbacks += qat.callbacks(model, epochs)
    if phase and len(va):  # a transfer phase on a few photos: stop once validation stops improving
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=transfer.PATIENCE,
                                                       restore_best_weights=True))
    return hooks.fit(model, spec, replace(cfg, epochs=epochs, learning_rate=lr0), x, train_ds, tr, va, lr,
                     callbacks)


def _phase_summary(phase, model, history: dict, seconds: float, learning_rate: float) -> dict:
    """What one phase trained and reached: epochs run (early stopping may end it), parameters, losses."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {"name": phase.name if phase else "all", "epochs": len(history["loss"]),
            "learning_rate": phase.learning_rate if phase else learning_rate, "trainable_params": trainable,
            "frozen_params": sum(int(np.prod(w.shape)) for w in model.weights) - trainable,
            "loss_last_epoch": float(history["loss"][-1]),
            "val_accuracy": float(history["val_accuracy"][-1]) if history.get("val_accuracy") else None,
            "seconds": round(seconds, 2)}


def train(cfg: TrainConfig, out: str | Path, progress: bool = True) -> dict:
    """Train per `cfg`, save to `out` (.keras, atomic), return a summary dict (task, losses, the task's test
    measures, wall time)."""
    from edgecnn import _tf
    from edgecnn.atomic import check_output_dir
    from edgecnn.modelfile import save_model
    from edgecnn.zoo.counting import summarize

    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise EdgecnnError("epochs and batch size must be >= 1")
    if not 0 <= cfg.val_split < 1:
        raise EdgecnnError(f"--val-split must be in [0, 1), got {cfg.val_split}")
    if cfg.lr_schedule not in ("cosine", "constant"):
        raise EdgecnnError(f"--lr-schedule {cfg.lr_schedule!r}: use cosine or constant")
    check_output_dir(out)
    if Path(out).suffix != ".keras":  # checked before training, not after the time is spent
        raise EdgecnnError(f"{out}: model output must end in .keras")
    t0 = time.perf_counter()
    train_ds = load_split(cfg.data, "train", skip_bad=cfg.skip_bad, needs_labels="train")
    test_ds = load_split(cfg.data, "test", skip_bad=cfg.skip_bad, needs_labels="train")
    if cfg.max_train_samples:
        train_ds = train_ds.take(cfg.max_train_samples, seed=cfg.seed)
    task = _task(cfg, train_ds)  # decided once: what the model predicts (a zoo model's task), else the set's truth
    hooks = task_trainer(task)
    tf = _tf.tf()
    keras = _tf.keras()
    keras.utils.set_random_seed(cfg.seed)
    model, spec, moved = _model_and_spec(cfg, train_ds, task, hooks)
    if cfg.qat:  # one graph of the layers of any model nested in it (a keras.applications backbone)
        from edgecnn.train import qat

        model = qat.flatten(model)
    x, y = spec.apply(train_ds.images), train_ds.labels
    tr, va = split_indices(y, cfg.val_split, seed=cfg.seed) if cfg.val_split > 0 else (np.arange(len(y)), [])
    steps = int(np.ceil(len(tr) / cfg.batch_size))
    plan, moved = _phases(cfg, model, moved)
    _check_qat(cfg, plan, moved, model, task)
    tf.config.experimental.enable_op_determinism()  # once model and phases are known good (global seeds are set)
    cfg = replace(cfg, augment=cfg.augment if cfg.augment is not None else  # a new head on a few photos: flips
                  (transfer.DEFAULT_AUGMENT if plan != [None] else ()))  # and shifts; else none unless asked
    fitted, quants, dead = model, None, {}
    if cfg.qat:  # the run trains the int8 simulation, which shares the model's variables
        if cfg.per_tensor:  # as per-tensor post-training int8 does (convert/dead_inputs.py)
            dead = qat.zero_dead_inputs(model, x[tr][:qat.CALIBRATION_IMAGES])
        fitted, quants = qat.simulate(model, spec, x[tr], cfg.per_tensor)
    hists, phases = [], []
    for phase in plan:
        t_phase = time.perf_counter()
        hists.append(_fit_phase(cfg, phase, fitted, spec, hooks, x, train_ds, tr, va, steps, progress))
        phases.append(_phase_summary(phase, fitted, hists[-1].history, time.perf_counter() - t_phase,
                                     cfg.learning_rate))
    hist = hists[-1]
    for layer in model._flatten_layers(include_self=False):  # saved as trainable: a later fine-tune decides
        layer.trainable = True
    train_secs = time.perf_counter() - t0
    measures = hooks.measure(fitted, spec, hist, train_ds, test_ds, tr, va)  # --qat: as the int8 model will
    learned = None
    if quants is not None:
        learned = qat.learned(quants, cfg.per_tensor)
        measures["float_measures"] = {k: v for k, v in hooks.measure(model, spec, hist, train_ds, test_ds, tr,
                                                                     va).items() if not k.startswith("val_")}
    save_model(model, out, spec, qat=learned)
    return {
        "output": str(out), "model": cfg.model, "data": cfg.data, "task": task.name, "epochs": cfg.epochs,
        "seed": cfg.seed, "train_samples": int(len(tr)), "val_samples": int(len(va)),
        "test_samples": int(len(test_ds)), "loss_first_epoch": float(hists[0].history["loss"][0]),
        "loss_last_epoch": float(hist.history["loss"][-1]), **measures, "augment": list(cfg.augment),
        "transfer": moved, "phases": phases,
        "qat": {"weights": learned["weights"], "ranges": len(learned["ranges"]), "ema_decay": qat.EMA_DECAY,
                "bn_frozen_epochs": qat.frozen_epochs(fitted),
                "dead_inputs_zeroed": sum(dead.values())}
        if learned else None,
        "wall_seconds": round(train_secs, 2), "input_shape": list(spec.input_shape), "preprocessing": spec.to_dict(),
        **summarize(model),
    }
