"""The Python API: each stage one function, each returning a typed result with the fields `--json` prints.

    from edgecnn.api import bench, convert, evaluate, train

    train("lenet5", "lenet.keras", data="digits", epochs=3)
    q = convert("lenet.keras", "lenet_int8.tflite", quant="int8", calibration="digits")
    print(q.size_bytes, q.delegate["partitions"])
    print(evaluate("lenet_int8.tflite", data="digits").value)
    print(bench("lenet_int8.tflite").p50_ms)

(`edgecnn.api`, not `edgecnn`: `edgecnn.train`, `edgecnn.convert`, `edgecnn.evaluate` and `edgecnn.bench` are the
stages' packages.)

The command line is a thin layer over these functions (`edgecnn/cli.py` parses, calls one of them, prints), so a
script and the CLI get the same numbers and the same errors: bad input raises `EdgecnnError` with the one line the
CLI prints. A warning meant for the user (a foreign model whose outputs int8 would ruin, a precision rule that
matched nothing) is a Python warning of category `EdgecnnWarning`; the CLI prints it as `edgecnn: warning: ...`.
Nothing here imports TensorFlow until a function that needs it runs.

A result is read as attributes (`q.size_bytes`) or as the `--json` document (`q.to_dict()`, `q["size_bytes"]`);
the keys of each are listed under "JSON outputs" in the docs. Declared fields are typed; the task- and
option-dependent ones (a detector's `map50`, `--target edgetpu`'s `edgetpu`, ...) are there too, untyped.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Sequence
from pydantic import BaseModel, ConfigDict, PrivateAttr

from edgecnn.errors import EdgecnnError, EdgecnnWarning
from edgecnn.targets import DEFAULT as DEFAULT_TARGET, TARGETS

__all__ = ["BenchResult", "BuildResult", "CompareResult", "ConvertResult", "DeployedResult", "DeviceCheckResult",
           "EvalResult", "ExportCResult", "FlashResult", "McuCheckResult", "PreflightResult", "ReportResult", "Result",
           "RunResult", "TrainResult", "bench", "bench_records", "build", "check_device", "compare", "convert",
           "deployed", "devices", "edgetpu_check", "evaluate", "evaluate_all", "export_c", "flash", "history",
           "mcu_check", "models", "report", "rollback", "run", "train"]


class Result(BaseModel):
    """A stage's result: the `--json` document, its main fields typed, every other key an attribute too.

    A declared field the document lacks (or holds null for: a detector's compare without boxes has no agreement) is
    None. A key that names a pydantic method (`schema`, `copy`, `json`) is read as an item: `r["schema"]`."""

    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())  # a field may be `model_sha256`
    _doc: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def of(cls, doc: dict):
        """The result of the stage's document `doc`, as `--json` prints it (paths and numpy numbers as JSON has
        them)."""
        doc = json.loads(json.dumps(doc, default=_plain))
        out = cls.model_validate(doc)
        out._doc = doc
        return out

    def to_dict(self) -> dict:
        """The `--json` document (a copy), keys in the order the stage wrote them."""
        return copy.deepcopy(self._doc)

    def __getitem__(self, key: str):
        return self._doc[key]

    def get(self, key: str, default=None):
        return self._doc.get(key, default)


class BuildResult(Result):
    """`edgecnn build`: the saved zoo model."""

    output: str | None = None
    name: str | None = None
    input_shape: list[int] | None = None
    params: int | None = None
    macs: int | None = None


class TrainResult(Result):
    """`edgecnn train`: the saved model, its data, the task's test measures, wall time."""

    output: str | None = None
    model: str | None = None
    data: str | None = None
    task: str | None = None
    epochs: int | None = None
    train_samples: int | None = None
    test_samples: int | None = None
    loss_last_epoch: float | None = None
    wall_seconds: float | None = None
    params: int | None = None
    macs: int | None = None


