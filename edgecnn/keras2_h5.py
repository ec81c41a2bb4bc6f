"""Keras 2 `.h5` model files into Keras 3: the format most edge tutorials, Coral examples and model packages ship.

Keras 3 reads the legacy HDF5 layout, but not every Keras 2 config: a MobileNet saved by TF 2.x's Keras 2 stops at
`DepthwiseConv2D` ("Unrecognized keyword arguments ... {'groups': 1}"), an older one at its initializers
(`GlorotUniform.__init__() got an unexpected keyword argument 'dtype'`). Three routes, tried in order, and the one
taken is said in the convert report:

1. "keras 3": Keras 3 loads the file as it is;
2. "keras 2 config repaired": the known Keras 2 -> 3 config differences (`REPAIRS`, each exact: it drops only a
   value that was the Keras 2 default or renames a key) are rewritten in a temporary copy of the file, which Keras 3
   then loads with its own weight loader. The result is a native Keras 3 model: it converts, evaluates and
   fine-tunes like any other;
3. "tf-keras": what no repair covers (a `TFOpLambda` layer from `tf.*` calls in a functional model, a layer Keras 3
   dropped) is loaded by Keras 2 itself (`tf-keras`, the `keras2` extra), exported as a SavedModel and wrapped as an
   inference-only Keras 3 model (it converts, evaluates and compares; it cannot be fine-tuned).

Without `tf-keras`, a file that needs it is one line naming the file, the layer and the extra to install.
The native routes come first because they give a model that also trains; every route gives the same float function
(tests/test_keras2_h5.py compares a Keras 2 model's outputs with the converted float .tflite's).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from edgecnn.errors import EdgecnnError

INSTALL = "pip install 'edgecnn[keras2]'"
NOTHING_KNOWN = "no known Keras 2 difference"


# --- the repairs: (what it fixes, function(class_name, config) -> True if it changed config) ------------------------

def _groups_one(cls: str, cfg: dict) -> bool:
    """Keras 2 serialised `groups` on every Conv subclass; Keras 3's DepthwiseConv2D and ConvNDTranspose take none
    (a depthwise or transposed conv with groups=1 is the same layer)."""
    if cls in ("DepthwiseConv2D", "DepthwiseConv1D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose") \
            and "groups" in cfg:
        if cfg["groups"] != 1:
            raise _Unrepairable(f"{cls} with groups={cfg['groups']}")
        del cfg["groups"]
        return True
    return False


def _separable_unused(cls: str, cfg: dict) -> bool:
    """Keras 2's SeparableConv kept Conv's `groups` and `kernel_*` arguments, unused (its weights are `depthwise_*`
    and `pointwise_*`); Keras 3's takes none of them."""
    if cls not in ("SeparableConv1D", "SeparableConv2D"):
        return False
    keys = [k for k in ("groups", "kernel_initializer", "kernel_regularizer", "kernel_constraint") if k in cfg]
    if cfg.get("groups", 1) != 1:
        raise _Unrepairable(f"{cls} with groups={cfg['groups']}")
    for k in keys:
        del cfg[k]
    return bool(keys)


