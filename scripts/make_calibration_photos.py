"""Regenerate calibration/photos from the photos bundled with scikit-image (see its PROVENANCE.md)."""

from pathlib import Path

import numpy as np
import skimage.data as sd
from PIL import Image

NAMES = ["astronaut", "brick", "camera", "cat", "coffee", "coins", "colorwheel", "grass", "gravel", "horse",
         "hubble_deep_field", "moon", "page", "rocket", "text", "chelsea"]


def main(out=Path(__file__).resolve().parent.parent / "calibration" / "photos") -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in NAMES:
        im = np.asarray(getattr(sd, name)())
        if im.dtype != np.uint8:
            im = (im.astype(np.uint8) * 255) if im.dtype == bool else \
                (255 * (im - im.min()) / max(im.max() - im.min(), 1)).astype(np.uint8)
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        im = im[..., :3]
        h, w = im.shape[:2]
        for k in range(8):
            s = int(min(h, w) * rng.uniform(0.4, 0.9))
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            Image.fromarray(im[y:y + s, x:x + s]).resize((128, 128), Image.BILINEAR).save(
                out / f"{name}_{k}.jpg", quality=90)


if __name__ == "__main__":
    main()