class ConvertResult(Result):
    """`edgecnn convert`: the written .tflite, its size, ops and what the converter did (calibration, rewrites, the
    target's check: `delegate` on the CPU, `edgetpu` for the Edge TPU)."""

    output: str | None = None
    model: str | None = None
    size_bytes: int | None = None
    op_histogram: dict[str, int] | None = None
    inputs: list[dict] | None = None
    outputs: list[dict] | None = None
    wall_seconds: float | None = None


class EvalResult(Result):
    """`edgecnn eval`, one model: its task's metric on the test split (`top1`, `map50`, `miou`, ...)."""

    model: str | None = None
    data: str | None = None
    task: str | None = None
    metric: str | None = None
    value: float | None = None
    n: int | None = None


class CompareResult(Result):
    """`edgecnn compare`: agreement with float as the task measures it, output SNR, the worst layers; with labels
    both values of the metric and the drop in points."""

    float_model: str | None = None
    quant_model: str | None = None
    data: str | None = None
    n: int | None = None
    labeled: bool | None = None
    task: str | None = None
    metric: str | None = None
    agreement: float | None = None
    worst_layers: list[dict] | None = None
    layers_compared: int | None = None


class BenchResult(Result):
    """`edgecnn bench`: the board runner's document (timing, delegation, peak RSS, accuracy with data) and the run's
    row in the results database."""

    status: str | None = None
    model: dict | None = None
    device: dict | None = None
    run_id: int | None = None

    @property
    def p50_ms(self) -> float | None:
        """Steady-state median latency (ms)."""
        return ((self._doc.get("timing") or {}).get("steady") or {}).get("p50_ms")


class RunResult(Result):
    """`edgecnn run`: one row per model x precision x device, where the run's files, database and report are."""

    recipe: str | None = None
    data: str | None = None
    run_dir: str | None = None
    database: str | None = None
    report: str | None = None
    rows: list[dict] | None = None
    skipped: list[dict] | None = None


class PreflightResult(Result):
    """`edgecnn edgetpu-check`: Coral's model requirements and every op against its supported-op list; where
    edgetpu_compiler would cut the graph back to the CPU."""

    model: str | None = None
    maps_fully: bool | None = None
    ops_edgetpu: int | None = None
    ops_total: int | None = None
    first_cpu_op: dict | None = None


class DeviceCheckResult(Result):
    """`edgecnn devices check`: what the board has (Python, numpy, LiteRT, CPU, disk) and what is missing, each
    with the command that installs it."""

    device: str | None = None
    host: str | None = None
    arch: str | None = None
    python: str | None = None
    missing: list[dict] | None = None


class ExportCResult(Result):
    """`edgecnn export-c`: the .c and .h written, the array's identifier, size and checksums."""

    source: str | None = None
    header: str | None = None
    identifier: str | None = None
    bytes: int | None = None
    sha256: str | None = None


class McuCheckResult(Result):
    """`edgecnn mcu-check`: the model in TFLite Micro on this host: arena, flash, missing ops, the fit, accuracy
    against LiteRT with data. `failure` is the one line the CLI exits 1 with (None when it runs and fits)."""

    model: str | None = None
    device: str | None = None
    runs_in_tflm: bool | None = None
    arena_bytes: int | None = None
    flash_bytes: int | None = None
    fits: bool | None = None
    problems: list[str] | None = None

    @property
    def failure(self) -> str | None:
        from edgecnn.deploy.mcu import failure_line

        return failure_line(self._doc)


class FlashResult(Result):
    """`edgecnn flash` (or `--rollback`): what the board holds now under the name, and what it held before."""

    device: str | None = None
    name: str | None = None
    board_path: str | None = None
    model_sha256: str | None = None
    previous_sha256: str | None = None


class DeployedResult(Result):
    """`edgecnn deployed`: the models on a board, hashes computed there, with the previous version of each."""

    device: str | None = None
    dir: str | None = None
    emulated: bool | None = None
    models: list[dict] | None = None


class ReportResult(Result):
    """`edgecnn report`: the report written, its rows and plots, the benches that failed."""

    output: str | None = None
    rows: int | None = None
    plots: list | None = None
    failed: list[dict] | None = None
    notes: list[str] | None = None


