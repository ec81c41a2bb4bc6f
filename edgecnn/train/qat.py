"""Quantization-aware training for Keras 3: the model trains through a simulation of the int8 model it converts to.

tensorflow-model-optimization's `quantize_model()` needs Keras 2; Keras 3's `model.quantize()` is post-training and
Dense-only. Here the trained model's functional graph is re-wired (walked as `keras.models.clone_model` walks it,
sharing every layer and variable) so that each value the int8 model holds is fake-quantized the way the TFLite
converter will quantize it, with `keras.quantizers.fake_quant_with_min_max_vars` (TF's FakeQuant ops,
straight-through gradients):

| where                                      | simulated as                                                      |
|--------------------------------------------|-------------------------------------------------------------------|
| a Conv2D / DepthwiseConv2D / Dense, its    | one fused op, as the converter folds it: the batch norm folded    |
| batch norm and a ReLU / ReLU6 after them   | into the kernel with its moving statistics (what the converter    |
| (each the previous one's only reader)      | folds; while training, the batch's: see BN_FREEZE_EPOCHS), the    |
|                                            | folded kernel fake-quantized symmetric                            |
|                                            | narrow-range per output channel (`per_tensor`: one range), its    |
|                                            | bias rounded onto the int32 grid (input scale x weight scale:    |
|                                            | coarse per tensor, where a dead channel's folded kernel sets the  |
|                                            | scale), the activation after it                                   |
| the value each op writes (the end of such  | asymmetric int8 per tensor over a range tracked by a moving       |
| a chain, an add, a pooling mean, a raw op  | average of the batches' min/max (tfmot's MovingAverageQuantizer),|
| like hard sigmoid's `x + 3.0`...)          | started from a calibration pass over the first training images   |
| an add / multiply whose only reader is a   | quantized once, after the ReLU (the converter fuses it into the  |
| ReLU / ReLU6                               | add)                                                              |
| softmax / sigmoid / tanh outputs           | the converter's fixed int8 range ([0, 255/256], [-1, 127/128])    |
| ops that keep their input's scale          | nothing (max pooling, padding, reshape, dropout keep the grid);  |
|                                            | average pooling is rounded onto its input's grid                  |
| the model input                            | the spec's value range (what its int8 input holds)                |

The trained weights are the float model's own (shared variables): `edgecnn train --qat` saves the float model as
usual with the learned ranges beside its spec (`edgecnn_qat.json` in the `.keras`), and `edgecnn convert` writes
those ranges into the tensors they belong to instead of calibrated ones (`edgecnn/convert/qat_ranges.py`), so the
int8 graph is the PTQ one (same ops, rewrites, partitions) with the trained weights and ranges.
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import EdgecnnError

# While training, a folded conv's output is divided by the fold's scale and normalized by the batch's statistics (the
# moving ones updated), as the float model trains (PyTorch's ConvBn QAT, after Jacob et al. 2018, section 3.2); the
# last BN_FREEZE_EPOCHS epochs (of 2 or more) fold the frozen moving statistics, what the converter writes (as
# torchvision's QAT recipe freezes them after a few epochs). Measured: QAT int8 below its control's float (5 epochs
# at 5e-4 from benchmarks/qat.py's pretrained CenterNet and DeepLabV3 MobileNetV2 1.0, per channel; points of mAP@.5,
# mIoU at seed 0, mIoU at seed 1): all epochs frozen 1.08, 1.09, -; batch statistics throughout 0.51, 0.86, 1.49;
# the last epoch frozen -0.66 (above it), 1.68, 1.21 (one script with the benchmark's settings on an AMD EPYC, float
# and control trained there: not the published table's run). Both beat all frozen; between the two the seeds differ
# by more than the choice, which follows the literature: the last epochs train the model the converter writes.
BN_FREEZE_EPOCHS = 1
EMA_DECAY = 0.99  # tfmot uses 0.999 for ImageNet-length runs; edge fine-tunes are a few hundred steps
CALIBRATION_IMAGES = 256  # the ranges' starting point: min/max of the float model over these training images
KERNEL_KINDS = ("Conv2D", "DepthwiseConv2D", "Dense")
FUSED_ACTIVATIONS = ("linear", "relu", "relu6")  # what TFLite fuses into a conv / fully-connected op
FIXED_RANGE = {"softmax": (0.0, 255.0 / 256.0), "sigmoid": (0.0, 255.0 / 256.0),  # the converter's fixed scales
               "tanh": (-1.0, 127.0 / 128.0)}
RAW_ACTIVATIONS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}  # keras.ops written in model code
# the converter gives them their input's scale (XNNPACK refuses an int8 RESIZE_BILINEAR whose output scale differs)
TIED_SCALE = ("AveragePooling2D", "AveragePooling1D", "Resizing", "UpSampling2D")
ELEMENTWISE = ("Add", "Subtract", "Multiply")  # TFLite fuses a ReLU / ReLU6 after these into the op
SAME_SCALE = ("MaxPooling2D", "MaxPooling1D", "ZeroPadding2D", "Reshape", "Flatten", "Dropout", "SpatialDropout2D",
              "Cropping2D", "Permute", "InputLayer", "Identity")
WEIGHTED = KERNEL_KINDS + ("BatchNormalization",)  # the layers with weights the simulation models
REFUSED = ("SeparableConv2D", "Conv2DTranspose", "Conv1D", "Conv3D", "LSTM", "GRU", "SimpleRNN", "Embedding",
           "EinsumDense", "MultiHeadAttention", "LayerNormalization", "GroupNormalization")
LINEAR = ".linear"  # the owner name of a kernel layer's output before its own softmax/sigmoid (its own op)
INPUT = "<input>"  # the owner name of the model input's range
FORMAT = 1  # the layout of `edgecnn_qat.json`


def int8_grid(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] moved onto the int8 grid its scale and zero point give, so that TF's FakeQuant and the TFLite
    converter agree on it. They round a zero point halfway between two integers differently (FakeQuant in [0, 255],
    the converter in [-128, 127], both half away from zero): [-1, 1], the input of a MobileNet, has zero point
    127.5 / -0.5 and became 0 in the simulation but -1 in the int8 model, one step apart at every white pixel."""
    scale = (hi - lo) / 255.0
    zero = -128.0 - lo / scale
    zero = float(np.floor(zero + 0.5)) if zero >= 0 else float(np.ceil(zero - 0.5))  # half away from zero
    return (-128.0 - zero) * scale, (127.0 - zero) * scale


