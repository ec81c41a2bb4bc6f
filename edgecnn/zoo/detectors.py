"""Detectors: an anchor-free CenterNet-style head (Zhou et al. 2019, "Objects as Points") on a MobileNet V1 or V2
backbone.

An object is the peak of its class's heatmap at its centre; two small maps at the same place say how big it is and
where exactly in the cell the centre lies. No anchors to tune, no box regression against priors, and the head is
three 1x1 convolutions on one feature map, so the whole network is convolutions, adds and a bilinear resize: it
quantizes to integer-only int8 as a classifier does.

Outputs (three separate tensors, so each int8 output keeps a range that fits its meaning; one concatenated tensor
would share one scale between scores 0..1 and sizes of several cells and round the scores away):

| output    | shape                    | activation | meaning                                                        |
|-----------|--------------------------|------------|----------------------------------------------------------------|
| `heatmap` | (H/s, W/s, num_classes)  | sigmoid    | score that a cell holds the centre of an object of that class  |
| `size`    | (H/s, W/s, 2)            | ReLU       | box width, height in cells (pixels / stride s)                 |
| `offset`  | (H/s, W/s, 2)            | sigmoid    | centre x, y inside its cell, 0..1                              |

Boxes come out of `edgecnn.tasks.detection.postprocess.decode_centernet` (3x3 peak search, top-k, class-wise NMS) in float, in
edgecnn's code, not in the graph: TFLite's own detection post-processing op is float-only and would break an
integer-only model; the targets the head is trained on come from `edgecnn.train.targets.encode`, its inverse.
"""

from __future__ import annotations

from edgecnn.errors import EdgecnnError
from edgecnn.zoo.heads import load_weights
from edgecnn.zoo.registry import register

# the last layer of each MobileNetV2 stage at that stride (keras.applications names)
_MOBILENET_V2_LEVELS = {4: "block_2_add", 8: "block_5_add", 16: "block_12_add"}
_MOBILENET_V1_LEVELS = {4: "conv_pw_3_relu", 8: "conv_pw_5_relu", 16: "conv_pw_11_relu"}
HEATMAP_PRIOR = 0.1  # initial heatmap score: the focal loss starts from "few centres" and trains stably


def centernet_head(model) -> dict:
    """The head description saved in a CenterNet detector's spec (the stride follows from the output shape)."""
    return {"kind": "centernet"}


def _check(name, input_shape, stride):
    if stride not in (4, 8):
        raise EdgecnnError(f"{name}: stride must be 4 or 8, got {stride}")
    if input_shape[0] % 16 or input_shape[1] % 16:
        raise EdgecnnError(f"{name}: input {input_shape[0]}x{input_shape[1]} must be a multiple of 16 on each side "
                           "(the coarsest feature is at stride 16)")


def _centernet(base, levels: dict, name: str, num_classes, stride, head_channels, weights):
    """The CenterNet head on `base`'s feature maps `levels` ({stride: layer name}, 4, 8 and 16): a stride-16
    lateral upsampled (bilinear) and added down to `stride`, a depthwise 3x3 + 1x1 block, then the three 1x1 outputs."""
    import keras
    import numpy as np

    L = keras.layers

    def conv_bn(x, ch, name, kernel=1):
        x = L.Conv2D(ch, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        return L.ReLU(6.0, name=f"{name}_relu")(x)

    x = conv_bn(base.get_layer(levels[16]).output, head_channels, "lateral16")
    s = 16
    while s > stride:
        s //= 2
        # bilinear resize, not UpSampling2D: the converter lowers UpSampling2D to TILE and nearest resizing to
        # RESIZE_NEAREST_NEIGHBOR, which XNNPACK leaves to the CPU (3 partitions); RESIZE_BILINEAR it takes whole
        x = L.Resizing(int(x.shape[1]) * 2, int(x.shape[2]) * 2, interpolation="bilinear", name=f"up{s}")(x)
        x = L.Add(name=f"merge{s}")([x, conv_bn(base.get_layer(levels[s]).output, head_channels, f"lateral{s}")])
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="head_dw")(x)
    x = L.BatchNormalization(name="head_dw_bn")(x)
    x = L.ReLU(6.0, name="head_dw_relu")(x)
    x = conv_bn(x, head_channels, "head_pw")
    prior = float(-np.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))
    heat = L.Conv2D(num_classes, 1, bias_initializer=keras.initializers.Constant(prior), name="heatmap_logits")(x)
    heat = L.Activation("sigmoid", name="heatmap")(heat)
    size = L.Conv2D(2, 1, name="size_linear")(x)
    size = L.ReLU(name="size")(size)
    offset = L.Conv2D(2, 1, name="offset_logits")(x)
    offset = L.Activation("sigmoid", name="offset")(offset)
    return load_weights(keras.Model(base.input, [heat, size, offset], name=name), weights)


@register(default_input=(128, 128, 3), min_size=32, family="centernet", input_range=(-1.0, 1.0), task="detection",
          head=centernet_head)
def centernet_mobilenet_v1(input_shape=(128, 128, 3), num_classes=10, alpha=0.25, stride=8, head_channels=64,
                           weights=None):
    """CenterNet head on MobileNet V1: the fast one to train from scratch (about 2.7x MobileNetV2's step speed
    on a CPU at 128 px, alpha 0.25 vs 0.35), maps at `stride` 4 or 8 with the stride-16 feature added in.

    `alpha` scales the backbone width; `stride`, `head_channels` and `weights` as in `centernet_mobilenet_v2`.
    """
    from keras.applications import MobileNet

    _check("centernet_mobilenet_v1", input_shape, stride)
    base = MobileNet(input_shape=input_shape, include_top=False, alpha=alpha,
                     weights="imagenet" if weights == "imagenet" else None)
    return _centernet(base, _MOBILENET_V1_LEVELS, f"centernet_mobilenet_v1_{alpha:g}_s{stride}", num_classes, stride,
                      head_channels, weights)


@register(default_input=(128, 128, 3), min_size=32, family="centernet", input_range=(-1.0, 1.0), task="detection",
          head=centernet_head)
def centernet_mobilenet_v2(input_shape=(128, 128, 3), num_classes=10, alpha=0.35, stride=8, head_channels=64,
                           weights=None):
    """CenterNet head on MobileNetV2: heatmap/size/offset maps at `stride` 4 or 8, a stride-16 feature added in.

    `alpha` scales the backbone width (MACs ~ alpha^2); `stride` 8 suits objects of 16+ px (a 128 px input gives a
    16x16 grid), 4 finds smaller, closer objects at ~2x the head's cost; `head_channels` is the width of the
    shared head (the depthwise 3x3 + 1x1 block before the three 1x1 outputs). `weights`: None (random), "imagenet"
    (backbone only, needs internet and 3 channels) or a .weights.h5 file of this model.
    """
    from keras.applications import MobileNetV2

    _check("centernet_mobilenet_v2", input_shape, stride)
    base = MobileNetV2(input_shape=input_shape, include_top=False, alpha=alpha,
                       weights="imagenet" if weights == "imagenet" else None)
    return _centernet(base, _MOBILENET_V2_LEVELS, f"centernet_mobilenet_v2_{alpha:g}_s{stride}", num_classes, stride,
                      head_channels, weights)
