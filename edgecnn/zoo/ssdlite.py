"""SSDLite (Sandler et al. 2018, "MobileNetV2", section 6.2; the SSD of Liu et al. 2016 with depthwise heads) on a
MobileNetV2 backbone.

Each feature level predicts, for every anchor of every cell, four box deltas and a score per class; each predictor
is a depthwise 3x3 + BN + ReLU6 and a 1x1 convolution (SSDLite's cheap replacement of SSD's dense 3x3). Anchors are
fixed boxes tiled on the grids (`edgecnn.tasks.detection.postprocess.anchors`: strides, sizes, aspect ratios); the head
description saved in the spec holds everything needed to regenerate them, so host and boards decode alike.

Outputs (two separate tensors: int8 gives each its own scale; deltas of a few units and scores in 0..1 in one
tensor would share one scale and round the scores away):

| output   | shape                  | activation | meaning                                                              |
|----------|------------------------|------------|----------------------------------------------------------------------|
| `boxes`  | (A, 4)                 | none       | deltas (dx, dy, dw, dh) / variances against each anchor [cx, cy, w, h] |
| `scores` | (A, num_classes)       | sigmoid    | score of each class for each anchor (no background column)           |

A = sum over levels of ceil(H/s) * ceil(W/s) * len(sizes) * len(aspect_ratios); rows are ordered level, row,
column, anchor, as `anchors` generates them. Per-level conv outputs are reshaped and concatenated in the graph
(integer-only int8 ops XNNPACK runs); decoding and NMS stay outside it (`decode_ssd`), and training targets
come from `edgecnn.train.ssd_targets`, their inverse.

Measured (128 px, alpha 0.35, 130k params, 18.0M MACs; scenes:digits, 2-core machine): `edgecnn train
ssdlite_mobilenet_v2 --data scenes:digits --epochs 12 --batch-size 16 --lr 2e-3 --augment flip` (8 min) reaches
mAP@.5 0.145 / mAP@[.5:.95] 0.089 in float and 0.144 / 0.088 as integer-only int8 (63 ops, one XNNPACK
partition); batch 64 for 16 epochs (10 min) reached 0.099. An FPN-lite top-down path (stride 16 upsampled into
stride 8) did worse at 16 epochs (0.088), and its UpSampling2D became TILE ops outside XNNPACK (3 partitions).
"""

from __future__ import annotations

import json

from edgecnn.errors import EdgecnnError
from edgecnn.zoo.heads import load_weights
from edgecnn.zoo.registry import register

# SSDLite's taps: the expansion (before the stride-2 depthwise) of the first block of the next stage, the widest
# tensor at that stride (keras.applications names; the original taps block_13_expand_relu at stride 16)
_TAPS = {8: "block_6_expand_relu", 16: "block_13_expand_relu", 32: "out_relu"}
VARIANCES = (0.1, 0.1, 0.2, 0.2)
SCORE_PRIOR = 0.01  # initial class score (RetinaNet's prior): the focal loss starts from "mostly background"


def anchor_sizes(levels: int, per_level: int, smallest: float, largest: float) -> list[list[float]]:
    """Anchor sides (pixels) per level: `levels * per_level` values spaced geometrically from smallest to largest."""
    n = levels * per_level
    sides = [smallest * (largest / smallest) ** (i / max(n - 1, 1)) for i in range(n)]
    return [[round(v, 2) for v in sides[k * per_level:(k + 1) * per_level]] for k in range(levels)]


def ssd_head(model) -> dict:
    """The head description saved in an SSDLite detector's spec (kept on the model by its builder)."""
    return json.loads(model.ssd_head_json)


@register(default_input=(128, 128, 3), min_size=32, family="ssd", input_range=(-1.0, 1.0), task="detection",
          head=ssd_head)