def _activation_name(layer) -> str | None:
    """'relu', 'relu6', 'linear', 'softmax', ... of a layer's own activation, or of an activation layer."""
    kind = type(layer).__name__
    if kind == "ReLU":
        if layer.negative_slope or layer.threshold:
            return None
        return "relu6" if layer.max_value is not None and float(layer.max_value) == 6.0 else (
            "relu" if layer.max_value is None else None)
    if kind == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def _readers(model) -> dict[int, list]:
    """{id(layer): the layers that read its output} over the functional graph (`check` refuses nested models)."""
    out: dict[int, list] = {}
    for depth in model._nodes_by_depth.values():  # this model's nodes only (a shared layer has others)
        for node in depth:
            for t in node.input_tensors:
                out.setdefault(id(t._keras_history.operation), []).append(node.operation)
    return out


def _nested(layer) -> bool:  # a functional model inside the model
    return hasattr(layer, "_nodes_by_depth") and hasattr(layer, "layers")


def _only_reader(layer, readers, kinds) -> object | None:
    r = readers.get(id(layer), [])
    return r[0] if len(r) == 1 and type(r[0]).__name__ in kinds else None


def _fused_relu(layer, readers):
    """The ReLU / ReLU6 layer that is `layer`'s only reader (the converter fuses it into `layer`'s op), or None."""
    act = _only_reader(layer, readers, ("ReLU", "Activation"))
    return act if act is not None and _activation_name(act) in ("relu", "relu6") else None


