"""More compact families edge users ask for: SqueezeNet 1.1 and DS-CNN (MLPerf Tiny's keyword-spotting net)."""

from __future__ import annotations

from edgecnn.zoo.classic import _conv_bn
from edgecnn.zoo.registry import register


def _fire(x, squeeze, expand):
    from keras import layers

    s = layers.Conv2D(squeeze, 1, activation="relu")(x)
    e1 = layers.Conv2D(expand, 1, activation="relu")(s)
    e3 = layers.Conv2D(expand, 3, padding="same", activation="relu")(s)
    return layers.Concatenate()([e1, e3])


@register(default_input=(224, 224, 3), min_size=32, family="squeezenet")
def squeezenet(input_shape=(224, 224, 3), num_classes=1000, dropout=0.5):
    """SqueezeNet 1.1 (Iandola 2016): fire modules (1x1 squeeze, 1x1+3x3 expand); ~1.2M params, ~350M MACs."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = layers.Conv2D(64, 3, strides=2, activation="relu")(inp)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = _fire(_fire(x, 16, 64), 16, 64)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = _fire(_fire(x, 32, 128), 32, 128)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for sq, ex in ((48, 192), (48, 192), (64, 256), (64, 256)):
        x = _fire(x, sq, ex)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv2D(num_classes, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inp, out, name="squeezenet")


@register(default_input=(49, 10, 1), min_size=4, family="ds_cnn")
def ds_cnn(input_shape=(49, 10, 1), num_classes=12, filters=64, blocks=4):
    """DS-CNN (Zhang 2017, "Hello Edge"; MLPerf Tiny KWS): strided stem conv, then depthwise-separable blocks.

    Made for 49x10 MFCC maps; works on any small image (e.g. 28x28 Fashion-MNIST) as a tiny MCU-sized CNN.
    """
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = _conv_bn(inp, filters, (10, 4) if input_shape[:2] == (49, 10) else 3, strides=2)
    for _ in range(blocks):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = _conv_bn(x, filters, 1)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="ds_cnn")