def ssdlite_mobilenet_v2(input_shape=(128, 128, 3), num_classes=10, alpha=0.35, strides=(8, 16),
                         smallest_anchor=16.0, largest_anchor=48.0, anchors_per_level=2,
                         aspect_ratios=(1.0, 0.5, 2.0), weights=None):
    """SSDLite on MobileNetV2: depthwise box/class predictors on the stride `strides` features, anchor boxes.

    `alpha` scales the backbone width (MACs ~ alpha^2); `strides` picks the feature levels among 8, 16, 32 (8 and
    16 suit 16-64 px objects in a 128 px input; add 32 for objects near the image size); each level gets
    `anchors_per_level` sides spaced geometrically from `smallest_anchor` to `largest_anchor` pixels over all
    levels, each at every `aspect_ratios` (width/height), so a cell holds anchors_per_level x len(aspect_ratios)
    anchors. Any input size works (grids are ceil(side / stride)). `weights`: None (random), "imagenet" (backbone
    only, needs internet and 3 channels) or a .weights.h5 file of this model.
    """
    import keras
    import numpy as np
    from keras.applications import MobileNetV2

    from edgecnn.tasks.detection.postprocess import anchors

    strides = [int(s) for s in strides]
    if not strides or sorted(set(strides)) != strides or not set(strides) <= set(_TAPS):
        raise EdgecnnError(f"ssdlite_mobilenet_v2: strides must be increasing values among 8, 16, 32, got {strides}")
    if not 0 < smallest_anchor <= largest_anchor or anchors_per_level < 1 or not aspect_ratios \
            or min(aspect_ratios) <= 0:
        raise EdgecnnError("ssdlite_mobilenet_v2: need 0 < smallest_anchor <= largest_anchor, anchors_per_level "
                           ">= 1 and positive aspect_ratios")
    head = {"kind": "ssd", "scores": "sigmoid", "variances": list(VARIANCES),
            "anchors": {"strides": strides,
                        "sizes": anchor_sizes(len(strides), int(anchors_per_level), float(smallest_anchor),
                                              float(largest_anchor)),
                        "aspect_ratios": [float(r) for r in aspect_ratios], "offset": 0.5}}
    per_cell = int(anchors_per_level) * len(aspect_ratios)
    base = MobileNetV2(input_shape=input_shape, include_top=False, alpha=alpha,
                       weights="imagenet" if weights == "imagenet" else None)
    L = keras.layers
    prior = float(-np.log((1 - SCORE_PRIOR) / SCORE_PRIOR))

    def predictor(x, channels, name, bias=0.0):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
        x = L.BatchNormalization(name=f"{name}_dw_bn")(x)
        x = L.ReLU(6.0, name=f"{name}_dw_relu")(x)
        x = L.Conv2D(channels, 1, bias_initializer=keras.initializers.Constant(bias), name=f"{name}_pw")(x)
        return L.Reshape((-1, channels // per_cell), name=f"{name}_flat")(x)

    boxes, scores = [], []
    for s in strides:
        feature = base.get_layer(_TAPS[s]).output
        boxes.append(predictor(feature, per_cell * 4, f"box{s}"))
        scores.append(predictor(feature, per_cell * num_classes, f"cls{s}", prior))
    if len(strides) > 1:
        boxes = L.Concatenate(axis=1, name="boxes")(boxes)
        scores = L.Concatenate(axis=1, name="score_logits")(scores)
    else:
        boxes = L.Identity(name="boxes")(boxes[0])
        scores = scores[0]
    scores = L.Activation("sigmoid", name="scores")(scores)
    model = keras.Model(base.input, [boxes, scores],
                        name=f"ssdlite_mobilenet_v2_{alpha:g}_s{'_'.join(map(str, strides))}")
    expected = len(anchors(head["anchors"], input_shape[:2]))
    if boxes.shape[1] != expected:  # cannot happen with MobileNetV2's ceil-halving; a guard for new backbones
        raise EdgecnnError(f"ssdlite_mobilenet_v2: {boxes.shape[1]} predictions but {expected} anchors")
    model.ssd_head_json = json.dumps(head)
    return load_weights(model, weights)
