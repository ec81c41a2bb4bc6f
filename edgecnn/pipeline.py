"""`edgecnn run`: the whole path on a recipe — train, convert (each precision, for each target the devices need),
evaluate, compare, bench (each device), results database, report.

Each device profile names its target (`edgecnn.targets`: a CPU board, a Coral Edge TPU, a microcontroller); a model
is converted once per (precision, target) the recipe's devices need, and each device benches the model converted
for its target (a Coral device gets the Edge TPU-ready one). A precision a device's target does not take (float32
on an Edge TPU) is skipped for that device, with the request check's line in the summary's `skipped`.

A run is planned as a list of `Step`s (name, settings, input and output files, the function that computes it, the
steps it waits for, the resources it asks for) and handed to an executor: `LocalExecutor` (the default) runs them
one after another in this process; `edgecnn.executor.ray_cluster.RayExecutor` runs each as a Ray task. Both call the
same step functions (`train_step`, `convert_step`, ...), and only the driver — this process — writes the run
directory: output files atomically, then the step's cache entry, then (bench) the results database row.

Each step's output is cached by a content key (the step's settings plus the hashes of its input files), kept in
`RUN_DIR/manifest.json`; re-running skips steps whose inputs have not changed, so users can iterate cheaply.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgecnn import tasks
from edgecnn.atomic import sha256_file as file_hash
from edgecnn.atomic import write_bytes_atomic, write_text_atomic
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

    @staticmethod
    def key(settings: dict, inputs) -> str:
        """The cache key of a step: its settings and the content of its input files."""
        key_src = json.dumps({"settings": settings, "inputs": [file_hash(p) for p in inputs]}, sort_keys=True,
                             default=str)
        return hashlib.sha256(key_src.encode()).hexdigest()

    def lookup(self, name: str, key: str) -> dict | None:
        """The cached result of step `name` when its key matches and its outputs are intact, else None."""
        cached = self.steps.get(name)
        if cached and cached.get("key") == key and all(
                Path(p).exists() and file_hash(p) == h for p, h in cached.get("outputs", {}).items()):
            return cached["result"]
        return None

    def record(self, name: str, key: str, result: dict, outputs, span: tuple[float, float] | None = None) -> None:
        """Keep `result` as step `name`'s cache entry (outputs hashed) and save the manifest atomically."""
        self.steps[name] = {"key": key, "result": result, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "outputs": {str(p): file_hash(p) for p in outputs}}
        if span is not None:  # when the step ran (epoch seconds): where it ran may differ, the clock is the host's
            self.steps[name]["started"], self.steps[name]["ended"] = span
        self.save()

    def forget(self, name: str) -> None:
        if self.steps.pop(name, None) is not None:
            self.save()


@dataclass
class Step:
    """One step of a run. `fn(root, *args)` computes it, with every file named relative to `root` (the run
    directory here; a Ray worker passes its own staging folder), so any executor can run it anywhere.

    `inputs`/`outputs` are run-directory paths (inputs key the cache; outputs are what the step writes), `after`
    the steps it waits for, `resources` what a Ray task asks for. In the driver, `finish` turns a fresh result into
    the one kept (the bench records its database row there), `keep` says whether it is cached, and `done` is told
    of every result, fresh or cached.
    """

    name: str
    settings: dict
    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]
    fn: Callable[..., dict]
    args: tuple
    after: tuple[str, ...] = ()
    resources: dict = field(default_factory=lambda: {"num_cpus": 1})
    finish: Callable[[dict], dict] | None = None
    keep: Callable[[dict], bool] = lambda result: True
    done: Callable[[dict, bool], None] | None = None


class LocalExecutor:
    """The embedded default: every step in this process, one after another, in the order planned."""

    def run_steps(self, run: RunDir, steps: list[Step]) -> dict[str, dict]:
        results = {}
        for s in steps:
            key = run.key(s.settings, s.inputs)
            result = run.lookup(s.name, key)
            cached = result is not None
            if not cached:
                started = time.time()
                result = s.fn(run.root, *s.args)
                result = finish_step(run, s, key, result, (started, time.time()))
            results[s.name] = result
            if s.done:
                s.done(result, cached)
        return results


