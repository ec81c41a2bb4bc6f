"""Semantic segmentation: LR-ASPP on MobileNetV3 (Howard et al. 2019) and the mobile DeepLabV3 on MobileNetV2
(Chen et al. 2017, Sandler et al. 2018).

| model                        | backbone          | head                                                      |
|------------------------------|-------------------|-----------------------------------------------------------|
| `lraspp_mobilenet_v3_small`  | MobileNetV3-Small | LR-ASPP: 1x1 conv gated by a global-mean sigmoid, + OS-8  |
| `lraspp_mobilenet_v3_large`  | MobileNetV3-Large | the same, wider backbone                                  |
| `deeplabv3_mobilenet_v2`     | MobileNetV2       | image pooling + 1x1 conv, concatenated, 1x1 projection    |

Every model outputs one float tensor `logits` of shape (N, H, W, num_classes) at the input resolution (class 0 is
usually the background): no softmax and no ARG_MAX in the graph. The class of a pixel is the argmax of its logits,
taken by the caller in numpy (on the host or the board): ARG_MAX is not an Edge TPU op, and over (H, W, C) int8
logits the argmax is the same as over the dequantized ones.

Everything in the graph is a convolution, batch-norm (folded), ReLU / hard-swish / sigmoid, a global mean, an
element-wise add / multiply, a concatenation or a bilinear resize, so `edgecnn convert --quant int8` (with the
`hard_swish` rewrite pass for MobileNetV3, run by both `--target cpu` and `edgetpu`) gives one XNNPACK partition
with no op outside it, and the Edge TPU preflight maps every op (`tests/test_segmenters.py`):
- the global pools are `GlobalAveragePooling2D(keepdims=True)`, which converts to MEAN; a large AVERAGE_POOL_2D
  (mmseg's 49x49 LR-ASPP pool) is not taken by XNNPACK in int8 and may not map on the Edge TPU;
- every resize is `keras.layers.Resizing(..., interpolation="bilinear")` -> RESIZE_BILINEAR; UpSampling2D lowers
  to TILE or RESIZE_NEAREST_NEIGHBOR, which XNNPACK leaves to the CPU (see `edgecnn.zoo.detectors`); DeepLab's
  pooled branch goes back to the feature size the same way, a resize from 1x1 (exact: every output is the input).
What the preflight cannot tell: Keras' resize has half-pixel centres (RESIZE_BILINEAR version 3), which older
edgetpu_compiler releases (14, 15) reported as "Operation version not supported", and the compiler may keep a
resize on the CPU "depending on input/output size"; only a compile says.

Keras' MobileNets have no dilated (atrous) last stage, so the output stride 16 features are taken from the backbone
cut before its last stride-2 block: the expansion (1x1 conv + BN + activation) of that block, which still runs at
stride 16, the tap the MobileNetV2/V3 papers use for SSDLite. The rest of the backbone is not in the model.
Two LR-ASPP knobs go past the paper for small objects (seg-quick uses both): `output_stride=8` runs the stage
that began stride 16 at stride 8 (`_unstrided`), and `refine_channels` refines the logits at stride 4 from the
stride-4 feature (`_refine`).

| backbone          | stride 4 (refinement)              | stride 8 (low level)  | stride 16 (high level)              |
|-------------------|------------------------------------|-----------------------|-------------------------------------|
| MobileNetV3-Small | in `expanded_conv_1_depthwise_pad` | `expanded_conv_2_add` | in `expanded_conv_8_depthwise_pad`  |
| MobileNetV3-Large | in `expanded_conv_3_depthwise_pad` | `expanded_conv_5_add` | in `expanded_conv_12_depthwise_pad` |
| MobileNetV2       | -                                  | -                     | `block_13_expand_relu`              |

("in X_depthwise_pad": X's input, the expansion of a block that then strides by 2, still at the stride before it)

Input sizes must be multiples of 16 on each side, so that the stride-8 and stride-16 maps are exact.
"""

from __future__ import annotations

from edgecnn.errors import EdgecnnError
from edgecnn.zoo.heads import check_weights, load_weights
from edgecnn.zoo.registry import register

