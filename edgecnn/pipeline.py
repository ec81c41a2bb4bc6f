"""`edgecnn run`: the whole path on a recipe — train, then (as stages land) convert, compare, bench, report.

Each step's output is cached by a content key (the step's settings plus the hashes of its input files), kept in
`RUN_DIR/manifest.json`; re-running skips steps whose inputs have not changed, so users can iterate cheaply.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from edgecnn.atomic import write_text_atomic
from edgecnn.errors import EdgecnnError
from edgecnn.recipe import Recipe

MANIFEST_VERSION = 1


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RunDir:
    """A run directory with its manifest of cached step results."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"
        self.steps: dict[str, dict] = {}
        if self.manifest_path.exists():
            try:
                data = json.loads(self.manifest_path.read_text())
            except (json.JSONDecodeError, OSError):
                raise EdgecnnError(f"{self.manifest_path}: run manifest is corrupt; delete it to start afresh") \
                    from None
            if data.get("version") == MANIFEST_VERSION:
                self.steps = data.get("steps", {})
            # a manifest from another version is ignored: its steps are recomputed, its files overwritten

    def save(self) -> None:
        write_text_atomic(self.manifest_path, json.dumps({"version": MANIFEST_VERSION, "steps": self.steps},
                                                         indent=2, default=str))

    def step(self, name: str, settings: dict, inputs: list[Path], outputs: list[Path],
             fn: Callable[[], dict]) -> tuple[dict, bool]:
        """Run `fn` unless a cached result with the same key exists and its outputs are intact; (result, cached)."""
        key_src = json.dumps({"settings": settings, "inputs": [file_hash(p) for p in inputs]}, sort_keys=True,
                             default=str)
        key = hashlib.sha256(key_src.encode()).hexdigest()
        cached = self.steps.get(name)
        if cached and cached.get("key") == key and all(
                Path(p).exists() and file_hash(p) == h for p, h in cached.get("outputs", {}).items()):
            return cached["result"], True
        result = fn()
        self.steps[name] = {"key": key, "result": result, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "outputs": {str(p): file_hash(p) for p in outputs}}
        self.save()
        return result, False


def run_pipeline(recipe: Recipe, out_dir: str | Path, log: Callable[[str], None] = print,
                 progress: bool = True) -> dict:
    """Run every stage of `recipe` into `out_dir`; returns a summary with one row per model (and precision)."""
    from edgecnn.train.trainer import TrainConfig, train

    run = RunDir(out_dir)
    rows = []
    for m in recipe.models:
        model_path = run.root / f"{m.key}.keras"
        cfg = TrainConfig(m.name, recipe.data, m.epochs, m.batch_size, m.learning_rate, 0.1, recipe.seed,
                          m.input_size, dict(m.options), max_train_samples=recipe.max_train_samples)
        result, cached = run.step(f"train/{m.key}", cfg.__dict__, [], [model_path],
                                  lambda cfg=cfg, p=model_path: train(cfg, p, progress))
        log(f"train {m.key}: test top-1 {result['test_top1']:.4f}" + (" (cached)" if cached else ""))
        rows.append({"model": m.key, "precision": "keras", "path": str(model_path), "top1": result["test_top1"],
                     "params": result["params"], "macs": result["macs"], "cached": cached})
    return {"recipe": recipe.name, "run_dir": str(run.root), "rows": rows}
