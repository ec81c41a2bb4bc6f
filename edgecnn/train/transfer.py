"""Transfer learning: a pretrained classifier's backbone under a new head, trained in two phases.

What edge users start from (Coral's retraining tutorials, Model Maker's `image_classifier`, the Keras transfer-learning
guide): a backbone trained on ImageNet, a new head for their classes, the backbone frozen while the head learns, then
optionally its top blocks unfrozen at a lower learning rate.

| piece            | what it is                                                                                       |
|------------------|--------------------------------------------------------------------------------------------------|
| the cut          | the feature vector the old head read: the last global pooling or Flatten of a feature map among  |
|                  | the model's top-level layers, a pooling before a Flatten (found), or the layer `--cut-at` names |
|                  | (a feature map gets a global average pool)                                                       |
| the new head     | dropout 0.2 and a softmax Dense of the data's classes (Model Maker's head)                       |
| phase 1 "head"   | every backbone layer frozen (`trainable=False`: Keras 3 runs a frozen BatchNormalization in      |
|                  | inference mode, so its moving statistics stay the pretrained ones); the head trains             |
| phase 2          | `--fine-tune-blocks N`: the top N blocks unfrozen, batch norm still frozen (the Keras guide's     |
| "fine-tune"      | advice: a few hundred photos would re-estimate its statistics badly), at `--fine-tune-lr`         |
| blocks           | named units where the layer names carry them (`BLOCK_NAMES`: keras.applications' spelling),     |
|                  | else one block per convolution (with its batch norm and activation)                              |

Both phases stop early on the validation loss (`PATIENCE` epochs, best weights kept) when there is a validation
split, and train with flips and shifts unless `--augment` says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgecnn.errors import EdgecnnError
from edgecnn.zoo.backbone import leaf_layers, leaves

HEAD_DROPOUT = 0.2  # Model Maker's image_classifier default
PATIENCE = 3  # epochs without a better validation loss before a phase stops
DEFAULT_AUGMENT = ("flip", "shift")
FINE_TUNE_LR_RATIO = 0.1  # phase 2's learning rate, when not given: phase 1's times this
HEAD_NAMES = ("transfer_pool", "transfer_dropout", "transfer_logits")

# keras.applications' block spelling: a layer name -> the block it belongs to (the first group of the match)
BLOCK_NAMES = (
    re.compile(r"^(conv\d+_block\d+)_"),  # ResNet: conv4_block2_1_conv
    re.compile(r"^(block_\d+)_"),  # MobileNetV2: block_16_project_BN
    re.compile(r"^(block\d+[a-z])_"),  # EfficientNet: block2a_expand_conv
    re.compile(r"^(expanded_conv_\d+)_"),  # MobileNetV3: expanded_conv_3_depthwise
    re.compile(r"^conv_(?:dw|pw|pad)_(\d+)"),  # MobileNetV1: conv_dw_13, conv_pw_13_bn
)
KERNEL_LAYERS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense")


@dataclass
class Phase:
    name: str  # "head" or "fine-tune"
    epochs: int
    learning_rate: float
    trainable: frozenset  # ids of the leaf layers that train in this phase


def _rank(tensor) -> int:
    return len(tensor.shape)


def find_cut(model, name: str | None, where: str):
    """The top-level layer whose output is the backbone's features (see the table); one line when there is none."""
    import keras

    if name:
        names = [layer.name for layer in model.layers]
        if name not in names:
            raise EdgecnnError(f"{where}: --cut-at {name}: no such top-level layer; the last ones: "
                               f"{', '.join(names[-6:])}")
        layer = model.get_layer(name)
        if _rank(layer.output) not in (2, 4):
            raise EdgecnnError(f"{where}: --cut-at {name}: its output {tuple(layer.output.shape)} is neither a "
                               f"feature vector nor a feature map")
        return layer
    pools = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    found = ([x for x in model.layers if isinstance(x, pools)]  # a global pooling first: after it, a Flatten may
             or [x for x in model.layers if isinstance(x, keras.layers.Flatten) and _rank(x.input) == 4])  # be the
    if found:  # old head's (MobileNetV3: pool, conv, logits conv, Flatten)
        return found[-1]
    raise EdgecnnError(f"{where}: no feature layer to cut at (a global pooling or a Flatten of a feature map) for a "
                       f"new head; name one with --cut-at LAYER")