# (stride 8 layer, layer whose input is the stride-16 feature, layer whose input is the stride-4 feature) in
# keras.applications' MobileNetV3 (see the table); the block whose stride-2 depthwise conv begins stride 16
_MOBILENET_V3_TAPS = {
    "small": ("expanded_conv_2_add", "expanded_conv_8_depthwise_pad", "expanded_conv_1_depthwise_pad"),
    "large": ("expanded_conv_5_add", "expanded_conv_12_depthwise_pad", "expanded_conv_3_depthwise_pad")}
_MOBILENET_V3_STRIDE16 = {"small": "expanded_conv_3", "large": "expanded_conv_6"}
_MOBILENET_V2_OS16 = "block_13_expand_relu"


def _unstrided(base, block):
    """`base` (a keras MobileNetV3, its weights kept) with `block`'s stride-2 depthwise conv at stride 1: the
    blocks after it run at the stride before it (8 instead of 16), at 4x their MACs. Its explicit zero padding
    (for stride 2) becomes the conv's own "same" padding, which at stride 1 pads as the other blocks do.

    DeepLab's output stride 8 (Chen et al. 2017) without the atrous rates: what it buys here is small objects. A
    digit of 16-20 px is about one cell at stride 16; with the refinement above (32 channels) at stride 16, only
    27% of those digits got the right class by their pixels' majority, against 88% of those of 36 px and more.
    At stride 8 and alpha 0.5 (18.7M MACs against 15.5M at stride 16 and alpha 0.75), the same 7 epochs reached
    0.6671 mIoU against 0.6068, the wrong-digit share 0.1225 against 0.154 (the table in `_refine`). One run is a
    rough guide: at 8 epochs and the same seed, the experiment's own build of this architecture reached 0.6875
    and this builder 0.6699 in `edgecnn run seg-quick` (at 2174352, trained with cross-entropy alone)."""
    import keras

    def clone(layer):
        if layer.name == f"{block}_depthwise_pad":
            return keras.layers.Identity(name=layer.name)
        cfg = layer.get_config()
        if layer.name == f"{block}_depthwise":
            cfg.update(strides=(1, 1), padding="same")
        return layer.__class__.from_config(cfg)

    model = keras.models.clone_model(base, clone_function=clone)
    model.set_weights(base.get_weights())
    return model


def _check(name, input_shape, weights):
    if input_shape[0] % 16 or input_shape[1] % 16:
        raise EdgecnnError(f"{name}: input {input_shape[0]}x{input_shape[1]} must be a multiple of 16 on each side "
                           "(the coarsest feature is at stride 16)")
    check_weights(weights)


def _conv_bn_relu(x, channels, name):
    from keras import layers as L

    x = L.Conv2D(channels, 1, use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def _resize(x, height, width, name):
    """Bilinear resize to (height, width): RESIZE_BILINEAR in the .tflite, which XNNPACK and the Edge TPU take."""
    from keras import layers

    return layers.Resizing(height, width, interpolation="bilinear", name=name)(x)


def _refine(logits, feature, channels):
    """Stride-8 logits refined at stride 4: up-sampled (bilinear) and added to a residual computed from them and
    the stride-4 `feature` (concatenated; 1x1 conv to `channels` + BN + ReLU, 3x3 depthwise + BN + ReLU, 1x1 conv
    to the classes).

    The residual score-map correction of Peng et al. 2017's boundary refinement block, fed the stride-4 features
    as DeepLabV3+'s decoder is (Chen et al. 2018). The stride-8 logits stay the prediction (which class) and the
    branch moves boundaries. Measured on scenes:digits (LR-ASPP-Small, minimalistic, alpha 0.75, 7 epochs, batch
    32, lr 0.01, seed 0, test split; fg/bg IoU: digit pixels found as any digit; wrong digit: the share of those
    given another digit):

    | head                                                            | mIoU   | fg/bg IoU | wrong digit |
    |-----------------------------------------------------------------|--------|-----------|-------------|
    | the paper's (stride-8 logits)                                   | 0.5825 | 0.700     | 0.149       |
    | classified from decoder features at stride 4 (DeepLabV3+-like)  | 0.4862 | 0.799     | 0.324       |
    | this refinement, 32 channels                                    | 0.6068 | 0.745     | 0.154       |
    | this refinement, 64 channels                                    | 0.5624 | 0.772     | 0.219       |

    Classifying from the decoder's features found the digits' pixels best but took the wrong digit twice as often;
    the refinement keeps the paper's recognition and gains most of the localization.
    """
    from keras import layers as L

    up = _resize(logits, int(feature.shape[1]), int(feature.shape[2]), "refine_up")
    r = _conv_bn_relu(L.Concatenate(name="refine_concat")([up, feature]), channels, "refine_pw")
    r = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="refine_dw")(r)
    r = L.ReLU(name="refine_dw_relu")(L.BatchNormalization(name="refine_dw_bn")(r))
    r = L.Conv2D(int(logits.shape[-1]), 1, name="refine_classifier")(r)
    return L.Add(name="refine")([up, r])