def _plain(value):
    """JSON for what `json` cannot write: a numpy number as its Python number, anything else (a Path) as text."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "shape", None) == () else str(value)


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A list option given as a list, or as one comma-separated string ("flip,shift")."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(p.strip() for p in parts if p.strip())


def _scaling(scale, offset, mean, std):
    from edgecnn.data.spec import InputScaling

    return InputScaling(scale, offset, mean, std)


def models(pattern: str = "*", num_classes: int = 1000, input_shape: tuple[int, ...] | None = None) -> list[dict]:
    """The zoo models matching `pattern` (e.g. "mobilenet*"): name, family, task, default input, params, MACs."""
    from edgecnn.zoo import list_models
    from edgecnn.zoo.listing import model_rows

    if not list_models(pattern):
        raise EdgecnnError(f"no zoo model matches {pattern!r}; `edgecnn models` lists them all")
    return model_rows(pattern, num_classes, input_shape)


def build(name: str, output: str, *, input_shape: tuple[int, ...] | None = None, num_classes: int = 1000,
          options: dict | None = None) -> BuildResult:
    """Build zoo model `name` (untrained unless options={"weights": ...}) and save it as .keras at `output`."""
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build as build_model
    from edgecnn.zoo.counting import summarize

    model = build_model(name, input_shape, num_classes, **(options or {}))
    spec = default_spec(name, model.input_shape[1:], [str(i) for i in range(num_classes)], "", model)
    save_model(model, output, spec)
    return BuildResult.of({"output": str(output), "name": name, "input_shape": list(model.input_shape[1:]),
                           **summarize(model)})


def train(model: str, output: str, *, data: str = "digits", epochs: int = 10, batch_size: int = 64,
          learning_rate: float = 1e-3, val_split: float = 0.1, seed: int = 0, input_size: int | None = None,
          options: dict | None = None, skip_bad: bool = False, max_train_samples: int | None = None,
          augment: str | Sequence[str] | None = None, lr_schedule: str = "cosine", cut_at: str | None = None,
          freeze: bool | None = None, fine_tune_blocks: int = 0, fine_tune_lr: float | None = None,
          fine_tune_epochs: int | None = None, qat: bool = False, per_tensor: bool = False,
          scale: float | None = None, offset: float | None = None, mean: float | None = None,
          std: float | None = None, progress: bool = False) -> TrainResult:
    """Train zoo model `model` (a name) or fine-tune a saved model on `data`, save it at `output` (.keras, with its
    preprocessing spec and labels). A saved classifier of other classes gets a new head of `data`'s classes on its
    backbone (transfer learning); `qat=True` trains through a simulation of the int8 model. The options are
    `edgecnn train`'s."""
    from edgecnn.train.trainer import TrainConfig, train as run_train

    scaling = _scaling(scale, offset, mean, std)
    cfg = TrainConfig(model, data, epochs, batch_size, learning_rate, val_split, seed, input_size, dict(options or {}),
                      skip_bad, max_train_samples, lr_schedule=lr_schedule,
                      augment=None if augment is None else _names(augment),
                      input_scale=scaling.scale_offset() if scaling.given else None, cut_at=cut_at, freeze=freeze,
                      fine_tune_blocks=fine_tune_blocks, fine_tune_lr=fine_tune_lr, fine_tune_epochs=fine_tune_epochs,
                      qat=qat, per_tensor=per_tensor)
    return TrainResult.of(run_train(cfg, output, progress=progress))


def _lint_foreign(model: str) -> None:
    """An `EdgecnnWarning` per mixed-range concatenated output of a foreign .tflite (`edgecnn.tflite.detect`)."""
    from pathlib import Path

    p = Path(model)
    if p.suffix != ".tflite" or not p.is_file():
        return
    from edgecnn.tflite.detect import mixed_range_outputs
    from edgecnn.tflite.metadata import read_spec

    try:
        if read_spec(p) is not None:
            return
        lines = mixed_range_outputs(p, str(p))
    except EdgecnnError:
        return  # an unreadable model is reported by the step itself
    for line in lines:
        warnings.warn(line, EdgecnnWarning, stacklevel=3)