def chains(model, readers) -> dict[int, list]:
    """{id(first layer): [kernel layer, its batch norm?, its ReLU?]}: the layers the converter fuses into one op."""
    out = {}
    for layer in _all_layers(model):
        if type(layer).__name__ not in KERNEL_KINDS:
            continue
        chain = [layer]
        if _activation_name(layer) == "linear":
            bn = _only_reader(layer, readers, ("BatchNormalization",))
            if bn is not None and _foldable(bn):
                chain.append(bn)
            act = _fused_relu(chain[-1], readers)
            if act is not None:
                chain.append(act)
        out[id(layer)] = chain
    return out


def _foldable(bn) -> bool:
    """A batch norm over the last axis (the channels a kernel's output has): what the converter folds."""
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    try:
        rank = len(bn.input.shape)
    except (AttributeError, ValueError):
        return False
    return axis is not None and axis % rank == rank - 1


def _all_layers(model) -> list:
    """Every operation of the graph: Keras layers and the raw ops a model's code wrote (keras.applications'
    MobileNetV3 writes the hard sigmoid of its squeeze-excite gates as `x + 3.0` and `* (1 / 6)`, operations without
    a layer); `check` refuses nested models."""
    return list(model.operations)


def flatten(model):
    """`model` as one functional graph: each functional or Sequential model nested in it inlined where it is called,
    its layers re-made with the same names, configuration and weights. A transfer-learned Keras model is typically
    `Model(inp, Dense(GlobalAveragePooling2D(base(inp))))` with `base` a keras.applications network; the simulation
    and the converter's tensor names need the layers of one graph. `model` itself when nothing is nested."""
    import keras

    if not hasattr(model, "_nodes_by_depth") or not any(
            _nested(layer) or type(layer).__name__ == "Sequential" for layer in model.operations):
        return model

    def call(layer, *args, **kwargs):
        graph = getattr(layer, "_functional", None) if type(layer).__name__ == "Sequential" else layer
        if graph is not None and _nested(graph):  # inline it: its own layers, called on this graph's tensors
            return _single(graph._run_through_graph(args[0], operation_fn=lambda op: op, call_fn=call))
        return layer(*args, **kwargs)

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in model.inputs]
    out = model._run_through_graph(_single(inputs), operation_fn=lambda op: op, call_fn=call)
    shared = keras.Model(_single(inputs), _single(out), name=model.name)
    flat = keras.models.clone_model(shared)  # layers of this graph only (a shared layer's `.output` is ambiguous)
    flat.set_weights(shared.get_weights())
    return flat


def has_batch_norm(model) -> bool:
    return any(type(layer).__name__ == "BatchNormalization" for layer in _all_layers(model))


def check(model) -> None:
    """One line naming what the simulation cannot model the converter's int8 for: a nested model, a layer called
    twice, a layer with weights other than a conv / depthwise / dense and its batch norm, a batch norm it cannot
    fold."""
    if not hasattr(model, "_nodes_by_depth"):
        raise EdgecnnError(f"--qat walks a functional model's graph; {model.name!r} is a {type(model).__name__}: "
                           "rebuild it with the functional API")
    calls: dict[int, int] = {}
    for depth in model._nodes_by_depth.values():
        for node in depth:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
    for layer in model.operations:
        kind = type(layer).__name__
        if _nested(layer) or kind == "Sequential":
            raise EdgecnnError(f"--qat cannot simulate layer {layer.name!r} yet: a model nested in the model "
                               "(flatten it into one functional graph)")
        if calls.get(id(layer), 0) > 1:
            raise EdgecnnError(f"--qat cannot simulate layer {layer.name!r}: it is called {calls[id(layer)]} times "
                               "(a shared layer)")
        if kind in REFUSED or (layer.weights if hasattr(layer, "weights") else []) and kind not in WEIGHTED:
            raise EdgecnnError(f"--qat cannot simulate layer {layer.name!r} ({kind}) yet: it simulates the weights "
                               "of Conv2D, DepthwiseConv2D and Dense with their batch norm, and weightless "
                               "element-wise, pooling and shape layers")
        if kind == "BatchNormalization" and not _foldable(layer):
            raise EdgecnnError(f"--qat cannot simulate layer {layer.name!r}: a batch norm over axis {layer.axis}, "
                               "not the channels")


