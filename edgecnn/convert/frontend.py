"""Keras/SavedModel -> float32 .tflite with batch 1, static shapes and a `serving_default` signature.

Route (measured in ../shared/README.md): a concrete function traced at batch 1 and handed to
`TFLiteConverter.from_concrete_functions` *without* `trackable_obj` — variables are frozen into constants, and it
is ~2x faster than `from_keras_model` (which exports and reloads a SavedModel). The trap avoided: the same call
*with* `trackable_obj` keeps variables as VAR_HANDLE/READ_VARIABLE and the model outputs NaN. This route writes no
SignatureDef, so one is added to the flatbuffer (signature runners and benchmark tools expect it).
"""

from __future__ import annotations

import contextlib
import os

from edgecnn.errors import EdgecnnError

SIGNATURE_KEY = "serving_default"


@contextlib.contextmanager
def converter_quiet(verbose: bool = False):
    """Keep the converter's stdout/stderr listing ("Saved artifact at ...", MLIR notes) off the terminal."""
    if verbose:
        yield
        return
    from edgecnn._tf import silenced_fd

    with silenced_fd(1), silenced_fd(2):
        yield


def concrete_function(model, batch: int = 1):
    """Trace `model` at a fixed batch with static spatial shapes."""
    import tensorflow as tf

    shape = tuple(model.input_shape)
    if isinstance(model.input_shape, list):
        raise EdgecnnError(f"{model.name}: multi-input models are not supported by convert yet")
    if any(d is None for d in shape[1:]):
        raise EdgecnnError(f"{model.name}: input shape {shape} has unknown dimensions; static shapes are "
                           "required (integer accelerators need them): rebuild with a fixed input size")
    dtype = getattr(model.inputs[0], "dtype", "float32")
    spec = tf.TensorSpec((batch, *shape[1:]), dtype=tf.as_dtype(str(dtype)), name="input")
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def make_converter(model):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(model)])


def add_signature(tflite: bytes) -> bytes:
    """Add a `serving_default` SignatureDef (inputs `input`/`input_N`, outputs `output_N`) if there is none."""
    from edgecnn.tflite import reader

    fb = reader.schema()
    model = reader.parse(tflite)
    if model.signatureDefs:
        return tflite
    sub = model.subgraphs[0]

    def tmap(name, idx):
        t = fb.TensorMapT()
        t.name, t.tensorIndex = name, int(idx)
        return t

    sig = fb.SignatureDefT()
    sig.signatureKey = SIGNATURE_KEY
    sig.subgraphIndex = 0
    sig.inputs = [tmap("input" if i == 0 else f"input_{i}", t) for i, t in enumerate(sub.inputs)]
    sig.outputs = [tmap(f"output_{i}", t) for i, t in enumerate(sub.outputs)]
    model.signatureDefs = [sig]
    return reader.serialize(model)


def float_tflite(model, verbose: bool = False, signature: bool = True) -> bytes:
    """The float32 .tflite of a Keras model (batch 1; with a signature unless `signature=False`, for internal
    use as the calibration/quantization source, where rewriting a large float flatbuffer would only cost time)."""
    with converter_quiet(verbose):
        try:
            data = make_converter(model).convert()
        except Exception as exc:  # the converter raises ConverterError and friends
            raise EdgecnnError(f"{model.name}: TFLite conversion failed: {_first_line(exc)}") from None
    return add_signature(data) if signature else data


def _first_line(exc) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:300]
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def env_threads() -> int:
    return int(os.environ.get("EDGECNN_THREADS", os.cpu_count() or 1))