def convert(model: str, output: str, *, quant: str = "float32", io: str | None = None, per_tensor: bool = False,
            calibration: str | None = None, num_calibration: int = 100, seed: int = 0,
            keep_float: str | Sequence[str] = (), allow_float_fallback: bool = False, scale: float | None = None,
            offset: float | None = None, mean: float | None = None, std: float | None = None,
            calibrator: str = "fast", calibration_method: str = "minmax", max_accuracy_drop: float | None = None,
            eval_data: str | None = None, target: str = DEFAULT_TARGET, rewrite: bool = True,
            bias_correction: bool = False, equalize: bool = False, quality: str = "default",
            precision: str | None = None, postprocess: str = "graph", graph_input: str | None = None,
            graph_outputs: str | Sequence[str] = (), verbose: bool = False,
            log: Callable[[str], None] | None = None) -> ConvertResult:
    """Convert `model` (.keras, .h5, SavedModel dir, TF1 .pb, .onnx or a float .tflite) to a .tflite at `output`
    in `quant` precision (float32, float16, dynamic, int8, int16x8) for `target` (cpu, edgetpu, tflm): int8 is
    calibrated on `calibration` (any data source), rewritten to run whole on the target, and checked there
    (`result.delegate`, `result.edgetpu`). `max_accuracy_drop` (with `eval_data`) is the guided mode, `precision` a
    per-op plan (a YAML file or inline rules); `log` receives the guided mode's progress lines. The options are
    `edgecnn convert`'s."""
    from edgecnn.convert.request import ConversionRequest

    if target not in TARGETS:
        raise EdgecnnError(f"target {target!r}: unknown; one of {', '.join(TARGETS)}")
    if precision is not None and max_accuracy_drop is not None:
        raise EdgecnnError("--precision and --max-accuracy-drop: the guided mode does not take a plan yet")
    from edgecnn.convert.precision import load_plan

    req = ConversionRequest(quant, io, per_tensor, calibration, num_calibration, seed, _names(keep_float),
                            allow_float_fallback, scale, offset, mean, std, target=target, rewrite=rewrite,
                            bias_correction=bias_correction, equalize=equalize, quality=quality,
                            calibrator=calibrator, calibration_method=calibration_method,
                            precision=load_plan(precision) if precision is not None else None,
                            postprocess=postprocess, graph_input=graph_input,
                            graph_outputs=_names(graph_outputs))
    _lint_foreign(model)  # a foreign .tflite whose outputs int8 would ruin: one warning each
    if max_accuracy_drop is not None:
        from edgecnn.guided import guided_convert

        if not eval_data:
            raise EdgecnnError("--max-accuracy-drop needs --eval-data SRC to measure the drop on")
        report = guided_convert(model, output, req, max_accuracy_drop, eval_data, verbose=verbose,
                                log=log or (lambda s: None))
    else:
        from edgecnn.convert.converter import convert_model

        report = convert_model(model, output, req, verbose=verbose)
    if report.get("precision"):
        from edgecnn.bench.delegation import place

        place(report["precision"], output)
        for line in report["precision"]["warnings"]:
            warnings.warn(line, EdgecnnWarning, stacklevel=2)
    after = TARGETS[target]  # the target's check of the written model: Edge TPU preflight, CPU delegate partitions
    if after.after_convert and quant in after.after_convert_modes:
        from edgecnn.targets import hook

        report[after.report_key] = hook(after.after_convert)(output)
    return ConvertResult.of(report)


def evaluate_all(models: Sequence[str], data: str, *, limit: int | None = None, scale: float | None = None,
                 offset: float | None = None, mean: float | None = None, std: float | None = None,
                 executor: str | None = None) -> list[EvalResult]:
    """`evaluate` of several models on one executor (`edgecnn eval A B C`)."""
    from edgecnn.evaluate.accuracy import evaluate as run_evaluate
    from edgecnn.executor import open_executor

    with open_executor(executor) as ex:
        return [EvalResult.of(run_evaluate(m, data, limit, _scaling(scale, offset, mean, std), ex and ex.map_shards))
                for m in models]


