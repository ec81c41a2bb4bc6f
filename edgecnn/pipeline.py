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

from edgecnn.atomic import sha256_file as file_hash
from edgecnn.atomic import write_text_atomic
from edgecnn.errors import EdgecnnError
from edgecnn.recipe import Recipe

MANIFEST_VERSION = 1
SUMMARY_SCHEMA = "edgecnn.run/1"  # RUN_DIR/summary.json, what `edgecnn report` reads



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


def _train_step(run: RunDir, recipe: Recipe, m, progress: bool) -> tuple[dict, bool, Path]:
    from edgecnn.train.trainer import TrainConfig, train

    path = run.root / f"{m.key}.keras"
    cfg = TrainConfig(m.name, recipe.data, m.epochs, m.batch_size, m.learning_rate, 0.1, recipe.seed,
                      m.input_size, dict(m.options), max_train_samples=recipe.max_train_samples)
    result, cached = run.step(f"train/{m.key}", cfg.__dict__, [], [path], lambda: train(cfg, path, progress))
    return result, cached, path


def _convert_step(run: RunDir, recipe: Recipe, key: str, keras_path: Path, mode: str) -> tuple[dict, bool, Path]:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest

    out = run.root / f"{key}_{mode}.tflite"
    req = ConversionRequest(mode, calibration=recipe.calibration or recipe.data,
                            num_calibration=recipe.calibration_samples, seed=recipe.seed)
    return (*run.step(f"convert/{key}/{mode}", req.to_dict(), [keras_path], [out],
                      lambda: convert_model(keras_path, out, req)), out)


def _eval_step(run: RunDir, recipe: Recipe, key: str, model_path: Path) -> dict:
    from edgecnn.evaluate.accuracy import evaluate

    result, _ = run.step(f"eval/{model_path.name}", {"data": recipe.data, "limit": recipe.eval_samples},
                         [model_path], [], lambda: evaluate(model_path, recipe.data, recipe.eval_samples))
    return result


def _compare_step(run: RunDir, recipe: Recipe, keras_path: Path, tflite: Path) -> dict:
    from edgecnn.evaluate.compare import compare

    result, _ = run.step(f"compare/{tflite.name}", {"data": recipe.data, "limit": recipe.eval_samples},
                         [keras_path, tflite], [],
                         lambda: compare(keras_path, tflite, recipe.data, recipe.eval_samples, top_layers=5))
    return result


def _bench_step(run: RunDir, recipe: Recipe, tflite: Path, device: str) -> dict:
    """Bench on one device and record the run in the run directory's results database (failures included)."""
    from edgecnn.devices.profiles import load_profile
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.bench.run import bench_model
    from edgecnn.store.db import open_db

    profile = load_profile(device)
    settings = BenchSettings(threads=profile.threads, warmup=10, runs=recipe.bench_runs, seed=recipe.seed)

    def measure():
        doc = bench_model(str(tflite), profile, settings)
        with open_db(run.root / "results.sqlite") as db:
            doc["run_id"] = db.record(doc)
        if doc.get("interrupted"):
            raise KeyboardInterrupt
        return doc

    result, _ = run.step(f"bench/{tflite.name}/{device}", settings.to_dict(), [tflite], [], measure)
    if result.get("status") != "ok":  # a failed measurement is reported, and retried on the next run
        run.steps.pop(f"bench/{tflite.name}/{device}", None)
        run.save()
    return result


def run_pipeline(recipe: Recipe, out_dir: str | Path, log: Callable[[str], None] = print,
                 progress: bool = True) -> dict:
    """Run every stage of `recipe` into `out_dir`: train -> convert (each precision) -> evaluate -> bench (each
    device) -> results database; returns the summary, one row per model x precision x device."""
    from edgecnn.devices.profiles import load_profile
    from edgecnn.convert.request import ConversionRequest

    for device in recipe.devices:  # an unknown device or a bad profile stops the run before any work is done
        load_profile(device)
    for mode in recipe.quant:
        ConversionRequest(mode)
    run = RunDir(out_dir)
    rows = []
    total = len(recipe.models) * (1 + len(recipe.quant) * (1 + len(recipe.devices))) + 1
    done = [0]
    plain_log = log

    def log(msg: str) -> None:  # every finished stage is numbered, so a long run shows how far it is
        done[0] += 1
        plain_log(f"[{done[0]}/{total}] {msg}")

    for m in recipe.models:
        trained, cached, keras_path = _train_step(run, recipe, m, progress)
        log(f"train {m.key}: test top-1 {trained['test_top1']:.4f}" + (" (cached)" if cached else ""))
        float_top1 = None
        for mode in recipe.quant:
            conv, cached, tflite = _convert_step(run, recipe, m.key, keras_path, mode)
            acc = _eval_step(run, recipe, m.key, tflite)
            if mode == "float32" or float_top1 is None:
                float_top1 = _eval_step(run, recipe, m.key, keras_path)["top1"]
            log(f"convert {m.key} {mode}: {conv['size_bytes']:,} B, top-1 {acc['top1']:.4f}"
                + (" (cached)" if cached else ""))
            cmp = _compare_step(run, recipe, keras_path, tflite) if mode != "float32" else None
            for device in recipe.devices:
                b = _bench_step(run, recipe, tflite, device)
                steady = (b.get("timing") or {}).get("steady") or {}
                rows.append({"model": m.key, "precision": mode, "device": device, "path": str(tflite),
                             "size_bytes": conv["size_bytes"], "size_ratio": conv["size_ratio_to_float32"],
                             "top1": acc["top1"], "float_top1": float_top1,
                             "drop_points": 100 * (float_top1 - acc["top1"]),
                             "p50_ms": steady.get("p50_ms"), "p90_ms": steady.get("p90_ms"),
                             "peak_rss_mb": b.get("peak_rss_mb"),
                             "partitions": (b.get("delegation") or {}).get("partitions"),
                             "ops_outside": (b.get("delegation") or {}).get("ops_outside"),
                             "emulated": bool((b.get("device") or {}).get("emulated")),
                             "bench_status": b.get("status"), "bench_error": b.get("error"),
                             "bench_run_id": b.get("run_id"), "agreement": cmp["agreement"] if cmp else None,
                             "per_class": cmp["per_class"] if cmp else None,
                             "worst_layers": cmp["worst_layers"] if cmp else None,
                             "timing": (b.get("timing") or {}).get("steady"),
                             "params": trained["params"], "macs": trained["macs"]})
                log(f"bench {m.key} {mode} on {device}: " + (f"p50 {steady['p50_ms']:.3f} ms" if steady
                                                              else f"FAILED: {b.get('error')}"))
    summary = {"schema": SUMMARY_SCHEMA, "recipe": recipe.name, "data": recipe.data, "run_dir": str(run.root),
               "database": str(run.root / "results.sqlite"), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "rows": rows}
    write_text_atomic(run.root / "summary.json", json.dumps(summary, indent=2, default=str))
    from edgecnn.report import make_report

    for name in ("report.html", "report.md"):
        make_report(run.root, run.root / name)
    summary["report"] = str(run.root / "report.html")
    log(f"report: {summary['report']} (and report.md)")
    return summary