def _lraspp(size, input_shape, num_classes, alpha, minimalistic, head_channels, refine_channels, output_stride,
            weights):
    """The LR-ASPP head (torchvision's `LRASPPHead`) on MobileNetV3-`size`'s stride-8 and stride-16 features."""
    import keras
    from keras.applications import MobileNetV3Large, MobileNetV3Small

    name = f"lraspp_mobilenet_v3_{size}"
    _check(name, input_shape, weights)
    if output_stride not in (8, 16):
        raise EdgecnnError(f"{name}: output_stride {output_stride}: use 16 (the paper's) or 8")
    if refine_channels < 0:
        raise EdgecnnError(f"{name}: refine_channels {refine_channels}: use 0 (no refinement) or more")
    app = MobileNetV3Small if size == "small" else MobileNetV3Large
    base = app(input_shape=input_shape, include_top=False, alpha=alpha, minimalistic=minimalistic,
               include_preprocessing=False, weights="imagenet" if weights == "imagenet" else None)
    if output_stride == 8:
        base = _unstrided(base, _MOBILENET_V3_STRIDE16[size])
    L = keras.layers
    low = base.get_layer(_MOBILENET_V3_TAPS[size][0]).output
    high = base.get_layer(_MOBILENET_V3_TAPS[size][1]).input
    cbr = _conv_bn_relu(high, head_channels, "aspp_cbr")
    scale = L.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(high)  # MEAN, not a big AVERAGE_POOL_2D
    scale = L.Conv2D(head_channels, 1, use_bias=False, name="aspp_scale_conv")(scale)
    scale = L.Activation("sigmoid", name="aspp_scale")(scale)
    x = L.Multiply(name="aspp_gate")([cbr, scale])
    if x.shape[1:3] != low.shape[1:3]:
        x = _resize(x, int(low.shape[1]), int(low.shape[2]), "aspp_up")
    x = L.Add(name="classifier")([L.Conv2D(num_classes, 1, name="low_classifier")(low),
                                  L.Conv2D(num_classes, 1, name="high_classifier")(x)])
    if refine_channels:
        x = _refine(x, base.get_layer(_MOBILENET_V3_TAPS[size][2]).input, refine_channels)
    out = _resize(x, input_shape[0], input_shape[1], "logits")
    return load_weights(keras.Model(base.input, out, name=f"{name}_{alpha:g}"), weights)


@register(default_input=(128, 128, 3), min_size=32, family="lraspp", input_range=(-1.0, 1.0), task="segmentation")
def lraspp_mobilenet_v3_small(input_shape=(128, 128, 3), num_classes=11, alpha=0.75, minimalistic=False,
                              head_channels=128, refine_channels=0, output_stride=16, weights=None):
    """LR-ASPP on MobileNetV3-Small: per-pixel class logits at the input resolution, the light end of the zoo.

    The head (Howard et al. 2019, torchvision `lraspp_mobilenet_v3_large`): on the stride-16 feature a 1x1 conv +
    BN + ReLU to `head_channels`, gated by sigmoid(1x1 conv(global mean)) of the same feature, upsampled
    (bilinear) to stride 8 and added to a 1x1 classifier of the stride-8 feature, then upsampled to the input.
    The stride-16 feature comes from the backbone cut before its last stride-2 block (no dilation in keras'
    MobileNetV3; see the module table): its last stage (31% of Small's backbone MACs, 22% of Large's) is not in
    the model.

    `alpha` scales the backbone width (MACs ~ alpha^2; keras' ImageNet weights exist for 0.75 and 1.0 only);
    `minimalistic=True` drops hard-swish and squeeze-excite (ReLU and 3x3 kernels: simpler int8, often faster on
    accelerators, a little less accurate); `head_channels` is the head's width (128 in the paper);
    `refine_channels` > 0 refines the head's stride-8 logits at stride 4 with a branch that wide (`_refine`; 0:
    the paper's head); `output_stride=8` runs the backbone's stride-16 stage at stride 8 (`_unstrided`: same
    weights, its MACs x4; 16: the paper's). `weights`: None (random), "imagenet" (backbone only, needs internet
    and 3 channels) or a .weights.h5 file of this model.
    """
    return _lraspp("small", input_shape, num_classes, alpha, minimalistic, head_channels, refine_channels,
                   output_stride, weights)