def evaluate(model: str, data: str, *, limit: int | None = None, scale: float | None = None,
             offset: float | None = None, mean: float | None = None, std: float | None = None,
             executor: str | None = None) -> EvalResult:
    """The task's metric of `model` (Keras or .tflite, any IO dtype) on `data`'s test split (labels needed): top-1
    and top-5 of a classifier, COCO mAP of a detector, mIoU of a segmenter. `executor="ray"` (or "ray:ADDRESS")
    shards it over a Ray cluster."""
    return evaluate_all([model], data, limit=limit, scale=scale, offset=offset, mean=mean, std=std,
                        executor=executor)[0]


def compare(float_model: str, quant_model: str, data: str, *, limit: int | None = None, layers: int = 10,
            scale: float | None = None, offset: float | None = None, mean: float | None = None,
            std: float | None = None, executor: str | None = None, explorer: str | None = None) -> CompareResult:
    """Quantized against float on `data`'s test split, labeled or not (a flat folder of photos): agreement, output
    SNR, KL divergence and the `layers` worst layers; with labels also both values of the task's metric and the drop.
    `explorer="FILE.json"` also writes Model Explorer node data for the quantized graph."""
    from edgecnn.evaluate.compare import compare as run_compare
    from edgecnn.executor import open_executor

    if explorer:
        from edgecnn.report.explorer import check_overlay_path, write_overlays

        check_overlay_path(explorer)  # before minutes of comparing
    with open_executor(executor) as ex:
        r = run_compare(float_model, quant_model, data, limit, top_layers=None if explorer else layers,
                        scaling=_scaling(scale, offset, mean, std), map_shards=ex and ex.map_shards)
    if explorer:  # every compared layer goes on the graph; the table keeps the worst `layers`
        r["explorer"] = write_overlays(explorer, quant_model, r["worst_layers"])
        r["worst_layers"] = r["worst_layers"][:layers]
    return CompareResult.of(r)


class RunsInterrupted(KeyboardInterrupt):
    """Ctrl-C while several devices were being benched: the unfinished runs are recorded as failed."""


def bench_settings(profile, *, threads: int | None = None, warmup: int = 10, runs: int = 100, min_secs: float = 0.0,
                   xnnpack: bool = True, op_profile: bool = False, seed: int = 0, head: str | None = None):
    """The runner's settings on device `profile` (its own thread count unless `threads`)."""
    from edgecnn.bench.protocol import BenchSettings

    return BenchSettings(threads=profile.threads if threads is None else threads, warmup=warmup, runs=runs,
                         min_secs=min_secs, xnnpack=xnnpack and profile.delegate == "xnnpack",
                         op_profile=op_profile, seed=seed, head=head)


def bench_records(model: str, devices: Sequence[str] = ("local-cpu",), *, data: str | None = None,
                  limit: int = 1000, db: str | None = None, **settings) -> list[dict]:
    """Bench runs of `model` on each of `devices` (in parallel when several), each recorded in the results database,
    failed or not: the runner documents, each with its `run_id` (`edgecnn bench --device A --device B`)."""
    from edgecnn.bench.run import bench_model
    from edgecnn.devices.profiles import load_profile
    from edgecnn.store.db import open_db

    _lint_foreign(model)
    with open_db(db) as store:  # a bad database fails here, before a run is wasted
        profiles = [load_profile(d) for d in dict.fromkeys(devices)]
        if len(profiles) == 1:
            doc = bench_model(model, profiles[0], bench_settings(profiles[0], **settings), data, limit)
            doc["run_id"] = store.record(doc)
            return [doc]
        from edgecnn.bench.multi import bench_devices

        def record(doc):
            doc["run_id"] = store.record(doc)

        try:
            return bench_devices(model, profiles, lambda p: bench_settings(p, **settings), data, limit, record)
        except KeyboardInterrupt:
            raise RunsInterrupted("unfinished runs recorded as failed") from None


