"""edgecnn: compact CNNs from Keras to edge devices.

Stages, left to right (a stage never imports one to its right):
zoo -> data -> train -> convert -> evaluate -> bench (board/runner.py runs on the device) -> deploy -> store -> report.
Shared infrastructure any stage may use: `devices/` (profiles, SSH, board probe), `tflite/` (the TensorFlow-free
.tflite reader, metadata, private-API shims), `targets.py` (the target table), `schema.py`, `console.py`, `atomic.py`,
`errors.py`.
On top, two front ends over the same stage functions: `api.py` (the Python API: `from edgecnn.api import convert`,
typed results) and `cli.py` (the `edgecnn` command, a thin layer over `api.py`).
"""

__version__ = "0.1.0"

import os as _os

# Must be set before TensorFlow is first imported, whoever imports it: see edgecnn/_tf.py for why oneDNN is off.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