@register(default_input=(128, 128, 3), min_size=32, family="lraspp", input_range=(-1.0, 1.0), task="segmentation")
def lraspp_mobilenet_v3_large(input_shape=(128, 128, 3), num_classes=11, alpha=0.75, minimalistic=False,
                              head_channels=128, refine_channels=0, output_stride=16, weights=None):
    """LR-ASPP on MobileNetV3-Large: the paper's segmentation model (Cityscapes 72.4 mIoU float at 1.0, dilated).

    Knobs as in `lraspp_mobilenet_v3_small`; about 3.5x its MACs at the same `alpha` and input.
    """
    return _lraspp("large", input_shape, num_classes, alpha, minimalistic, head_channels, refine_channels,
                   output_stride, weights)


@register(default_input=(128, 128, 3), min_size=32, family="deeplab", input_range=(-1.0, 1.0), task="segmentation")
def deeplabv3_mobilenet_v2(input_shape=(128, 128, 3), num_classes=11, alpha=0.5, head_channels=128, dropout=0.1,
                           weights=None):
    """Mobile DeepLabV3 on MobileNetV2 (tensorflow/models deeplab, output stride 16): image pooling + 1x1, no ASPP.

    On the stride-16 feature two branches of `head_channels`: a 1x1 conv + BN + ReLU, and image pooling (global
    mean -> 1x1 conv + BN + ReLU -> bilinear resize from 1x1 back to the feature size); concatenated, a 1x1
    projection + BN + ReLU, dropout, a 1x1 classifier, then bilinear up to the input. The stride-16 feature is
    `block_13_expand_relu` (the backbone cut before its last stride-2 block, 26% of its MACs; keras' MobileNetV2
    has no dilation).

    `alpha` is the depth multiplier (published: VOC 70.2 / 75.3 mIoU float, 69.7 / 74.3 int8 with QAT at 0.5 / 1.0
    and 513 px); `head_channels` the head's width (256 in the paper); `dropout` before the classifier (training
    only). `weights`: None (random), "imagenet" (backbone only, needs internet and 3 channels) or a .weights.h5
    file of this model.
    """
    import keras
    from keras.applications import MobileNetV2

    _check("deeplabv3_mobilenet_v2", input_shape, weights)
    L = keras.layers
    base = MobileNetV2(input_shape=input_shape, include_top=False, alpha=alpha,
                       weights="imagenet" if weights == "imagenet" else None)
    feat = base.get_layer(_MOBILENET_V2_OS16).output
    h, w = int(feat.shape[1]), int(feat.shape[2])
    pooled = L.GlobalAveragePooling2D(keepdims=True, name="image_pool")(feat)  # MEAN
    pooled = _resize(_conv_bn_relu(pooled, head_channels, "image_pool"), h, w, "image_pool_up")
    x = L.Concatenate(name="aspp_concat")([pooled, _conv_bn_relu(feat, head_channels, "aspp0")])
    x = _conv_bn_relu(x, head_channels, "concat_projection")
    x = L.Dropout(dropout, name="dropout")(x)
    x = L.Conv2D(num_classes, 1, name="classifier")(x)
    out = _resize(x, input_shape[0], input_shape[1], "logits")
    return load_weights(keras.Model(base.input, out, name=f"deeplabv3_mobilenet_v2_{alpha:g}"), weights)