def with_new_head(model, cut, num_classes: int):
    """`model` up to `cut`, then the new head of `num_classes` softmax outputs (the backbone's layers shared)."""
    import keras

    x = cut.output
    if _rank(x) == 4:
        x = keras.layers.GlobalAveragePooling2D(name=HEAD_NAMES[0])(x)
    x = keras.layers.Dropout(HEAD_DROPOUT, name=HEAD_NAMES[1])(x)
    out = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_NAMES[2])(x)
    return keras.Model(model.inputs, out, name=f"{model.name}_transfer")


def split(model, cut_name: str) -> tuple[list, list]:
    """(backbone, head) leaf layers: up to and including the top-level layer `cut_name`, and after it."""
    names = [layer.name for layer in model.layers]
    at = names.index(cut_name) + 1
    return leaves(model.layers[:at]), leaves(model.layers[at:])


def blocks(layers: list) -> list[tuple[str, list]]:
    """The backbone's blocks, bottom to top, as (name, layers); layers before the first weighted one are left out."""
    out: list[list] = []  # [name, layers, named by BLOCK_NAMES]
    for layer in layers:
        key = next((m.group(1) for p in BLOCK_NAMES if (m := p.match(layer.name))), None)
        if key is not None:
            key = f"conv_{key}" if key.isdigit() else key
            if not out or out[-1][0] != key:
                out.append([key, [], True])
        elif type(layer).__name__ in KERNEL_LAYERS and (not out or out[-1][2] or _has_kernel(out[-1][1])):
            out.append([layer.name, [], False])
        if out:
            out[-1][1].append(layer)
    return [(name, members) for name, members, _ in out]


def _has_kernel(layers) -> bool:
    return any(type(x).__name__ in KERNEL_LAYERS for x in layers)


def phases(cfg, backbone: list, head: list, where: str) -> list[Phase]:
    """Phase 1 (head only, or everything with `freeze=False`), then phase 2 when `fine_tune_blocks` > 0."""
    import keras

    train_all = frozenset(id(x) for x in backbone + head)
    if not cfg.freeze:
        return [Phase("all", cfg.epochs, cfg.learning_rate, train_all)]
    out = [Phase("head", cfg.epochs, cfg.learning_rate, frozenset(id(x) for x in head))]
    n = cfg.fine_tune_blocks
    if not n:
        return out
    units = blocks(backbone)
    if n < 0 or n > len(units):
        raise EdgecnnError(f"{where}: --fine-tune-blocks {n}: the backbone has {len(units)} blocks "
                           f"({units[0][0]} ... {units[-1][0]}); give 1 to {len(units)}" if units else
                           f"{where}: --fine-tune-blocks {n}: the backbone has no block with weights")
    top = [x for _, layers in units[-n:] for x in layers if not isinstance(x, keras.layers.BatchNormalization)]
    lr = cfg.fine_tune_lr if cfg.fine_tune_lr is not None else cfg.learning_rate * FINE_TUNE_LR_RATIO
    out.append(Phase("fine-tune", cfg.fine_tune_epochs or cfg.epochs, lr,
                     frozenset(id(x) for x in head + top)))
    return out


def set_trainable(model, phase: Phase) -> None:
    """Exactly the phase's layers train (every leaf layer set; nested models left trainable so theirs count)."""
    for layer in model._flatten_layers(include_self=False):
        if hasattr(layer, "layers") and layer.layers:
            layer.trainable = True
    for layer in leaf_layers(model):
        layer.trainable = id(layer) in phase.trainable

