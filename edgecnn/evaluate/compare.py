"""Float vs quantized on the same data: output agreement, SNR, KL divergence and per-layer error on any images
(labels not needed: a flat folder of the user's own photos will do); with labels also both accuracies, the drop
and per-class deltas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.spec import InputScaling
from edgecnn.errors import EdgecnnError
from edgecnn.metrics import SNR_CAP_DB, snr_db  # noqa: F401  (SNR_CAP_DB: part of compare's surface)

EPS = 1e-7  # probabilities are clipped to [EPS, 1] (and renormalised) before the KL divergence


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


def are_probabilities(scores: np.ndarray) -> bool:
    """Outputs already a distribution (a softmax head): non-negative rows summing to 1 within 1%."""
    return bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=0.01))


def _distribution(scores: np.ndarray, probabilities: bool) -> np.ndarray:
    s = scores.astype(np.float64)
    if not probabilities:
        e = np.exp(s - s.max(axis=1, keepdims=True))
        s = e / e.sum(axis=1, keepdims=True)
    s = np.clip(s, EPS, 1.0)
    return s / s.sum(axis=1, keepdims=True)


def kl_divergence(f: np.ndarray, q: np.ndarray) -> tuple[float, str]:
    """Mean over samples of KL(float || quant) in nats, and what it was computed on: "probabilities" when the float
    model's outputs already are a distribution (then both are taken as they are), else "softmax" of both."""
    probabilities = are_probabilities(f)
    p, r = _distribution(f, probabilities), _distribution(q, probabilities)
    kl = np.sum(p * np.log(p / r), axis=1)
    return float(max(np.mean(kl), 0.0)), "probabilities" if probabilities else "softmax"


def output_agreement(f: np.ndarray, q: np.ndarray) -> dict:
    """What the quantized outputs `q` keep of the float outputs `f` (N, classes), no labels needed."""
    from edgecnn.evaluate.accuracy import topk

    fp = f.argmax(1)
    kl, kind = kl_divergence(f, q)
    return {"top1_agreement": float(np.mean(fp == q.argmax(1))), "top5_agreement": topk(q, fp, 5),
            "snr_db": snr_db(f, q), "kl_divergence": kl, "kl_on": kind}


def accuracies(fs: np.ndarray, qs: np.ndarray, y: np.ndarray, names) -> dict:
    """Both accuracies, the drop and per-class deltas against labels `y`."""
    from edgecnn.evaluate.accuracy import topk

    fp, qp = fs.argmax(1), qs.argmax(1)
    f1, q1 = float(np.mean(fp == y)), float(np.mean(qp == y))
    per_class = []
    for c in range(fs.shape[1]):
        m = y == c
        if m.any():
            fa, qa = float(np.mean(fp[m] == c)), float(np.mean(qp[m] == c))
            per_class.append({"class": c, "name": names[c] if c < len(names) else str(c), "n": int(m.sum()),
                              "float_top1": fa, "quant_top1": qa, "delta_points": 100 * (qa - fa)})
    return {"float_top1": f1, "quant_top1": q1, "float_top5": topk(fs, y, 5), "quant_top5": topk(qs, y, 5),
            "drop_points": 100 * (f1 - q1), "ratio": q1 / f1 if f1 else None, "per_class": per_class}


def _foreign_head(model_path) -> dict | None:
    """A foreign .tflite detector's head (BlazeFace raw outputs, TFLite_Detection_PostProcess), else None."""
    from edgecnn.modelfile import model_kind
    from edgecnn.tflite.detect import recognise_head

    return recognise_head(Path(model_path)) if model_kind(model_path) == "tflite" else None


def compare(float_path: str | Path, quant_path: str | Path, src: str, limit: int | None = None,
            layer_samples: int = 32, top_layers: int | None = 10, scaling: InputScaling | None = None,
            map_shards=None) -> dict:
    """Compare the quantized .tflite with its float original on `src`'s test split (labeled or not).

    Always: `top1_agreement` (= `agreement`), `top5_agreement` (float top-1 within quant top-5), `snr_db`,
    `kl_divergence` (see `output_agreement`) and the worst `top_layers` layers (None: every compared layer, what
    `compare --explorer` puts on the graph); with labels (`labeled`) also the accuracies.
    `scaling` (--scale/--offset, --mean/--std) feeds models that carry no preprocessing spec. `map_shards` (see
    `accuracy.sharded_scores`) spreads the predictions over workers; the numbers are the same. A detector
    (spec `task: detection`, or a foreign .tflite whose outputs are a known detector head) is compared in boxes and
    mAP (`edgecnn.evaluate.detection.compare_detection`).
    """
    from edgecnn.evaluate.accuracy import eval_data, model_spec, sharded_scores
    from edgecnn.evaluate.layer_error import layer_errors
    from edgecnn.evaluate.predict import predict
    from edgecnn.modelfile import model_kind

    if model_kind(quant_path) != "tflite":
        raise EdgecnnError(f"{quant_path}: the quantized model must be a .tflite")
    fspec, qspec = model_spec(float_path, scaling), model_spec(quant_path, scaling)
    head = fspec.head if fspec.task == "detection" else _foreign_head(float_path)
    if head is not None:
        if map_shards is not None:
            raise EdgecnnError(f"{float_path}: a detector; --executor does not shard detection compare yet")
        from edgecnn.evaluate.detection import compare_detection

        return compare_detection(float_path, quant_path, src, limit, layer_samples, top_layers, scaling, head)
    if fspec.input_shape != qspec.input_shape or (fspec.scale, fspec.offset) != (qspec.scale, qspec.offset):
        raise EdgecnnError(f"{quant_path}: preprocessing differs from {float_path}'s; they are not the same model")
    if map_shards is None:
        x, ds = eval_data(src, fspec, limit, needs_labels=None, model=float_path)
        fs, qs = predict(float_path, x), predict(quant_path, x)
        labels, labeled, names = ds.labels, ds.labeled, ds.class_names
    else:
        (fs, qs), labels, labeled, names = sharded_scores(map_shards, [Path(float_path), Path(quant_path)], src,
                                                          fspec, limit, None)
        x = eval_data(src, fspec, min(limit or layer_samples, layer_samples), needs_labels=None)[0]
    if fs.shape != qs.shape:
        raise EdgecnnError(f"{quant_path}: {qs.shape[1]} outputs but {float_path} has {fs.shape[1]}; they are not "
                           "the same model")
    out = {"float_model": str(float_path), "quant_model": str(quant_path), "data": src, "n": int(len(fs)),
           "labeled": labeled, **output_agreement(fs, qs)}
    out["agreement"] = out["top1_agreement"]
    if labeled:
        out.update(accuracies(fs, qs, labels, names))
    layers = layer_errors(float_flatbuffer(float_path), Path(quant_path).read_bytes(), x, layer_samples)
    return {**out, "worst_layers": layers[:top_layers], "layers_compared": len(layers)}