def _fused(name: str, x):
    import keras

    if name == "relu":
        return keras.ops.relu(x)
    if name == "relu6":
        return keras.ops.relu6(x)
    return x


def _make_layers():
    """The two Keras layers of the simulation (defined on first use: Keras is imported lazily)."""
    import keras
    from keras import ops

    class RangeQuant(keras.layers.Layer):
        """Fake-quantizes a value to asymmetric int8 over [min, max]: a moving average of the batches' min/max
        while training (`fixed`: a constant range, e.g. softmax's)."""

        def __init__(self, lo: float, hi: float, fixed: bool = False, decay: float = EMA_DECAY, **kw):
            super().__init__(**kw)
            self.fixed, self.decay, self._start = fixed, decay, (float(lo), float(hi))

        def build(self, shape):
            self.lo = self.add_weight(shape=(), initializer=keras.initializers.Constant(self._start[0]),
                                      trainable=False, name="min")
            self.hi = self.add_weight(shape=(), initializer=keras.initializers.Constant(self._start[1]),
                                      trainable=False, name="max")

        def compute_output_shape(self, shape):
            return shape

        def call(self, x, training=False):
            if training and not self.fixed:
                d = self.decay
                self.lo.assign(d * self.lo + (1 - d) * ops.minimum(ops.min(x), 0.0))
                self.hi.assign(d * self.hi + (1 - d) * ops.maximum(ops.max(x), 0.0))
            return keras.quantizers.fake_quant_with_min_max_vars(x, self.lo, self.hi, num_bits=8)

    class FusedQuant(keras.layers.Layer):
        """A conv / depthwise / dense with its batch norm folded in and its kernel fake-quantized (symmetric,
        narrow range, per output channel or per tensor), then its fused activation: the converter's int8 op. While
        training with `batch_stats` set, the quantized conv's output is normalized by the batch's statistics."""

        def __init__(self, chain, per_tensor: bool, source=None, batch_stats=None, **kw):
            super().__init__(**kw)
            self.batch_stats = batch_stats  # the run's flag (`.value`, a bool variable): the batch's statistics
            self.kernel_layer, self.source = chain[0], source  # source: the RangeQuant whose grid the input is on
            self.bn = next((c for c in chain[1:] if type(c).__name__ == "BatchNormalization"), None)
            acts = [c for c in chain[1:] if type(c).__name__ != "BatchNormalization"]
            own = _activation_name(self.kernel_layer)
            self.act = _activation_name(acts[0]) if acts else (own if own in FUSED_ACTIVATIONS else "linear")
            self.per_tensor = per_tensor

        def _folded(self):
            k = self.kernel_layer
            kind = type(k).__name__
            w = k.kernel  # DepthwiseConv2D too: (h, w, in, multiplier)
            b = k.bias if getattr(k, "use_bias", False) else None
            shape = tuple(w.shape)
            out_shape = (shape[0], shape[1], shape[2] * shape[3]) if kind == "DepthwiseConv2D" else shape
            w = ops.reshape(w, out_shape)
            if self.bn is not None:
                bn = self.bn
                s = self._fold_scale()
                beta = bn.beta if bn.beta is not None else 0.0
                w = w * s
                b = (b if b is not None else 0.0) - bn.moving_mean
                b = b * s + beta
            m = ops.max(ops.abs(w)) if self.per_tensor else ops.max(ops.abs(w), axis=tuple(range(len(out_shape) - 1)))
            m = ops.stop_gradient(ops.maximum(m, 1e-8))
            wq = keras.quantizers.fake_quant_with_min_max_vars(w, -m, m, num_bits=8, narrow_range=True,
                                                               axis=None if self.per_tensor else -1)
            # the bias: int32 on the grid of input scale x weight scale (no source: an input on no simulated grid,
            # which `simulate` does not build, as every value it makes is quantized or keeps its input's grid)
            if b is not None and self.source is not None:
                span = ops.maximum(self.source.hi - self.source.lo, 1e-8)  # a dead input's (0, 0) start: no NaN
                step = ops.stop_gradient(span / 255.0 * m / 127.0)
                b = b + ops.stop_gradient(ops.round(b / step) * step - b)
            return ops.reshape(wq, shape), b

        def call(self, x, training=False):
            k = self.kernel_layer
            kind = type(k).__name__
            w, b = self._folded()
            if kind == "Dense":
                y = ops.matmul(x, w)
            elif kind == "Conv2D":
                y = ops.conv(x, w, strides=k.strides, padding=k.padding, dilation_rate=k.dilation_rate)
            else:
                y = ops.depthwise_conv(x, w, strides=k.strides, padding=k.padding, dilation_rate=k.dilation_rate)
            if training and self.bn is not None and self.batch_stats is not None:
                from edgecnn import _tf  # tf.cond: only the branch taken updates the moving statistics

                folded = y + b if b is not None else y
                z = _tf.tf().cond(self.batch_stats.value, lambda: self._batch_norm(y), lambda: folded)
                return _fused(self.act, z)
            if b is not None:
                y = y + b
            return _fused(self.act, y)

        def _fold_scale(self):
            """gamma / sqrt(moving variance + epsilon): what folding the batch norm multiplies the kernel by."""
            bn = self.bn
            s = ops.rsqrt(bn.moving_variance + bn.epsilon)
            return s * bn.gamma if bn.gamma is not None else s

        def _batch_norm(self, y):
            """The folded kernel's output un-scaled (the conv's own, with its quantized weights) and normalized by the
            batch's statistics, as the float model trains (the moving statistics updated on the way)."""
            bn, k = self.bn, self.kernel_layer
            s = self._fold_scale()
            # a gamma of 0 folds to a kernel of 0 (the channel is its beta either way): 0 / 0 would put NaN in the
            # moving statistics (PyTorch's ConvBn had it: pytorch/pytorch#77434)
            y = y / ops.where(ops.equal(s, 0.0), 1.0, s)
            if getattr(k, "use_bias", False):
                y = y + k.bias
            return bn(y, training=True)

    class TiedQuant(keras.layers.Layer):
        """Fake-quantizes onto another RangeQuant's grid, without tracking a range: an op the converter gives its
        input's scale (average pooling) rounds its result onto that grid."""

        def __init__(self, source, **kw):
            super().__init__(**kw)
            self.source = source

        def compute_output_shape(self, shape):
            return shape

        def call(self, x):
            return keras.quantizers.fake_quant_with_min_max_vars(x, self.source.lo, self.source.hi, num_bits=8)

    return RangeQuant, FusedQuant, TiedQuant


