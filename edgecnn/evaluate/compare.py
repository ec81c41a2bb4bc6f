"""Float vs quantized on the same data: accuracies, drop, agreement, per-class deltas, per-layer error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
            layer_samples: int = 32, top_layers: int = 10) -> dict:
    from edgecnn.evaluate.accuracy import eval_arrays, model_spec, topk
    from edgecnn.evaluate.layer_error import layer_errors
    from edgecnn.evaluate.predict import predict
    from edgecnn.modelfile import model_kind

    if model_kind(quant_path) != "tflite":
        raise EdgecnnError(f"{quant_path}: the quantized model must be a .tflite")
    fspec, qspec = model_spec(float_path), model_spec(quant_path)
    if fspec.input_shape != qspec.input_shape or (fspec.scale, fspec.offset) != (qspec.scale, qspec.offset):
        raise EdgecnnError(f"{quant_path}: preprocessing differs from {float_path}'s; they are not the same model")
    x, y, names = eval_arrays(src, fspec, limit, "compare")
    fs, qs = predict(float_path, x), predict(quant_path, x)
    fp, qp = fs.argmax(1), qs.argmax(1)
    f1, q1 = float(np.mean(fp == y)), float(np.mean(qp == y))
    per_class = []
    for c in range(fs.shape[1]):
        m = y == c
        if m.any():
            fa, qa = float(np.mean(fp[m] == c)), float(np.mean(qp[m] == c))
            per_class.append({"class": c, "name": names[c] if c < len(names) else str(c), "n": int(m.sum()),
                              "float_top1": fa, "quant_top1": qa, "delta_points": 100 * (qa - fa)})
    layers = layer_errors(float_flatbuffer(float_path), Path(quant_path).read_bytes(), x, layer_samples)
    return {
        "float_model": str(float_path), "quant_model": str(quant_path), "data": src, "n": int(len(y)),
        "float_top1": f1, "quant_top1": q1, "float_top5": topk(fs, y, 5), "quant_top5": topk(qs, y, 5),
        "drop_points": 100 * (f1 - q1), "ratio": q1 / f1 if f1 else None,
        "agreement": float(np.mean(fp == qp)), "per_class": per_class,
        "worst_layers": layers[:top_layers], "layers_compared": len(layers),
    }
