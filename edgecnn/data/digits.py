"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): always available, offline.

Pixel values 0..16 are mapped to 0..255 uint8 so that digits flow through the same preprocessing as photos.
The split is fixed (stratified, seed 0, 20% test) so accuracy numbers are comparable across runs and machines.
"""

from __future__ import annotations

import numpy as np

from edgecnn.data.dataset import Dataset, split_indices

TEST_FRACTION = 0.2


def load_digits(split: str = "train") -> Dataset:
    from sklearn.datasets import load_digits as _load

    d = _load()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = d.target.astype(np.int64)
    train, test = split_indices(labels, TEST_FRACTION, seed=0)
    idx = {"train": train, "test": test, "all": np.arange(len(labels))}[split]
    return Dataset(images[idx], labels[idx], tuple(str(i) for i in range(10)), "digits")
