"""`-O backbone_weights=FILE`: any zoo model (a detector, a segmenter, a classifier) starts from the weights of a saved
classifier of the same family.

keras.applications names a backbone's layers the same whatever the head and the input size (MobileNetV2's
`block_16_project` in a 1000-class classifier, in a dog-breed classifier saved by someone else and in edgecnn's
CenterNet and SSDLite), and a convolution's weights do not depend on the input size. So the weights go across by
layer name, wherever the two layers' weight shapes agree (a different width `alpha` disagrees everywhere: nothing
is copied, which is one line). Nested models (a backbone saved as one layer, as `keras.applications` under a new
head is) are opened.

A grayscale model (one input channel: Fashion-MNIST, X-rays) takes an RGB backbone's first convolution summed over
its three input channels (`gray_kernel`, timm's `adapt_input_conv`): a gray image seen by the summed kernel gives
exactly what the RGB kernel gives on that image repeated in R, G and B (when the three channels are normalised
alike, as MobileNet's (x - 127.5) / 127.5 is; not ImageNet's per-channel mean and std), so the pretrained features
start where they were (checked in tests/test_transfer.py to float rounding).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

KNOB = "backbone_weights"
MIN_COPIED = 4  # fewer layers in common is not a backbone of this family (auto-named layers can match by chance)


def leaf_layers(model) -> list:
    """Every layer of `model`, nested models opened, in the order Keras keeps them (inputs first)."""
    return leaves(model.layers)


def leaves(layers: list) -> list:
    """`layers` with each nested model among them opened into its own layers, in order."""
    out = []
    for layer in layers:
        out.extend(leaves(layer.layers) if hasattr(layer, "layers") and layer.layers else [layer])
    return out


def _auto_named(layer) -> bool:
    """A name Keras made from the class (`conv2d_3`): such names match across unrelated models by chance."""
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", type(layer).__name__)).lower()
    return re.fullmatch(rf"{re.escape(snake)}(_\d+)?", layer.name) is not None


def copy_backbone(model, source: str | Path) -> dict:
    """Set every weighted layer of `model` that a layer of the saved model `source` matches by name and weight
    shapes; `{"from", "layers", "params"}` copied. One line when the file does not load, when a layer of a given
    (not Keras-made) name has other shapes there (another width: a partial copy would be silent), or when
    fewer than MIN_COPIED layers match."""
    from edgecnn.modelfile import load_model

    if not Path(source).is_file():
        raise EdgecnnError(f"{source}: backbone weights file does not exist")
    src, _ = load_model(str(source))
    by_name = {x.name: x for x in leaf_layers(src) if x.weights}
    copied, params = [], 0
    for layer in leaf_layers(model):
        other = by_name.get(layer.name)
        if other is None or not layer.weights:
            continue
        theirs, ours = ([tuple(w.shape) for w in x.weights] for x in (other, layer))
        if theirs != ours:
            if _auto_named(layer):
                continue
            if not gray_kernel(theirs, ours):
                raise EdgecnnError(f"{source}: layer {layer.name} has weights {theirs} there, {ours} in "
                                   f"{model.name}: give a classifier of the same family and width (alpha)")
        weights = other.get_weights()
        if theirs != ours:  # an RGB first kernel under a gray input
            weights[0] = weights[0].sum(axis=2, keepdims=True)
        layer.set_weights(weights)
        copied.append(layer.name)
        params += sum(int(np.prod(w.shape)) for w in layer.weights)
    if len(copied) < MIN_COPIED:
        raise EdgecnnError(f"{source}: {len(copied)} of its layers match {model.name}'s by name and weight shape; "
                           f"give a classifier of the same family and width (alpha)")
    return {"from": str(source), "layers": len(copied), "params": params}


def gray_kernel(theirs: list[tuple], ours: list[tuple]) -> bool:
    """A convolution kernel (kh, kw, 3, out) there and (kh, kw, 1, out) here, every other weight alike: the first
    convolution of an RGB backbone under a grayscale input."""
    return (len(theirs) == len(ours) and len(ours[0]) == 4 and ours[0][2] == 1 and theirs[0][2] == 3
            and theirs[0][:2] + theirs[0][3:] == ours[0][:2] + ours[0][3:] and theirs[1:] == ours[1:])
