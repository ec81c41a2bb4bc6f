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

How, cheaply: each sample adds a subsample of each tensor (`subsample`: about `PER_SAMPLE` values, taken as whole
channel vectors at spread-out positions, so that every channel is seen) to a signed histogram per tensor — `BINS`
bins over [-R, R] — and R doubles (bins merged pairwise) when a value exceeds it, all tensors of a sample in a few
array operations. The exact min/max still come from the whole tensor, and every clipped range stays inside them.

Why whole channel vectors: an NHWC tensor flattened and taken at a fixed stride lands element k on channel
(k * stride) mod C, so only C / gcd(stride, C) channels reach the histogram: 4 of 64 on a 32x32x64 activation,
256 of 1024 on 7x7x1024. Channels of one tensor can differ in range by 10x, and a histogram of the few sampled ones
then clipped the other channels' values (`tests/test_ranges.py`: percentile gave [0, 1] for a tensor whose
unsampled channels reach 10).
"""

from __future__ import annotations

import numpy as np

METHODS = ("minmax", "percentile", "mse")
BINS = 2048
PER_SAMPLE = 4096
PERCENTILE = 99.99
_ALPHAS = np.linspace(0.3, 1.0, 36)


_ROWS: dict[tuple[int, int], np.ndarray] = {}


def subsample(v: np.ndarray) -> np.ndarray:
    """About `PER_SAMPLE` values of `v` with every channel (last axis) equally represented: whole channel vectors at
    `PER_SAMPLE // C` positions (at least one: all C values of a position), the positions drawn once per tensor
    shape, spread over the tensor without a fixed stride (a stride can fall on one image column). A tensor of at
    most `PER_SAMPLE` values is taken whole; a position holding more than `PER_SAMPLE` channels is taken whole too."""
    if v.size <= PER_SAMPLE:
        return v.reshape(-1)
    rows = v.reshape(-1, v.shape[-1] if v.ndim > 1 else 1)  # a 1-D array: values of one channel
    n, c = rows.shape
    keep = max(1, PER_SAMPLE // c)
    if keep >= n:
        return rows.reshape(-1)
    idx = _ROWS.get((n, keep))
    if idx is None:
        idx = _ROWS[(n, keep)] = np.sort(np.random.default_rng(n).choice(n, keep, replace=False))
    return rows[idx].reshape(-1)


class Histograms:
    """Signed histograms of many tensors: `BINS` bins over [-R, R] per tensor, R doubling as values grow.

    `add_all` takes one sample's tensors at once and does the work for all of them in a few array operations (a
    per-tensor loop of small numpy calls cost more than the inference itself on MobileNetV2)."""

    def __init__(self, n: int):
        self.h = np.zeros((n, BINS), np.int64)
        self.r = np.zeros(n, np.float64)

    def _grow(self, k: int, top: float) -> None:
        """Double tensor k's range until `top` fits: the old bins merge pairwise into the middle half."""
        while top > self.r[k]:
            merged = self.h[k, 0::2] + self.h[k, 1::2]
            self.h[k] = 0
            self.h[k, BINS // 4: BINS // 4 + BINS // 2] = merged
            self.r[k] *= 2

    def add_all(self, views: list) -> None:
        parts = [subsample(v) for v in views]
        sizes = np.fromiter((p.size for p in parts), np.int64, len(parts))
        v = np.concatenate(parts).astype(np.float64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        top = np.maximum.reduceat(np.abs(v), starts) if v.size else np.zeros(len(parts))
        fresh = (self.r == 0) & (top > 0)
        self.r[fresh] = top[fresh]
        for k in np.flatnonzero(top > self.r):
            self._grow(int(k), float(top[k]))
        r = np.repeat(np.where(self.r > 0, self.r, 1.0), sizes)
        local = np.clip(((v / r + 1.0) * (BINS / 2)).astype(np.int64), 0, BINS - 1)
        rows = np.repeat(np.arange(len(parts)), sizes)
        self.h += np.bincount(rows * BINS + local, minlength=len(parts) * BINS).reshape(len(parts), BINS)

    def values(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(bin centres from -R to R, counts) of tensor k."""
        centres = (np.arange(BINS) + 0.5) * (2 * self.r[k] / BINS) - self.r[k]
        return centres, self.h[k].astype(np.float64)


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
    keep = n > 0  # empty bins add nothing: all alphas at once over the occupied bins only
    x, n = x[keep], n[keep]
    a_lo, a_hi = np.minimum(_ALPHAS * lo, 0.0), np.maximum(_ALPHAS * hi, 0.0)
    step = np.maximum((a_hi - a_lo) / 255, 1e-12)
    q = np.clip(np.round((x[None, :] - a_lo[:, None]) / step[:, None]), 0, 255) * step[:, None] + a_lo[:, None]
    best = int(np.argmin(((x[None, :] - q) ** 2) @ n))
    return float(a_lo[best]), float(a_hi[best])