def finish_step(run: RunDir, s: Step, key: str, result: dict, span: tuple[float, float]) -> dict:
    """The driver's side of a freshly computed step (any executor): `finish`, then cache it or drop a stale entry."""
    if s.finish:
        result = s.finish(result)
    if s.keep(result):
        run.record(s.name, key, result, s.outputs, span)
    else:
        run.forget(s.name)
    return result


# --- the step functions: each runs wherever its executor puts it, on files named relative to `root` -------------


def train_step(root: Path, out: str, cfg, progress: bool) -> dict:
    """Train per `cfg`; a model to start from is a file of the run (`_start_from`), read from where `root` is."""
    from dataclasses import replace

    from edgecnn.train.trainer import train

    if (root / cfg.model).is_file():
        cfg = replace(cfg, model=str(root / cfg.model))
    return train(cfg, root / out, progress)


def _start_from(run: RunDir, m) -> Path | None:
    """A recipe model's `start_from` file, copied into the run as `<key>.start<suffix>` (when its content changed):
    any executor's worker gets it, and the train step's cache key covers its content."""
    if m.start_from is None:
        return None
    src = Path(m.start_from)
    dest = run.root / f"{m.key}.start{src.suffix}"
    if not dest.exists() or file_hash(dest) != file_hash(src):
        write_bytes_atomic(dest, src.read_bytes())
    return dest


def convert_step(root: Path, model: str, out: str, req) -> dict:
    from edgecnn.convert.converter import convert_model

    return convert_model(root / model, root / out, req)


def eval_step(root: Path, model: str, data: str, limit: int | None) -> dict:
    from edgecnn.evaluate.accuracy import evaluate

    return evaluate(root / model, data, limit, examples=EXAMPLES)


EXAMPLES = 4  # a detector's eval keeps its boxes on this many test images, for the report's picture


def _accuracy_text(r: dict) -> str:
    """An eval result in a few words, as its task says it (top-1, or a detector's mAP)."""
    from edgecnn import tasks

    return tasks.get(r.get("task")).describe(r)


def _train_text(r: dict) -> str:
    """A training result in a few words, as its task says it (a classifier's test top-1, a detector's test loss)."""
    from edgecnn import tasks

    return tasks.known(r.get("task")).train_text(r, r.get("output"), r.get("data"))


def compare_step(root: Path, float_model: str, quant_model: str, data: str, limit: int | None) -> dict:
    from edgecnn.evaluate.compare import compare

    return compare(root / float_model, root / quant_model, data, limit, top_layers=5)


def bench_step(root: Path, model: str, profile, settings) -> dict:
    from edgecnn.bench.run import bench_model

    return bench_model(str(root / model), profile, settings)


def board_resource(profile) -> str:
    """The Ray custom resource that stands for the board `profile` benches on (capacity 1: one bench at a time).

    An SSH board is its address (two profiles for one board share it); the local CPU is `board:local-cpu`, held by
    the driver's machine; anything else is its profile name.
    """
    if profile.kind == "local":
        return "board:local-cpu"
    if profile.ssh is not None:
        return f"board:{profile.ssh.host}:{profile.ssh.port}"
    return f"board:{profile.name}"


def boards(recipe: Recipe) -> tuple[str, ...]:
    """The board resources a recipe's benches hold (one per distinct board)."""
    from edgecnn.devices.profiles import load_profile

    return tuple(dict.fromkeys(board_resource(load_profile(d)) for d in recipe.devices))


def artifact(key: str, mode: str, target: str) -> tuple[str, str]:
    """The convert step of model `key` for (mode, target) and the file it writes: `convert/KEY/MODE`, `KEY_MODE.tflite`
    for the default target (as before targets were an axis: old runs stay cached), `convert/KEY/MODE/TARGET`,
    `KEY_TARGET_MODE.tflite` for another (the file name still ends in its precision, which the report reads)."""
    from edgecnn.targets import DEFAULT

    if target == DEFAULT:
        return f"convert/{key}/{mode}", f"{key}_{mode}.tflite"
    return f"convert/{key}/{mode}/{target}", f"{key}_{target}_{mode}.tflite"


