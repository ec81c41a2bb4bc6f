"""MobileNet V1, V2, V3-Small and V3-Large: thin wrappers over `keras.applications` (no copy of their code).

What the wrappers add: any class count and channel count (1 or 3) with `weights=None`; ImageNet weights with a
new head when `num_classes != 1000`; a local weights file for users without internet; and V3's built-in
Rescaling turned off (`include_preprocessing=False`) so that edgecnn's preprocessing spec ([-1, 1]) is the one
place that scales pixels, at training, calibration and benchmark time alike.

Papers (224x224x3, 1000 classes): V1 1.0 569M MACs / 4.2M params (Howard 2017); V2 1.0 300M / 3.4M (Sandler
2018); V3-Large 1.0 219M / 5.4M and V3-Small 1.0 56M / 2.5M (Howard 2019).
"""

from __future__ import annotations

from edgecnn.zoo.heads import finish
from edgecnn.zoo.registry import register


@register(default_input=(224, 224, 3), min_size=32, family="mobilenet", input_range=(-1.0, 1.0))
def mobilenet_v1(input_shape=(224, 224, 3), num_classes=1000, alpha=1.0, depth_multiplier=1, dropout=1e-3,
                 weights=None):
    """MobileNet V1: depthwise-separable convs; `alpha` scales every layer's width (MACs and params ~ alpha^2)."""
    from keras.applications import MobileNet

    return finish(MobileNet, input_shape, num_classes, weights, alpha=alpha, depth_multiplier=depth_multiplier,
                  dropout=dropout, name=f"mobilenet_v1_{alpha:g}")


@register(default_input=(224, 224, 3), min_size=32, family="mobilenet", input_range=(-1.0, 1.0))
def mobilenet_v2(input_shape=(224, 224, 3), num_classes=1000, alpha=1.0, weights=None):
    """MobileNet V2: inverted residuals with linear bottlenecks; ReLU6 throughout, int8-friendly."""
    from keras.applications import MobileNetV2

    return finish(MobileNetV2, input_shape, num_classes, weights, alpha=alpha, name=f"mobilenet_v2_{alpha:g}")


@register(default_input=(224, 224, 3), min_size=32, family="mobilenet", input_range=(-1.0, 1.0))
def mobilenet_v3_small(input_shape=(224, 224, 3), num_classes=1000, alpha=1.0, minimalistic=False, dropout=0.2,
                       weights=None):
    """MobileNet V3-Small: squeeze-excite and hard-swish (`minimalistic=True` drops both: int8- and TPU-friendly)."""
    from keras.applications import MobileNetV3Small

    return finish(MobileNetV3Small, input_shape, num_classes, weights, alpha=alpha, minimalistic=minimalistic,
                  dropout_rate=dropout, include_preprocessing=False, name=f"mobilenet_v3_small_{alpha:g}")


@register(default_input=(224, 224, 3), min_size=32, family="mobilenet", input_range=(-1.0, 1.0))
def mobilenet_v3_large(input_shape=(224, 224, 3), num_classes=1000, alpha=1.0, minimalistic=False, dropout=0.2,
                       weights=None):
    """MobileNet V3-Large: the accuracy end of V3; hard-swish/SE blocks are where int8 loses accuracy."""
    from keras.applications import MobileNetV3Large

    return finish(MobileNetV3Large, input_shape, num_classes, weights, alpha=alpha, minimalistic=minimalistic,
                  dropout_rate=dropout, include_preprocessing=False, name=f"mobilenet_v3_large_{alpha:g}")
