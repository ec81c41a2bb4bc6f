"""The model zoo: `build(name, input_shape, num_classes, **knobs)`, `list_models(pattern)`, MAC/param counts."""

from edgecnn.zoo.registry import build, get_entry, list_models, register

__all__ = ["build", "get_entry", "list_models", "register"]