def conversions(recipe: Recipe, profiles: dict) -> tuple[dict[tuple[str, str], list[str]], list[dict]]:
    """What `recipe` converts: {(mode, target): the devices that bench it}, one entry per pair a device needs and
    its target takes (recipe order), and the skipped (device, precision) pairs with the target's one-line reason.
    A device whose target takes none of the recipe's precisions is an error: it would have no row at all."""
    from edgecnn.targets import TARGETS

    pairs: dict[tuple[str, str], list[str]] = {}
    skipped = []
    for mode in recipe.quant:
        for device, profile in profiles.items():
            try:
                TARGETS[profile.target].check_mode(mode)
            except EdgecnnError as exc:
                skipped.append({"device": device, "precision": mode, "target": profile.target, "reason": str(exc)})
                continue
            pairs.setdefault((mode, profile.target), []).append(device)
    for device, profile in profiles.items():
        if not any(device in devices for devices in pairs.values()):
            raise EdgecnnError(f"recipe {recipe.name}: device {device} runs target {profile.target}, which takes "
                               f"none of quant: {', '.join(recipe.quant)} "
                               f"({next(s['reason'] for s in skipped if s['device'] == device)})")
    return pairs, skipped


def plan(run: RunDir, recipe: Recipe, progress: bool, log: Callable[[str], None]) -> list[Step]:
    """The steps of `recipe`, in the order the local executor runs them; `log` hears of train, convert and bench."""
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.data.spec import InputScaling
    from edgecnn.devices.profiles import load_profile
    from edgecnn.targets import DEFAULT
    from edgecnn.train.trainer import TrainConfig

    profiles = {d: load_profile(d) for d in recipe.devices}
    pairs, _ = conversions(recipe, profiles)
    eval_settings = {"data": recipe.data, "limit": recipe.eval_samples}
    seen: dict[str, tuple[dict, bool]] = {}  # step name -> (result, cached), as results arrive

    def tell(name: str, message: Callable[[dict, bool], str | None] = lambda r, cached: None):
        def done(result: dict, cached: bool) -> None:
            seen[name] = (result, cached)
            text = message(result, cached)
            if text:
                log(text)
        return done

    def add(name, settings, inputs, outputs, fn, args, after=(), message=None, **kw) -> str:
        steps.append(Step(name, settings, tuple(inputs), tuple(outputs), fn, args, tuple(after),
                          done=tell(name, *([message] if message else [])), **kw))
        return name

    def variant(key: str, keras: Path, train: str, float_keras: Path, pairs: dict) -> None:
        """The steps after training model `key` (`keras`): its eval, and per (precision, target) its conversion,
        eval, comparison with `float_keras` and benches."""
        add(f"eval/{keras.name}", eval_settings, [keras], [], eval_step, (keras.name, recipe.data,
                                                                          recipe.eval_samples), [train])
        for (mode, target), devices in pairs.items():  # once per (precision, target) the devices need
            step, name = artifact(key, mode, target)
            tflite = run.root / name
            req = ConversionRequest(mode, calibration=recipe.calibration or recipe.data,
                                    num_calibration=recipe.calibration_samples, seed=recipe.seed, target=target)
            what = mode if target == DEFAULT else f"{mode} for {target}"
            convert = add(step, req.to_dict(), [keras], [tflite], convert_step, (keras.name, tflite.name, req), [train])

            def converted(r, cached, k=key, what=what, convert=convert):
                conv, conv_cached = seen[convert]
                return (f"convert {k} {what}: {conv['size_bytes']:,} B, {_accuracy_text(r)}"
                        + (" (cached)" if conv_cached else ""))

            add(f"eval/{tflite.name}", eval_settings, [tflite], [], eval_step,
                (tflite.name, recipe.data, recipe.eval_samples), [convert], converted)
            if mode != "float32":
                add(f"compare/{tflite.name}", eval_settings, [float_keras, tflite], [], compare_step,
                    (float_keras.name, tflite.name, recipe.data, recipe.eval_samples), [train, convert])
            for device in devices:
                profile = profiles[device]
                settings = BenchSettings(threads=profile.threads, warmup=10, runs=recipe.bench_runs, seed=recipe.seed)
                add(f"bench/{tflite.name}/{device}", settings.to_dict(), [tflite], [], bench_step,
                    (tflite.name, profile, settings), [convert],
                    lambda b, cached, k=key, mode=mode, device=device: f"bench {k} {mode} on {device}: " + (
                        f"p50 {b['timing']['steady']['p50_ms']:.3f} ms" if (b.get("timing") or {}).get("steady")
                        else f"FAILED: {b.get('error')}"),
                    resources={"num_cpus": 1 if profile.kind == "local" else 0,
                               "resources": {board_resource(profile): 1}},
                    finish=lambda doc: _record_bench(run, doc), keep=lambda doc: doc.get("status") == "ok")

    steps: list[Step] = []
    for m in recipe.models:
        keras = run.root / f"{m.key}.keras"
        start = _start_from(run, m)  # a saved model to start from, copied into the run: an input like any other
        scale = InputScaling(mean=m.mean, std=m.std)
        cfg = TrainConfig(start.name if start else m.name, recipe.data, m.epochs, m.batch_size, m.learning_rate, 0.1,
                          recipe.seed, m.input_size, dict(m.options), max_train_samples=recipe.max_train_samples,
                          input_scale=scale.scale_offset() if scale.given else None, cut_at=m.cut_at,
                          freeze=m.freeze, fine_tune_blocks=m.fine_tune_blocks, fine_tune_lr=m.fine_tune_lr,
                          fine_tune_epochs=m.fine_tune_epochs)
        train = add(f"train/{m.key}", train_settings(cfg), [start] if start else [], [keras], train_step,
                    (keras.name, cfg, progress),
                    message=lambda r, cached, k=m.key: f"train {k}: " + _train_text(r)
                    + (" (cached)" if cached else ""))
        variant(m.key, keras, train, keras, pairs)
        if m.qat is not None:  # the float model fine-tuned through the int8 simulation: its int8 rows beside PTQ's
            key, qkeras = qat_key(m), run.root / f"{qat_key(m)}.keras"
            qcfg = TrainConfig(keras.name, recipe.data, m.qat.epochs, m.batch_size, m.qat.learning_rate, 0.1,
                               recipe.seed, max_train_samples=recipe.max_train_samples, qat=True)
            qtrain = add(f"train/{key}", train_settings(qcfg), [keras], [qkeras], train_step,
                         (qkeras.name, qcfg, progress), [train],
                         message=lambda r, cached, k=key: f"train {k}: " + _train_text(r)
                         + (" (cached)" if cached else ""))
            variant(key, qkeras, qtrain, keras, {p: d for p, d in pairs.items() if p[0] in QAT_MODES})
    return steps


