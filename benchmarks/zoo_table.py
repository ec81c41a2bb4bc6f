"""The zoo: every model's task, default input, parameters and MACs, as `edgecnn models --json` counts them.

    .venv/bin/python benchmarks/zoo_table.py

Counted from each built graph (untrained, weights=None) at its default input with its default classes (1,000 at
224x224, 10 below; a segmenter's 11). Writes benchmarks/results/zoo_table.{json,md}, the table of docs/zoo.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Column, publish  # noqa: E402


def main() -> int:
    from edgecnn.api import models
    from edgecnn.zoo import get_entry, list_models

    rows = []
    for name in list_models("*"):
        entry = get_entry(name)
        classes = 1000 if entry.default_input[0] >= 224 else 11 if entry.task == "segmentation" else 10
        [row] = models(name, num_classes=classes)
        rows.append({**row, "input": "x".join(map(str, row["input_shape"])), "num_classes": classes})
    publish("zoo_table", [Column("name", "name"), Column("task", "task"), Column("input", "default input"),
                          Column("num_classes", "classes"), Column("params", "params", "{:,}"),
                          Column("macs", "MACs", "{:,}")], rows,
            notes=["untrained graphs (weights=None) at their default input and options; MACs counted from the graph"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
