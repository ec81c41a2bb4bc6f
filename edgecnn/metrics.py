"""Output-quality measures shared by convert (choosing a calibration method) and evaluate (compare)."""

from __future__ import annotations

import numpy as np

SNR_CAP_DB = 200.0  # |snr_db| never exceeds this: identical outputs give +200 (JSON has no Infinity)


def snr_db(f: np.ndarray, q: np.ndarray) -> float:
    """Pooled output SNR in dB: 10*log10(sum f^2 / sum (f-q)^2) over every sample and output at once (a sample
    with tiny outputs cannot swamp the mean, as it would per sample); clipped to +-SNR_CAP_DB."""
    return snr_from_sums(*snr_sums(f, q))


def snr_sums(f: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """(sum f^2, sum (f-q)^2): the mergeable state of `snr_db` (shards add theirs; `snr_from_sums` finishes)."""
    f, q = np.asarray(f, np.float64), np.asarray(q, np.float64)
    return float(np.sum(f * f)), float(np.sum((f - q) ** 2))


def snr_from_sums(signal: float, noise: float) -> float:
    """`snr_db` from the summed `snr_sums` of every shard."""
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(np.clip(10.0 * np.log10(signal / noise), -SNR_CAP_DB, SNR_CAP_DB))
