"""A task that exists only in the test suite, to show what a new task needs: one `Task` subclass, registered.

"brightness": the truth of an image is its mean pixel value in 0..1 (any image set carries it, labeled or not);
the model's one output is its estimate; the metric is the share of images estimated within `TOLERANCE`. Nothing in
`edgecnn/` names it: eval, compare and the Ray engine run it through the task hooks alone.
"""

from __future__ import annotations

import numpy as np

from edgecnn.tasks.base import Task

TOLERANCE = 0.1  # the metric: |estimate - truth| within this
AGREE = 0.02  # float and quantized estimates "agree" within this


class Brightness(Task):
    name = "brightness"
    metric = "within-0.1"
    metric_key = "within"
    example_source = "digits"
    details = ("within", "mae")

    def accepts(self, ds) -> bool:
        return True  # every image has a brightness

    def truth(self, ds):
        return np.asarray([np.asarray(im, np.float64).mean() / 255.0 for im in ds.images])

    def postprocess(self, outputs, ctx):
        return np.asarray(outputs[0], np.float64).reshape(len(outputs[0]))

    def score(self, preds, truth, class_names, ctx):
        err = np.abs(preds - truth)
        within = float(np.mean(err <= TOLERANCE))
        return {"task": self.name, "metric": self.metric, "value": within, "n": int(len(truth)),
                "within": within, "mae": float(np.mean(err))}

    def agreement(self, fpreds, qpreds, fctx, qctx):
        return float(np.mean(np.abs(fpreds - qpreds) <= AGREE))


TASK = Brightness()


def brightness_model(path, size: int = 16):
    """A Keras model that computes an image's mean brightness exactly (average pooling, a 1x1 dense of weight 1),
    saved with an edgecnn spec of task "brightness" (x / 255 in, so the output is in 0..1)."""
    import keras

    from edgecnn.data.spec import PreprocessSpec
    from edgecnn.modelfile import save_model

    inp = keras.Input((size, size, 1))
    out = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")(
        keras.layers.GlobalAveragePooling2D()(inp))
    return save_model(keras.Model(inp, out), path, PreprocessSpec(size, size, 1, task="brightness"))