def outputs(model, x: np.ndarray, names=None, batch: int = 32):
    """{name: its outputs over `x`} of every operation of the float model (`names`: only these), with `NAME.linear`
    for a kernel layer's output before its own softmax/sigmoid (an op of its own); batch by batch, as a generator."""
    import keras

    ops = [l for l in _all_layers(model) if type(l).__name__ != "InputLayer"]
    own = [l for l in ops if type(l).__name__ in KERNEL_KINDS and _activation_name(l) not in FUSED_ACTIVATIONS]
    outs, keys = [], []
    for l in ops:
        if names is not None and l.name not in names:
            continue
        try:
            outs.append(l.output)
            keys.append(l.name)
        except (AttributeError, ValueError):  # a layer called more than once: no single output
            continue
    own = [l for l in own if names is None or l.name + LINEAR in names]
    for l in own:  # its input, to compute its linear output below
        outs.append(l.input)
        keys.append(l.name + LINEAR)
    probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, outs)
    for i in range(0, len(x), batch):
        vals = probe(x[i:i + batch], training=False)
        vals = dict(zip(keys, vals if isinstance(vals, (list, tuple)) else [vals]))
        for l in own:
            vals[l.name + LINEAR] = _linear(l, vals[l.name + LINEAR])
        yield {n: keras.ops.convert_to_numpy(v) for n, v in vals.items()}


