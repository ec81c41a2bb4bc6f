"""Output-quality measures shared by convert (choosing a calibration method) and evaluate (compare)."""

from __future__ import annotations

import numpy as np

SNR_CAP_DB = 200.0  # |snr_db| never exceeds this: identical outputs give +200 (JSON has no Infinity)


def snr_db(f: np.ndarray, q: np.ndarray) -> float:
    """Pooled output SNR in dB: 10*log10(sum f^2 / sum (f-q)^2) over every sample and output at once (a sample
    with tiny outputs cannot swamp the mean, as it would per sample); clipped to +-SNR_CAP_DB."""
    f, q = f.astype(np.float64), q.astype(np.float64)
    signal, noise = float(np.sum(f * f)), float(np.sum((f - q) ** 2))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(np.clip(10.0 * np.log10(signal / noise), -SNR_CAP_DB, SNR_CAP_DB))