def _defaults_not_taken(cls: str, cfg: dict) -> bool:
    """Some Keras 3 layers (SpatialDropout2D, ...) take no **kwargs and fewer arguments than Keras 2 wrote for them
    (`trainable`, `noise_shape`); dropping one is exact when it holds Keras 2's default (None), and `trainable` is
    for layers that take none (they have no weights: SpatialDropout2D, ...)."""
    import inspect

    from edgecnn import _tf

    layer = getattr(_tf.keras().layers, cls, None)
    if not isinstance(layer, type):
        return False
    params = inspect.signature(layer.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return False
    drop = [k for k, v in cfg.items() if k not in params and (v is None or k == "trainable")]
    for k in drop:
        del cfg[k]
    return bool(drop)


def _initializer_dtype(cls: str, cfg: dict) -> bool:
    """TF 1.x/2.0-era initializers carried a `dtype`; Keras 3's take none (the layer's dtype decides)."""
    from edgecnn import _tf

    keras = _tf.keras()
    if "dtype" in cfg and "trainable" not in cfg and hasattr(keras.initializers, cls):  # a layer has `trainable`
        del cfg["dtype"]
        return True
    return False


def _policy_dtype(cls: str, cfg: dict) -> bool:
    """Keras 2.13+ wrote a layer's dtype as a `Policy` object; Keras 3 names it DTypePolicy, a plain name is the same."""
    d = cfg.get("dtype")
    if isinstance(d, dict) and d.get("class_name") == "Policy" and isinstance(d.get("config"), dict):
        cfg["dtype"] = d["config"]["name"]
        return True
    return False


def _leaky_relu_alpha(cls: str, cfg: dict) -> bool:
    """Keras 2's LeakyReLU slope is `alpha`; Keras 3's is `negative_slope`."""
    if cls == "LeakyReLU" and "alpha" in cfg:
        cfg["negative_slope"] = cfg.pop("alpha")
        return True
    return False


def _lost_input_flags(cls: str, cfg: dict) -> bool:
    """Keras 2's InputLayer kept `ragged` (always False for an image model); Keras 3 has no ragged tensors."""
    if cls == "InputLayer" and "ragged" in cfg:
        if cfg.pop("ragged"):
            raise _Unrepairable("a ragged InputLayer")
        return True
    return False


# activation names whose function changed between Keras 2 and Keras 3: no config edit makes them exact
CHANGED_ACTIVATIONS = {"hard_sigmoid": "Keras 2 computes clip(0.2x + 0.5), Keras 3 relu6(x + 3) / 6"}
ACTIVATION_KEYS = ("activation", "recurrent_activation")


def _changed_activation(cls: str, cfg: dict) -> bool:
    """A layer of a Keras 2 file whose activation name means another function in Keras 3: no config edit makes it
    exact (Keras 3 would even load it as it is), so only the tf-keras route computes it as trained."""
    for key in ACTIVATION_KEYS:
        act = cfg.get(key)
        if isinstance(act, str) and act in CHANGED_ACTIVATIONS:
            raise _Unrepairable(f"{cls} '{cfg.get('name', '?')}' uses {act} ({CHANGED_ACTIVATIONS[act]})")
    return False


REPAIRS = {"groups=1 on depthwise/transposed convs": _groups_one,
           "unused SeparableConv arguments": _separable_unused,
           "default arguments a layer no longer takes": _defaults_not_taken,
           "initializer dtype": _initializer_dtype,
           "dtype policy objects": _policy_dtype,
           "LeakyReLU alpha": _leaky_relu_alpha,
           "InputLayer ragged=False": _lost_input_flags}


class _Unrepairable(Exception):
    """A Keras 2 config value that has no Keras 3 equivalent (not a default that can be dropped)."""


def _objects(node):
    """Every (class_name, config) object nested anywhere in a Keras config, outermost first."""
    if isinstance(node, list):
        for n in node:
            yield from _objects(n)
    elif isinstance(node, dict):
        cls, cfg = node.get("class_name"), node.get("config")
        if isinstance(cls, str) and isinstance(cfg, dict):
            yield cls, cfg
        for v in node.values():
            yield from _objects(v)


def repair_config(config) -> list[str]:
    """Rewrite the Keras 2 differences in a model config (in place), walking every nested object; the names of the
    repairs that changed something."""
    used: list[str] = []
    for cls, cfg in _objects(config):
        for name, fix in REPAIRS.items():
            if fix(cls, cfg) and name not in used:
                used.append(name)
    return used


# --- the routes ----------------------------------------------------------------------------------------------------

def _message(exc: Exception) -> str:
    s = str(exc).strip()
    lines = [ln.strip() for ln in s.splitlines() if ln.strip()]
    # Keras wraps the cause in a long preamble; its last "Exception encountered" line names it
    for ln in reversed(lines):
        if ln.startswith("Exception encountered:"):
            return ln.split(":", 1)[1].split(". Please")[0].strip()[:300]
    return (lines[0] if lines else type(exc).__name__).split(". Please")[0][:300]


def _read_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise EdgecnnError(f"{path}: cannot read the .h5 file ({str(exc).splitlines()[0][:200]}): truncated "
                           "or not an HDF5 model") from None
    if raw is None:
        raise EdgecnnError(f"{path}: an HDF5 file without a model config (a weights-only file?): load it into "
                           "the model it belongs to, or save the whole model")
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _load_repaired(path: Path, keras):
    """(model, repairs) from a temporary copy of `path` whose config had the REPAIRS applied; raises _Unrepairable
    or Keras' own exception."""
    config = _read_config(path)
    used = repair_config(config)
    if not used:
        raise _Unrepairable(NOTHING_KNOWN)
    import h5py

    with tempfile.TemporaryDirectory(prefix="edgecnn-h5-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        with h5py.File(copy, "r+") as f:
            f.attrs["model_config"] = json.dumps(config)
        return keras.models.load_model(copy, compile=False), used


def _keras_version(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            v = f.attrs.get("keras_version", b"")
    except OSError:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def _changed_meaning(path: Path) -> str | None:
    """For a file Keras 2 (or 1) saved: the first layer whose activation means another function in Keras 3, else
    None (a file without a config or that cannot be read is left to the routes, which say what is wrong)."""
    if not _keras_version(path).startswith(("1.", "2.")):
        return None
    try:
        for cls, cfg in _objects(_read_config(path)):
            _changed_activation(cls, cfg)
    except _Unrepairable as exc:
        return str(exc)
    except EdgecnnError:
        return None
    return None


def _tf_keras():
    """The tf_keras module, or None when the `keras2` extra is not installed."""
    try:
        import tf_keras
    except ImportError:
        return None
    return tf_keras


def _load_with_tf_keras(path: Path, tf_keras):
    """Keras 2 loads the file; its SavedModel export is wrapped as an inference-only Keras 3 model."""
    import tensorflow as tf

    from edgecnn.modelfile import wrap_savedmodel

    m2 = tf_keras.models.load_model(path, compile=False)
    if isinstance(m2.input_shape, list) or len(m2.outputs) != 1:
        raise EdgecnnError(f"{path}: a Keras 2 model with {len(m2.inputs)} inputs and {len(m2.outputs)} outputs; "
                           "the tf-keras route takes one input and one output")
    shape = tuple(m2.input_shape)
    spec = tf.TensorSpec((None, *shape[1:]), m2.inputs[0].dtype, name="input")

    @tf.function(input_signature=[spec])
    def serve(x):
        return {"output_0": m2(x, training=False)}

    module = tf.Module()
    module.m2 = m2
    module.serve = serve
    tmp = tempfile.mkdtemp(prefix="edgecnn-tfkeras-")
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve})
        model = wrap_savedmodel(tmp, name=path.stem)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model


def load_h5(path: str | Path, routes: tuple[str, ...] = ("keras 3", "repaired", "tf-keras")):
    """(Keras 3 model, note on the route taken) for a Keras 2 or 3 `.h5` file; one line naming the file and the
    problem when no route loads it. `routes` narrows the routes tried (tests use it to check each alone)."""
    from edgecnn import _tf

    path = Path(path)
    if not str(path).endswith((".h5", ".hdf5")):  # Keras picks the format by extension (`face_mask.model`)
        with tempfile.TemporaryDirectory(prefix="edgecnn-h5-") as tmp:
            link = Path(tmp) / f"{path.stem or 'model'}.h5"
            link.symlink_to(path.resolve())
            try:
                return load_h5(link, routes)
            except EdgecnnError as exc:
                raise EdgecnnError(str(exc).replace(str(link), str(path))) from None
    keras = _tf.keras()
    first = "not loaded by the routes tried"
    changed = _changed_meaning(path)
    if changed:  # Keras 3 would load it and compute another function: only Keras 2 computes it as trained
        first, routes = changed, tuple(r for r in routes if r == "tf-keras")
    if "keras 3" in routes:
        try:
            return keras.models.load_model(path, compile=False), "keras 3 loaded the .h5 as it is"
        except Exception as exc:  # Keras raises many types for foreign configs
            first = _message(exc)
    if "repaired" in routes:
        try:
            model, used = _load_repaired(path, keras)
            return model, f"keras 2 config repaired ({', '.join(used)}); loaded by keras 3"
        except EdgecnnError:
            raise
        except _Unrepairable as exc:  # a value with no Keras 3 equivalent says more than Keras 3's first complaint
            first = first if str(exc) == NOTHING_KNOWN else str(exc)
        except Exception as exc:
            first = _message(exc)
    if "tf-keras" in routes:
        tf_keras = _tf_keras()
        if tf_keras is not None:
            try:
                return _load_with_tf_keras(path, tf_keras), "loaded by tf-keras (Keras 2), inference only"
            except EdgecnnError:
                raise
            except Exception as exc:
                raise EdgecnnError(f"{path}: cannot load model (keras 3: {first}; tf-keras: {_message(exc)})") \
                    from None
        raise EdgecnnError(f"{path}: cannot load model ({first}); a Keras 2 file that needs Keras 2 itself: "
                           f"{INSTALL}")
    raise EdgecnnError(f"{path}: cannot load model ({first})")