def zero_dead_inputs(model, x: np.ndarray, batch: int = 32) -> dict[str, int]:
    """Per-tensor QAT starts as per-tensor post-training int8 does (`edgecnn/convert/dead_inputs.py`, which says why):
    the weights of each Conv2D / DepthwiseConv2D / Dense that read an input channel which is 0 on every image of `x`
    are set to 0, in `model`'s own variables. Their gradient is 0 (they read zeros), so they stay 0, and the per-tensor
    weight step the simulation trains with is the one the live channels need. {layer name: channels zeroed}."""
    import keras

    layers = [l for l in _all_layers(model) if type(l).__name__ in KERNEL_KINDS]
    probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, [l.input for l in layers])
    peak = [None] * len(layers)
    for i in range(0, len(x), batch):
        vals = probe(x[i:i + batch], training=False)
        for k, v in enumerate(vals if isinstance(vals, (list, tuple)) else [vals]):
            v = np.abs(keras.ops.convert_to_numpy(v)).reshape(-1, v.shape[-1]).max(axis=0)
            peak[k] = v if peak[k] is None else np.maximum(peak[k], v)
    zeroed = {}
    for layer, p in zip(layers, peak):
        kernel = layer.kernel
        dead = p == 0
        if kernel.shape[-2] != len(p) or not dead.any():  # a grouped conv reads its channels otherwise
            continue
        w = keras.ops.convert_to_numpy(kernel)
        w[..., dead, :] = 0.0  # the input-channel axis of a Conv2D, DepthwiseConv2D and Dense kernel
        kernel.assign(w)
        zeroed[layer.name] = int(dead.sum())
    return zeroed


