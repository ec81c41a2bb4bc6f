"""Float vs quantized on the same data, as the model's task measures it (`edgecnn.tasks`), and per-layer error,
on any images (labels not needed: a flat folder of the user's own photos will do); with labels also both metrics,
the drop and per-class deltas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.spec import InputScaling
from edgecnn.errors import EdgecnnError


def float_flatbuffer(model_path: str | Path) -> bytes:
    """The float .tflite to compare layer by layer: the file itself, or a conversion of a Keras model."""
    from edgecnn.modelfile import load_model, model_kind

    if model_kind(model_path) == "tflite":
        return Path(model_path).read_bytes()
    from edgecnn import _tf
    from edgecnn.convert.frontend import float_tflite

    _tf.quiet()
    model, _ = load_model(model_path)
    return float_tflite(model)


def compare(float_path: str | Path, quant_path: str | Path, src: str, limit: int | None = None,
            layer_samples: int = 32, top_layers: int | None = 10, scaling: InputScaling | None = None,
            map_shards=None) -> dict:
    """Compare the quantized .tflite with its float original on `src`'s test split (labeled or not), as their
    task measures it (`edgecnn.tasks`: a classifier's top-1 agreement, SNR and KL; a detector's box agreement and
    mAP against the float boxes; `Task.compare`).

    Always: `agreement` (the task's label-free agreement), `output_snr_db` (each output's pooled SNR) and the worst
    `top_layers` layers (None: every compared layer, what `compare --explorer` puts on the graph); with labels
    (`labeled`) also both metrics (`float_value`, `quant_value`) and `drop_points`. `scaling` (--scale/--offset,
    --mean/--std) feeds models that carry no preprocessing spec. `map_shards` (see `edgecnn.evaluate.engine`)
    spreads the predictions over workers; the numbers are the same.
    """
    from edgecnn import tasks
    from edgecnn.evaluate import engine
    from edgecnn.evaluate.accuracy import eval_data, model_spec
    from edgecnn.evaluate.layer_error import layer_errors
    from edgecnn.metrics import snr_from_sums
    from edgecnn.modelfile import model_kind

    if model_kind(quant_path) != "tflite":
        raise EdgecnnError(f"{quant_path}: the quantized model must be a .tflite")
    fspec, qspec = model_spec(float_path, scaling), model_spec(quant_path, scaling)
    if fspec.input_shape != qspec.input_shape or (fspec.scale, fspec.offset) != (qspec.scale, qspec.offset):
        raise EdgecnnError(f"{quant_path}: preprocessing differs from {float_path}'s; they are not the same model")
    task, fctx = tasks.for_model(fspec, float_path)
    fctx = {**fctx, "model": str(float_path)}
    qctx = {**task.context(qspec, head=fctx.get("head")), "model": str(quant_path)}
    r = engine.run(task, [float_path, quant_path], [fctx, qctx], src, fspec, limit, None, map_shards, pair=True)
    if not task.same_outputs(r.shapes[0], r.shapes[1]):
        raise EdgecnnError(f"{quant_path}: outputs {r.shapes[1]} differ from {float_path}'s {r.shapes[0]}; they are "
                           "not the same model")
    fctx.update(r.info)
    qctx.update(r.info)
    out = {"float_model": str(float_path), "quant_model": str(quant_path), "data": src, "n": r.n,
           "labeled": r.labeled, **task.compare(r.preds[0], r.preds[1], r.truth, r.class_names, fctx, qctx)}
    out.update(task.pair_summary(r.pair_stats))
    names = task.output_names(fctx, len(r.snr_sums))
    out["output_snr_db"] = {name: snr_from_sums(float(np.sum(s)), float(np.sum(e)))
                            for name, (s, e) in zip(names, r.snr_sums)}
    x = eval_data(src, fspec, min(limit or layer_samples, layer_samples), needs_labels=None, model=float_path,
                  task=task.name)[0]
    layers = layer_errors(float_flatbuffer(float_path), Path(quant_path).read_bytes(), x, layer_samples)
    return {**out, "worst_layers": layers[:top_layers], "layers_compared": len(layers)}
