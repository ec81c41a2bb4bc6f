"""Residual networks: the CIFAR-style family (ResNet-8 is MLPerf Tiny's image model) and keras' ResNet50."""

from __future__ import annotations

from edgecnn.zoo.classic import _conv_bn
from edgecnn.zoo.heads import finish
from edgecnn.zoo.registry import register


def _basic_block(x, filters, strides):
    from keras import layers

    y = _conv_bn(x, filters, 3, strides=strides)
    y = _conv_bn(y, filters, 3, activation=None)
    if strides != 1 or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(layers.Add()([x, y]))


def resnet_cifar(input_shape, num_classes, blocks_per_stage, width, name):
    """He et al. 2016 CIFAR ResNet: stem conv, three stages (16/32/64 x width), global pool, dense."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = _conv_bn(inp, int(16 * width), 3)
    for stage in range(3):
        filters = int(16 * width * 2**stage)
        for b in range(blocks_per_stage):
            x = _basic_block(x, filters, strides=2 if (stage > 0 and b == 0) else 1)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name=name)


@register(default_input=(32, 32, 3), min_size=8, family="resnet")
def resnet8(input_shape=(32, 32, 3), num_classes=10, width=1.0):
    """ResNet-8, the MLPerf Tiny image-classification model (~78k params, ~12.5M MACs at 32x32x3)."""
    return resnet_cifar(input_shape, num_classes, 1, width, "resnet8")


@register(default_input=(32, 32, 3), min_size=8, family="resnet")
def resnet20(input_shape=(32, 32, 3), num_classes=10, width=1.0):
    """ResNet-20 (He 2016, CIFAR): three blocks per stage, ~0.27M params."""
    return resnet_cifar(input_shape, num_classes, 3, width, "resnet20")


@register(default_input=(224, 224, 3), min_size=32, family="resnet")
def resnet50(input_shape=(224, 224, 3), num_classes=1000, weights=None):
    """ResNet-50 from keras.applications (25.6M params, ~4.1G MACs): the large reference point, not edge-sized."""
    from keras.applications import ResNet50

    return finish(ResNet50, input_shape, num_classes, weights, name="resnet50")