def bench(model: str, *, device: str = "local-cpu", threads: int | None = None, warmup: int = 10, runs: int = 100,
          min_secs: float = 0.0, xnnpack: bool = True, op_profile: bool = False, data: str | None = None,
          limit: int = 1000, seed: int = 0, head: str | None = None, db: str | None = None) -> BenchResult:
    """Benchmark `model` (.tflite) on `device` (a profile name or .yaml path; this CPU by default) in a fresh runner
    process: latency (`timing.steady`: p50, p90, ...), peak RSS, delegate partitions, and with `data` the task's
    accuracy on the device. Every run is a row of the results database `db` (default: $EDGECNN_DB or the user data
    dir); a failed run is recorded, then raised as `EdgecnnError` (an interrupted one as `KeyboardInterrupt`)."""
    [doc] = bench_records(model, [device], data=data, limit=limit, db=db, threads=threads, warmup=warmup, runs=runs,
                          min_secs=min_secs, xnnpack=xnnpack, op_profile=op_profile, seed=seed, head=head)
    if doc.get("interrupted"):
        raise KeyboardInterrupt(f"interrupted (recorded as failed run {doc['run_id']})")
    if doc["status"] != "ok":
        raise EdgecnnError(f"{doc['error']} (recorded as failed run {doc['run_id']})")
    return BenchResult.of(doc)


def run(recipe: str | None = None, out: str | None = None, *, executor: str | None = None, progress: bool = False,
        log: Callable[[str], None] | None = None) -> RunResult:
    """The whole pipeline on `recipe` (a YAML file or a name in models/; default: quick, on bundled digits): train,
    convert each precision, evaluate, compare, bench each device, store, report, into `out` (default
    runs/<recipe name>); cached steps are not re-run. `log` receives the step lines."""
    from edgecnn.executor import open_executor, parse
    from edgecnn.pipeline import boards, run_pipeline
    from edgecnn.recipe import load_recipe

    parse(executor)
    r = load_recipe(recipe)
    with open_executor(executor, boards(r) if executor else ()) as ex:
        summary = run_pipeline(r, out or f"runs/{r.name}", log=log or (lambda s: None),
                               progress=progress and not ex, executor=ex)
    return RunResult.of(summary)



def edgetpu_check(model: str, *, runtime_version: int | None = None) -> PreflightResult:
    """Offline Edge TPU preflight of `model` (.tflite; no Coral software needed) against Edge TPU runtime
    `runtime_version` (10-16, default 14)."""
    from edgecnn.convert.edgetpu import preflight

    return PreflightResult.of(preflight(model, runtime_version))


def devices() -> list[dict]:
    """The device profiles `device=NAME` finds (devices/*.yaml, ~/.config/edgecnn/devices/): name, kind, where
    (user@host:port or this machine), description; a profile that does not parse has `error`."""
    from edgecnn.devices.profiles import available, load_profile

    rows = []
    for name in available():
        try:
            p = load_profile(name)
        except EdgecnnError as exc:
            rows.append({"name": name, "kind": "?", "where": "", "emulated": False, "description": "",
                         "error": str(exc)})
            continue
        where = (f"{p.ssh.user + '@' if p.ssh.user else ''}{p.ssh.host}:{p.ssh.port}" if p.ssh
                 else "this machine")
        rows.append({**p.model_dump(), "where": where})
    return json.loads(json.dumps(rows, default=_plain))


def check_device(name: str) -> DeviceCheckResult:
    """Reach board `name` (a profile) over SSH: its Python, LiteRT, CPU and disk, and what is `missing`."""
    from edgecnn.devices.board import check_device as run_check
    from edgecnn.devices.profiles import load_profile

    profile = load_profile(name)
    if profile.kind == "local":
        raise EdgecnnError(f"device {profile.name} is this machine (kind local): nothing to check over SSH")
    return DeviceCheckResult.of(run_check(profile))


