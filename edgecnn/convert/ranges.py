"""Activation ranges other than min/max, from histograms collected in the fast calibrator's single pass.

| method       | range of each activation tensor                                          | after                     |
|--------------|--------------------------------------------------------------------------|---------------------------|
| `minmax`     | the smallest and largest value seen (the stock converter's; the default)  | TFLite, ONNX Runtime       |
| `percentile` | the 0.01% and 99.99% quantiles: a few outliers no longer stretch the range | ONNX Runtime, TensorRT     |
| `mse`        | the clipped range [a*lo, a*hi], a in (0.3, 1], whose int8 rounding plus    | NNCF, ai-edge-quantizer    |
|              | clipping error over the histogram is smallest                             |                           |

Why: one large outlier in a calibration sample widens min/max for every value of the tensor, and int8 then spends
its 256 levels on a range most values never reach. Clipping trades a little error on rare values for finer steps
on the common ones.

How, cheaply: each sample adds a strided subsample (at most `PER_SAMPLE` values) of each tensor to two
histograms per tensor — positive values and negative magnitudes, `BINS` bins over [0, R] — and R doubles (bins
merged pairwise) when a value exceeds it. The exact min/max still come from the whole tensor, and every clipped
range stays inside them.
"""

from __future__ import annotations

import numpy as np

METHODS = ("minmax", "percentile", "mse")
BINS = 2048
PER_SAMPLE = 4096
PERCENTILE = 99.99
_ALPHAS = np.linspace(0.3, 1.0, 36)


class Histograms:
    """Positive and negative-magnitude histograms of many tensors, each over its own growing range [0, R]."""

    def __init__(self, n: int):
        self.pos = np.zeros((n, BINS), np.int64)
        self.neg = np.zeros((n, BINS), np.int64)
        self.zero = np.zeros(n, np.int64)
        self.r = np.zeros(n, np.float64)

    def add(self, k: int, values: np.ndarray) -> None:
        v = values.reshape(-1)
        if v.size > PER_SAMPLE:
            v = v[:: v.size // PER_SAMPLE]
        top = float(np.max(np.abs(v))) if v.size else 0.0
        if top == 0.0:
            self.zero[k] += v.size
            return
        if self.r[k] == 0.0:
            self.r[k] = top
        while top > self.r[k]:  # double the range: merge bins pairwise into the lower half
            for h in (self.pos, self.neg):
                h[k, : BINS // 2] = h[k, 0::2] + h[k, 1::2]
                h[k, BINS // 2:] = 0
            self.r[k] *= 2
        idx = np.minimum((np.abs(v) * (BINS / self.r[k])).astype(np.int64), BINS - 1)
        self.pos[k] += np.bincount(idx[v > 0], minlength=BINS)
        self.neg[k] += np.bincount(idx[v < 0], minlength=BINS)
        self.zero[k] += int(np.sum(v == 0))

    def values(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(bin centres from the most negative to the most positive, counts), zeros as one bin at 0."""
        c = (np.arange(BINS) + 0.5) * (self.r[k] / BINS)
        return (np.concatenate([-c[::-1], [0.0], c]),
                np.concatenate([self.neg[k, ::-1], [self.zero[k]], self.pos[k]]).astype(np.float64))


def clipped(method: str, hist: Histograms, k: int, lo: float, hi: float) -> tuple[float, float]:
    """The range of tensor `k` for `method`, inside its exact [lo, hi]; 0 stays inside (int8 needs it)."""
    if method == "minmax" or hist.r[k] == 0.0:
        return lo, hi
    x, n = hist.values(k)
    if method == "percentile":
        cdf = np.cumsum(n) / n.sum()
        qlo = float(x[np.searchsorted(cdf, 1 - PERCENTILE / 100)])
        qhi = float(x[min(np.searchsorted(cdf, PERCENTILE / 100), len(x) - 1)])
        return min(max(qlo, lo), 0.0), max(min(qhi, hi), 0.0)
    best, pick = np.inf, (lo, hi)
    for a in _ALPHAS:
        a_lo, a_hi = min(a * lo, 0.0), max(a * hi, 0.0)
        step = (a_hi - a_lo) / 255 or 1e-12
        q = np.clip(np.round((x - a_lo) / step), 0, 255) * step + a_lo
        err = float(np.sum(n * (x - q) ** 2))
        if err < best:
            best, pick = err, (a_lo, a_hi)
    return pick
