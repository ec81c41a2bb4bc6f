"""Lazy, quiet TensorFlow: imported only by commands that need it, without its C++ start-up noise.

TF's oneDNN and absl notices are printed from C++ before any log level applies, so the first import runs with
file descriptor 2 pointed at /dev/null (set EDGECNN_VERBOSE=1 to see them). Python warnings still show.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced_fd(fd: int = 2):
    """Point a file descriptor at /dev/null for the duration (C++ writes included); a no-op when verbose."""
    if os.environ.get("EDGECNN_VERBOSE"):
        yield
        return
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    except Exception:  # a closed stream must not break the caller
        pass
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        try:
            sys.stderr.flush()
            sys.stdout.flush()
        except Exception:
            pass
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def quiet() -> None:
    """Import TensorFlow and Keras once, quietly; later `import keras` statements are then free of noise.

    oneDNN kernels are off by default (TF_ENABLE_ONEDNN_OPTS=0; set it to 1 to override): with them on, TF 2.21
    corrupted the heap while training residual nets on 1-channel input here ("double free or corruption" in
    `tensorflow::Tensor::~Tensor`, resnet8 on digits, 3 of 3 runs; 0 of 4 with oneDNN off), and off they also give
    bit-reproducible results with `--seed`.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules:
        return
    with silenced_fd(2):
        import tensorflow
        import keras  # noqa: F401

    tensorflow.get_logger().setLevel("ERROR")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def tf():
    quiet()
    import tensorflow

    return tensorflow


def keras():
    quiet()
    import keras as _keras

    return _keras