def history(*, model: str | None = None, device: str | None = None, limit: int = 50,
            db: str | None = None) -> list[dict]:
    """Stored bench runs, oldest first, each compared with the previous comparable one (same model hash, device,
    threads, XNNPACK): `model` is a file, a sha256 prefix or part of the model's path; the newest `limit` (0: all)."""
    import re
    from pathlib import Path

    from edgecnn.store.db import open_db
    from edgecnn.store.history import compare as compare_runs

    sha = like = None
    if model and Path(model).is_file():
        import hashlib

        sha = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    elif model and re.fullmatch(r"[0-9a-fA-F]{6,64}", model):
        sha = model
    elif model:
        like = model
    with open_db(db, write=False) as store:
        rows = compare_runs(store.runs(model_sha256=sha, model_like=like, device=device))
    rows = rows[-limit:] if limit > 0 else rows
    return json.loads(json.dumps([{k: v for k, v in r.items() if k != "result_json"} for r in rows], default=_plain))


def export_c(model: str, output: str = "model_data", *, name: str | None = None) -> ExportCResult:
    """`model` (.tflite) as a 16-byte aligned C array: `output`.c and `output`.h, identifier `name` (default: the
    output's file name), for TFLM, ESP-IDF, Arduino or Zephyr."""
    from edgecnn.deploy.export_c import export_c as run_export

    return ExportCResult.of(run_export(model, output, name))


def mcu_check(model: str, *, device: str | None = None, ram: str | None = None, flash: str | None = None,
              data: str | None = None, limit: int = 1000, allow_float: bool = False) -> McuCheckResult:
    """Run `model` (.tflite) in TensorFlow Lite for Microcontrollers on this host: tensor arena, flash, missing ops,
    whether it fits `ram`/`flash` (e.g. "256K", "1M"; default: MCU profile `device`'s), and with `data` its metric
    under TFLM against LiteRT. A model that does not run or fit is a result (`fits`, `problems`, `failure`), not an
    error."""
    from edgecnn.deploy.mcu import mcu_check as run_check

    return McuCheckResult.of(run_check(model, ram, flash, device, data, limit, allow_float))


def flash(model: str, device: str, *, name: str | None = None, smoke: bool = False,
          db: str | None = None) -> FlashResult:
    """Install `model` (.tflite) on SSH board `device` as `name` (default: the file's stem): a temporary copy, its
    sha256 checked on the board, an atomic rename, the previous version kept; `smoke` runs one inference there
    first. Recorded in the results database."""
    from edgecnn.deploy import flash as fl

    return FlashResult.of(fl.flash(model, device, name, smoke, db))


def rollback(device: str, *, name: str | None = None, model: str | None = None, db: str | None = None) -> FlashResult:
    """Put the previous version of `name` (or of `model`'s stem; the only model deployed when neither is given)
    back on board `device`."""
    from pathlib import Path

    from edgecnn.deploy import flash as fl

    if not name and not model:
        names = [m["name"] for m in fl.deployed(device)["models"]]
        if len(names) != 1:
            raise EdgecnnError(f"--rollback: say which model with --name ({', '.join(names) or 'none deployed'})")
        name = names[0]
    return FlashResult.of(fl.rollback(device, name or Path(model).stem, db))


def deployed(device: str) -> DeployedResult:
    """The models flashed on board `device`, with hashes computed on the board and dates."""
    from edgecnn.deploy.flash import deployed as list_deployed

    return DeployedResult.of(list_deployed(device))


def report(source: str | None = None, output: str | None = None, *, db: str | None = None) -> ReportResult:
    """An HTML (or, for `output` ending .md, Markdown + PNGs) report of a run directory `source` (from `run`) or of
    a results database `db`: the model x precision x device table and its plots. `output` defaults to
    SOURCE/report.html, else ./report.html."""
    from pathlib import Path

    from edgecnn.report import make_report

    if source and db:
        raise EdgecnnError("give a run directory or --db PATH, not both")
    if db and Path(db).is_dir():
        raise EdgecnnError(f"{db}: is a directory, expected a results database file")
    if output is None:
        output = str(Path(source) / "report.html") if source and Path(source).is_dir() else "report.html"
    return ReportResult.of(make_report(source or db, output))
