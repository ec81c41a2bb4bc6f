"""Rows for `edgecnn models`: name, family, task, default input, params and MACs (counted from the built graph)."""

from __future__ import annotations


def model_rows(pattern: str = "*", num_classes: int = 1000, input_shape=None) -> list[dict]:
    from edgecnn.zoo import build, get_entry, list_models
    from edgecnn.zoo.counting import summarize

    rows = []
    for name in list_models(pattern):
        entry = get_entry(name)
        shape = tuple(input_shape) if input_shape else entry.default_input
        model = build(name, shape, num_classes)
        rows.append({"name": name, "family": entry.family, "task": entry.task, "input_shape": list(shape),
                     "num_classes": num_classes,
                     **summarize(model), "options": {k: v for k, v in entry.knobs().items()},
                     "description": entry.doc})
    return rows