def _float_ranges(model, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """{name: (min, max)} of every operation's output over `x` in the float model: where the ranges start."""
    lo, hi = {}, {}
    for vals in outputs(model, x):
        for n, v in vals.items():
            lo[n], hi[n] = min(lo.get(n, np.inf), float(v.min())), max(hi.get(n, -np.inf), float(v.max()))
    return {n: (min(lo[n], 0.0), max(hi[n], 0.0)) for n in lo}


def _linear(layer, x):
    """`layer`'s output on `x` without its own activation."""
    act = layer.activation
    layer.activation = lambda v: v
    try:
        return layer(x)
    finally:
        layer.activation = act


def simulate(model, spec, x_start: np.ndarray | None, per_tensor: bool = False, learned: dict | None = None):
    """(the QAT model, its range layers {name: (layer, [the float layers whose output it quantizes])}): `model` re-wired
    through the int8 simulation; it shares `model`'s layers and variables, so training it trains `model`."""
    import keras

    check(model)
    RangeQuant, FusedQuant, TiedQuant = _make_layers()
    readers = _readers(model)
    fused = chains(model, readers)
    inner = {id(c): chain for chain in fused.values() for c in chain[1:]}
    start = ({layer: (row["min"], row["max"]) for row in learned["ranges"] for layer in row["layers"]}
             if learned is not None else _float_ranges(model, x_start[:CALIBRATION_IMAGES]))
    quants: dict[str, tuple] = {}  # range layer name -> (the layer, the float layers whose output it quantizes)
    lo_in, hi_in = int8_grid(spec.offset, spec.offset + 255.0 * spec.scale)

    made: dict[int, object] = {}  # id(a simulated tensor) -> the RangeQuant whose grid it is on

    def rq(owner_names, lo, hi, fixed=False):
        name = "qat_" + owner_names[-1].replace(LINEAR, "_linear").strip("<>")
        layer = RangeQuant(lo, hi, fixed=fixed, name=name)
        quants[name] = (layer, list(owner_names))

        def apply(x):
            y = layer(x)
            made[id(y)] = layer
            return y
        return apply

    def call(layer, *args, **kwargs):
        kind = type(layer).__name__
        if id(layer) in inner:  # fused into the op its chain starts with: that op's output passes through
            return args[0]
        if id(layer) in fused:
            chain = fused[id(layer)]
            names = [c.name for c in chain]
            y = FusedQuant(chain, per_tensor, made.get(id(args[0])), batch_stats,
                           name=f"qat_fused_{layer.name}")(args[0])
            own = _activation_name(layer)
            if len(chain) == 1 and own not in FUSED_ACTIVATIONS:  # softmax, sigmoid, hard swish: their own op
                y = rq([layer.name + LINEAR], *start[layer.name + LINEAR])(y)
                y = keras.activations.get(own)(y)
                if own in FIXED_RANGE:
                    return rq(names, *FIXED_RANGE[own], fixed=True)(y)
            return rq(names, *start[chain[-1].name])(y)
        if kind == "BatchNormalization":  # one not after a kernel: a multiply and add of its moving statistics,
            # which stay frozen (after a kernel, one trains with the batch's: BN_FREEZE_EPOCHS)
            kwargs["training"] = False
        out = layer(*args, **kwargs)
        if kind in SAME_SCALE or (kind in ELEMENTWISE and _fused_relu(layer, readers) is not None):
            made[id(out)] = made.get(id(args[0]))
            return out  # the grid kept, or the ReLU after it is part of its op: quantized once, after the ReLU
        if kind in TIED_SCALE and made.get(id(args[0])) is not None:  # rounded onto its input's grid
            out = TiedQuant(made[id(args[0])], name=f"qat_tied_{layer.name}")(out)
            made[id(out)] = made.get(id(args[0]))
            return out
        act = _activation_name(layer) if kind in ("Activation", "Softmax") else RAW_ACTIVATIONS.get(kind)
        if act in FIXED_RANGE:
            return rq([layer.name], *FIXED_RANGE[act], fixed=True)(out)
        return rq([layer.name], *start.get(layer.name, (0.0, 1.0)))(out)

    batch_stats = _Switch(keras.Variable(True, dtype="bool", trainable=False, name="qat_batch_stats"))
    inp = keras.Input(model.input_shape[1:])
    x = rq([INPUT], lo_in, hi_in, fixed=True)(inp)
    out = model._run_through_graph(x, call_fn=call)  # Keras' own graph walk (what clone_model runs), flat
    sim = keras.Model(inp, _single(out), name=f"{model.name}_qat")
    # a task's losses are keyed by the model's output names: the simulation's are them, in the model's order (dict
    # outputs would be flattened in sorted order, and a detector's (heat map, size, offset) targets trained the
    # wrong heads: mAP 0.57 -> 0.00 after 2 epochs)
    sim.output_names = list(model.output_names)
    sim._edgecnn_batch_stats = batch_stats  # the run's switch (callbacks), which every FusedQuant reads
    return sim, quants


class _Switch:
    """The run's batch-statistics flag (`value`, a bool variable held out of Keras' tracking: not a weight of the
    model), and the count of the epochs that began with it off."""

    def __init__(self, value):
        self.value, self.frozen_epochs = value, 0


def callbacks(sim, epochs: int) -> list:
    """The run's callbacks for the simulation: batch statistics for all but the last BN_FREEZE_EPOCHS epochs."""
    import keras

    flag = getattr(sim, "_edgecnn_batch_stats", None)
    if flag is None:
        return []
    batch_epochs = epochs - BN_FREEZE_EPOCHS if epochs > 1 else epochs

    class FreezeBatchNorm(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            flag.value.assign(epoch < batch_epochs)
            flag.frozen_epochs += epoch >= batch_epochs

    return [FreezeBatchNorm()]


def frozen_epochs(sim) -> int:
    """How many epochs of the run trained `sim` with its batch norms' statistics frozen and folded."""
    flag = getattr(sim, "_edgecnn_batch_stats", None)
    return flag.frozen_epochs if flag is not None else 0


def _single(out):
    return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out


def learned(quants: dict[str, tuple], per_tensor: bool) -> dict:
    """What `edgecnn_qat.json` holds: each range with the float layers whose output it is, and the granularity."""
    rows = []
    for layer, owners in quants.values():
        rows.append({"layers": owners, "min": float(layer.lo.numpy()), "max": float(layer.hi.numpy()),
                     "fixed": bool(layer.fixed)})
    return {"format": FORMAT, "weights": "per-tensor" if per_tensor else "per-channel", "ranges": rows}