def train_settings(cfg) -> dict:
    """A train step's cache key: its config, without the QAT fields when off (a run made before they existed stays
    cached)."""
    return {k: v for k, v in cfg.__dict__.items() if not (k in ("qat", "per_tensor") and not v)}


QAT_MODES = ("int8",)  # what a QAT variant converts to (its learned ranges are int8's)


def qat_key(m) -> str:
    return f"{m.key}-qat"


def variants(recipe: Recipe):
    """(recipe model, the key of what was trained, its precisions) of each model and of its QAT fine-tune."""
    for m in recipe.models:
        yield m, m.key, recipe.quant
        if m.qat is not None:
            yield m, qat_key(m), tuple(q for q in recipe.quant if q in QAT_MODES)


def _record_bench(run: RunDir, doc: dict) -> dict:
    """Every bench, ok or failed, is a row in the run's results database (written here, by the driver)."""
    from edgecnn.store.db import open_db

    with open_db(run.root / "results.sqlite") as db:
        doc["run_id"] = db.record(doc)
    if doc.get("interrupted"):
        raise KeyboardInterrupt
    return doc


def run_pipeline(recipe: Recipe, out_dir: str | Path, log: Callable[[str], None] = print,
                 progress: bool = True, executor=None) -> dict:
    """Run every stage of `recipe` into `out_dir`: train -> convert (each precision) -> evaluate -> bench (each
    device) -> results database; returns the summary, one row per model x precision x device (and a model's QAT
    fine-tune, `KEY-qat`, x int8 x device).

    `executor` runs the steps (default: `LocalExecutor`, here, one after another); failures of a bench are rows,
    any other failure stops the run with every finished step kept in the manifest.
    """
    from edgecnn.devices.profiles import load_profile
    from edgecnn.convert.request import ConversionRequest

    # an unknown device, a bad profile or a device no precision suits stops the run before any work is done
    profiles = {device: load_profile(device) for device in recipe.devices}
    for mode in recipe.quant:
        ConversionRequest(mode)
    pairs, skipped = conversions(recipe, profiles)
    run = RunDir(out_dir)
    total = sum(1 + sum(1 + len(devices) for (mode, _), devices in pairs.items() if mode in modes)
                for _, _, modes in variants(recipe)) + 1
    done = [0]
    plain_log = log

    def log(msg: str) -> None:  # every finished stage is numbered, so a long run shows how far it is
        done[0] += 1
        plain_log(f"[{done[0]}/{total}] {msg}")

    for s in skipped:
        plain_log(f"skip {s['precision']} on {s['device']}: {s['reason']}")
    results = (executor or LocalExecutor()).run_steps(run, plan(run, recipe, progress, log))
    rows = []
    for m, key, modes in variants(recipe):
        keras = run.root / f"{m.key}.keras"  # the float model: a QAT variant's rows are measured against it
        trained, float_eval = results[f"train/{m.key}"], results[f"eval/{keras.name}"]
        task = tasks.get(float_eval.get("task"))
        for mode in modes:
            for device in recipe.devices:
                target = profiles[device].target
                if (mode, target) not in pairs:
                    continue  # skipped: the device's target does not take this precision
                step, name = artifact(key, mode, target)
                tflite, conv = run.root / name, results[step]
                acc, cmp = results[f"eval/{tflite.name}"], results.get(f"compare/{tflite.name}")
                b = results[f"bench/{tflite.name}/{device}"]
                steady = (b.get("timing") or {}).get("steady") or {}
                rows.append({"model": key, "precision": mode, "qat": key != m.key, "device": device, "target": target,
                             "path": str(tflite),
                             "size_bytes": conv["size_bytes"], "size_ratio": conv["size_ratio_to_float32"],
                             "task": task.name, "metric": task.metric, "value": task.value(acc),
                             "float_value": task.value(float_eval),
                             "drop_points": 100 * (task.value(float_eval) - task.value(acc)),
                             **{k: acc.get(k) for k in task.details},
                             **{f"float_{k}": float_eval.get(k) for k in task.details},
                             "p50_ms": steady.get("p50_ms"), "p90_ms": steady.get("p90_ms"),
                             "postprocess_p50_ms": (b.get("postprocess") or {}).get("p50_ms"),
                             "peak_rss_mb": b.get("peak_rss_mb"),
                             "partitions": (b.get("delegation") or {}).get("partitions"),
                             "ops_outside": (b.get("delegation") or {}).get("ops_outside"),
                             "emulated": bool((b.get("device") or {}).get("emulated")),
                             "bench_status": b.get("status"), "bench_error": b.get("error"),
                             "bench_run_id": b.get("run_id"), "agreement": cmp["agreement"] if cmp else None,
                             "per_class": cmp["per_class"] if cmp and task.per_class_in_rows else None,
                             "worst_layers": cmp["worst_layers"] if cmp else None,
                             "timing": (b.get("timing") or {}).get("steady"),
                             "params": trained["params"], "macs": trained["macs"]})
    summary = {"schema": SUMMARY_SCHEMA, "recipe": recipe.name, "data": recipe.data, "run_dir": str(run.root),
               "database": str(run.root / "results.sqlite"), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "rows": rows, "skipped": skipped}
    write_text_atomic(run.root / "summary.json", json.dumps(summary, indent=2, default=str))
    from edgecnn.report import make_report

    for name in ("report.html", "report.md"):
        make_report(run.root, run.root / name)
    summary["report"] = str(run.root / "report.html")
    log(f"report: {summary['report']} (and report.md)")
    return summary
