"""Pixel geometry in plain numpy: resize and channel conversion, identical on every machine.

Bilinear resize uses half-pixel centres (the convention of `tf.image.resize` and OpenCV without antialiasing),
expressed as two small interpolation matrices so a whole batch resizes in two matrix products.
"""

from __future__ import annotations

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as PIL's "L" conversion


def _interp_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """(n_out, n_in) matrix that maps a 1-D signal of length n_in to n_out samples."""
    m = np.zeros((n_out, n_in), dtype=np.float32)
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    if method == "nearest":
        idx = np.clip(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(int), 0, n_in - 1)
        m[np.arange(n_out), idx] = 1.0
        return m
    centres = np.clip(centres, 0, n_in - 1)
    lo = np.floor(centres).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (centres - lo).astype(np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def _as_nhwc(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    return a


def _resize_uniform(batch: np.ndarray, h: int, w: int, method: str) -> np.ndarray:
    n, h0, w0, c = batch.shape
    x = batch.astype(np.float32, copy=False)
    if (h0, w0) == (h, w):
        return x.copy() if x is batch else x
    ry = _interp_matrix(h0, h, method)
    rx = _interp_matrix(w0, w, method)
    # (h, h0) @ (n, h0, w0*c) -> (n, h, w0*c)
    x = np.matmul(ry, x.reshape(n, h0, w0 * c)).reshape(n, h, w0, c)
    x = np.einsum("vw,nhwc->nhvc", rx, x, optimize=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def resize_batch(images, h: int, w: int, method: str = "bilinear") -> np.ndarray:
    """Resize an (N,H,W[,C]) array or a list of HxW[xC] arrays to float32 (N, h, w, C)."""
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        batch = images if images.ndim == 4 else images[..., None]
        return _resize_uniform(batch, h, w, method)
    items = [_as_nhwc(im) for im in images]
    if not items:
        return np.zeros((0, h, w, 1), dtype=np.float32)
    cmax = max(im.shape[2] for im in items)
    out = np.empty((len(items), h, w, cmax), dtype=np.float32)
    for i, im in enumerate(items):
        r = _resize_uniform(im[None], h, w, method)[0]
        out[i] = r if r.shape[2] == cmax else convert_channels(r[None], cmax)[0]
    return out


def convert_channels(batch: np.ndarray, channels: int) -> np.ndarray:
    """Convert (N,H,W,C) to `channels` (1 or 3): gray->RGB repeats, RGB->gray uses BT.601 luma, alpha is dropped."""
    c = batch.shape[-1]
    if c == 4:
        batch, c = batch[..., :3], 3
    if c == 2:  # gray + alpha
        batch, c = batch[..., :1], 1
    if c == channels:
        return batch
    if c == 1 and channels == 3:
        return np.repeat(batch, 3, axis=-1)
    if c == 3 and channels == 1:
        return np.tensordot(batch, _LUMA, axes=([-1], [0]))[..., None].astype(np.float32)
    raise ValueError(f"cannot convert {c} channels to {channels}")
