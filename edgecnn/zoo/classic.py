"""The classic CNNs of the primer, sized for the edge: LeNet-5, an AlexNet-style and a VGG-style small net.

keras.applications has none of these at edge size, so they are written here, each one function.
"""

from __future__ import annotations

from edgecnn.zoo.registry import register


def _conv_bn(x, filters, kernel, strides=1, activation="relu", padding="same", name=None):
    import keras
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=None if name is None else name + "_bn")(x)
    return layers.Activation(activation)(x) if activation else x


@register(default_input=(32, 32, 1), min_size=16, family="classic")
def lenet5(input_shape=(32, 32, 1), num_classes=10, activation="relu", pooling="max"):
    """LeNet-5 as the primer describes it: conv 6@5x5, max-pool, conv 16@5x5, max-pool, dense 120-84; ~83k params.

    `pooling="avg"` gives LeCun's (1998) subsampling layers instead (average pooling). Max pooling is the default
    because it is what the primer describes and what int8 runs best: int8 MAX_POOL_2D is delegated by XNNPACK,
    while int8 AVERAGE_POOL_2D is not (convert's `avg_pool` rewrite turns it into a depthwise convolution).
    The first conv pads ("same"), so 28x28 inputs work too (the original, unpadded, has ~60k at 32x32).
    """
    import keras
    from keras import layers

    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
    inp = keras.Input(input_shape)
    x = layers.Conv2D(6, 5, padding="same", activation=activation, name="c1")(inp)
    x = pool(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation=activation, name="c3")(x)
    x = pool(2, name="s4")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation=activation, name="c5")(x)
    x = layers.Dense(84, activation=activation, name="f6")(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="lenet5")


@register(default_input=(64, 64, 3), min_size=32, family="classic")
def alexnet_small(input_shape=(64, 64, 3), num_classes=10, width=1.0, dropout=0.5):
    """AlexNet-style (Krizhevsky 2012) at edge size: 5 convs (large first kernel), 3 max-pools, two dense layers.

    `width` scales every layer; at 64x64 and width 1 it is ~2.4M params, far from the original's 61M.
    """
    import keras
    from keras import layers

    def w(n):
        return max(8, int(n * width))

    inp = keras.Input(input_shape)
    x = _conv_bn(inp, w(48), 5, strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = _conv_bn(x, w(128), 5)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = _conv_bn(x, w(192), 3)
    x = _conv_bn(x, w(192), 3)
    x = _conv_bn(x, w(128), 3)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(w(512), activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(w(512), activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="alexnet_small")


@register(default_input=(32, 32, 3), min_size=16, family="classic")
def vgg_small(input_shape=(32, 32, 3), num_classes=10, width=1.0, blocks=3, dropout=0.3):
    """VGG-style (Simonyan 2014): `blocks` stages of two 3x3 convs + max-pool, doubling width; BN for int8."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = inp
    for b in range(blocks):
        filters = max(8, int(32 * width * 2**b))
        x = _conv_bn(x, filters, 3)
        x = _conv_bn(x, filters, 3)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(max(16, int(128 * width)), activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="vgg_small")
