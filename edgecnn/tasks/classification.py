"""Classification: one class per image; predictions are the scores of output 0; the metric is top-1.

| measure                  | what                                                                                   |
|--------------------------|----------------------------------------------------------------------------------------|
| `top1`, `top5`           | share of images whose class is the best / among the 5 best scores (ties: lower index)  |
| `top1_agreement`         | float and quantized models pick the same class (label-free `agreement`)               |
| `top5_agreement`         | the float model's class is among the quantized model's 5 best                          |
| `snr_db`                 | pooled output SNR (`edgecnn.metrics.snr_db`)                                           |
| `kl_divergence`          | KL(float || quant) of the class distributions (`kl_divergence`)                        |
| `per_class`              | with labels: each class's top-1 in both models and the delta in points                 |
"""

from __future__ import annotations

import numpy as np

from edgecnn.metrics import snr_db
from edgecnn.tasks.base import Task

EPS = 1e-7  # probabilities are clipped to [EPS, 1] (and renormalised) before the KL divergence


def topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties (common in int8 outputs) go to the
    # lowest class index, as argmax does, so top-1 here equals argmax accuracy everywhere else
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


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
    fp = f.argmax(1)
    kl, kind = kl_divergence(f, q)
    return {"top1_agreement": float(np.mean(fp == q.argmax(1))), "top5_agreement": topk(q, fp, 5),
            "snr_db": snr_db(f, q), "kl_divergence": kl, "kl_on": kind}


def accuracies(fs: np.ndarray, qs: np.ndarray, y: np.ndarray, names) -> dict:
    """Both accuracies, the drop and per-class deltas against labels `y`."""
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


class Classification(Task):
    name = "classification"
    metric = "top-1"
    metric_key = "top1"
    example_source = "digits"
    trainer = "edgecnn.train.classification"
    qat = True
    details = ("top1",)
    per_class_in_rows = True

    def cell(self, value) -> str:
        return "-" if value is None else f"{value:.2%}"

    def train_text(self, result, output, data) -> str:
        return f"test top-1 {result['test_top1']:.4f} on {result['test_samples']} {data} images"

    def bench_text(self, acc: dict) -> str:
        top1 = acc.get("top1")
        return f"{top1 * 100:.2f}% of {acc['n']}" if top1 is not None else f"(no labels, {acc['n']})"

    def eval_columns(self):
        return [("N", "n"), ("top-1", "top1"), ("top-5", "top5")]

    def compare_text(self, r: dict):
        lines = [f"{r['n']} {'labeled' if r['labeled'] else 'unlabeled'} images: top-1 agreement "
                 f"{r['top1_agreement']:.4f}  top-5 agreement {r['top5_agreement']:.4f}  output SNR "
                 f"{r['snr_db']:.1f} dB  KL(float||quant) {r['kl_divergence']:.4g} nats (on {r['kl_on']})"]
        if not r["labeled"]:
            return lines, None
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.4f}"
        lines.append(f"float top-1 {r['float_top1']:.4f}  quant top-1 {r['quant_top1']:.4f}  drop "
                     f"{r['drop_points']:+.2f} pts  ratio {ratio}")
        worst = sorted(r["per_class"], key=lambda c: c["delta_points"])[:5]
        return lines, ("per-class delta (worst first)", ["class", "N", "float", "quant", "delta pts"],
                       [[c["name"], c["n"], f"{c['float_top1']:.3f}", f"{c['quant_top1']:.3f}",
                         f"{c['delta_points']:+.2f}"] for c in worst])

    def owns(self, ds) -> bool:
        """A set with only class labels: no boxes (detection), no masks (segmentation)."""
        return getattr(ds, "boxes", None) is None and getattr(ds, "masks", None) is None

    def truth(self, ds):
        return np.asarray(ds.labels)

    def postprocess(self, outputs, ctx):
        """The scores (N, classes): output 0, flattened per sample (what `edgecnn.evaluate.predict.predict` gives)."""
        return np.asarray(outputs[0]).reshape(len(outputs[0]), -1)

    def score(self, preds, truth, class_names, ctx) -> dict:
        top1 = topk(preds, truth, 1)
        return {"task": self.name, "metric": self.metric, "value": top1, "n": int(len(truth)), "top1": top1,
                "top5": topk(preds, truth, 5)}

    def agreement(self, fpreds, qpreds, fctx, qctx) -> float:
        return float(np.mean(fpreds.argmax(1) == qpreds.argmax(1))) if len(fpreds) else 1.0

    def compare(self, fpreds, qpreds, truth, class_names, fctx, qctx) -> dict:
        out = {"task": self.name, "metric": self.metric, **output_agreement(fpreds, qpreds)}
        out["agreement"] = out["top1_agreement"]
        if truth is not None:
            out.update(accuracies(fpreds, qpreds, truth, class_names))
            out.update(float_value=out["float_top1"], quant_value=out["quant_top1"])
        return out


TASK = Classification()
