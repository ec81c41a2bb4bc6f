"""`--executor ray`: the pipeline's steps as Ray tasks, sharded eval/compare, boards as resources — on a real
local Ray (one session for the module, `ray.init(num_cpus=2)`), no mocks.

Training is bit-reproducible with the recipe's seed on CPU (seeds set, TF op determinism on, oneDNN off: two
trainings of the quick recipe in separate processes gave identical weights here), so the Ray run trains its own
model and its rows must equal the local run's: sizes, top-1, agreement, per-class. The recipe is the README's
`quick` with 3 epochs in place of its 20: the rows are compared for equality, whatever the training reached.
Timings are never compared; bench spans (recorded start/end of each step in the manifest) are checked for overlap
on one board.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import require
from helpers import REPO, assert_one_line_error, run_cli

HAVE_RAY = importlib.util.find_spec("ray") is not None
TOY_BOARDS = ("board:toy-a", "board:toy-b")
ROW_KEYS = ("model", "precision", "device", "size_bytes", "size_ratio", "top1", "float_top1", "drop_points",
            "agreement", "per_class", "worst_layers", "bench_status", "emulated", "params", "macs")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray for this module: 2 CPUs, no dashboard, this CPU and two toy boards as resources; its address
    lets CLI runs join it (`--executor ray:ADDRESS`)."""
    require(HAVE_RAY, "Ray is not installed: pip install 'edgecnn[ray]'")
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the toy steps below, shipped by value
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             resources={"board:local-cpu": 1, **{b: 1 for b in TOY_BOARDS}})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    """models/quick.yaml (LeNet-5 on digits, float32 and int8, local CPU) trained 3 epochs instead of 20."""
    from edgecnn.schema import load_yaml

    recipe = load_yaml(REPO / "models" / "quick.yaml")
    for model in recipe["models"]:
        model["epochs"] = 3
    path = tmp_path_factory.mktemp("quick-recipe") / "quick.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def quick_runs(cluster, quick, tmp_path_factory):
    """`edgecnn run QUICK` locally and with `--executor ray:ADDRESS`: (local summary, ray summary)."""
    d = tmp_path_factory.mktemp("quick")
    local = run_cli("run", quick, "-o", d / "local", "--json")
    assert local.returncode == 0, local.stderr[-3000:]
    ray_run = run_cli("run", quick, "-o", d / "ray", "--executor", f"ray:{cluster}", "--json")
    assert ray_run.returncode == 0, ray_run.stderr[-3000:]
    return json.loads(local.stdout), json.loads(ray_run.stdout)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """The suite's CenterNet trained one short epoch on scenes:digits and its int8 conversion: (keras, int8)."""
    import deploy_models

    return deploy_models.detector(tmp_path_factory.mktemp("ray-detector"))[:2]


def _spans(run_dir: Path, prefix: str) -> list[tuple[float, float, str]]:
    steps = json.loads((run_dir / "manifest.json").read_text())["steps"]
    return sorted((s["started"], s["ended"], name) for name, s in steps.items() if name.startswith(prefix))


def _assert_no_overlap(spans) -> None:
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        assert end <= start, f"{a} and {b} overlap on one board"


def _no_temp_files(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.rglob("*") if ".tmp-" in p.name]


@pytest.mark.slow
def test_quick_on_ray_gives_the_local_rows(quick_runs):
    local, ray_run = quick_runs
    assert [tuple(r[k] for k in ROW_KEYS) for r in ray_run["rows"]] == \
           [tuple(r[k] for k in ROW_KEYS) for r in local["rows"]]
    assert all(r["bench_status"] == "ok" for r in ray_run["rows"])
    run_dir = Path(ray_run["run_dir"])
    assert (run_dir / "report.html").exists() and not _no_temp_files(run_dir)
    assert [r["path"] for r in ray_run["rows"]] == [str(run_dir / Path(r["path"]).name) for r in local["rows"]]


@pytest.mark.slow
def test_two_benches_on_one_board_never_overlap(quick_runs):
    spans = _spans(Path(quick_runs[1]["run_dir"]), "bench/")
    assert len(spans) == 2  # float32 and int8 on local-cpu (board:local-cpu, capacity 1)
    _assert_no_overlap(spans)


@pytest.mark.slow
def test_ray_run_is_cached_like_a_local_one(quick_runs, quick, cluster):
    run_dir = quick_runs[1]["run_dir"]
    again = run_cli("run", quick, "-o", run_dir, "--executor", f"ray:{cluster}", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("(cached)") == 3  # train, both converts; benches are never re-measured either
    assert [r["p50_ms"] for r in json.loads(again.stdout)["rows"]] == [r["p50_ms"] for r in quick_runs[1]["rows"]]


@pytest.mark.slow
def test_sharded_eval_and_compare_equal_the_local_numbers(quick_runs, cluster):
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.evaluate.compare import compare
    from edgecnn.executor.ray_cluster import RayExecutor

    run_dir = Path(quick_runs[0]["run_dir"])
    keras, int8 = run_dir / "lenet5.keras", run_dir / "lenet5_int8.tflite"
    local = {model: evaluate(model, "digits") for model in (keras, int8)}
    local_cut, local_compare = evaluate(int8, "digits", 300), compare(keras, int8, "digits")
    with RayExecutor() as ex:
        for count in (2, 3):  # 359 test images: 2 shards of whole batches, and one shard left empty
            shards = functools.partial(ex.map_shards, count=count)
            for model in (keras, int8):
                assert evaluate(model, "digits", map_shards=shards) == local[model]
            assert evaluate(int8, "digits", 300, map_shards=shards) == local_cut
            assert compare(keras, int8, "digits", map_shards=shards) == local_compare
    cli = run_cli("eval", keras, int8, "--data", "digits", "--executor", f"ray:{cluster}", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout) == [local[keras], local[int8]]


@pytest.mark.slow
def test_sharded_detector_eval_equals_the_local_one(cluster, detector):
    """A detector's eval on Ray: each shard's boxes decoded on a worker, the mAP from all of them on the driver —
    the same numbers as one process, Keras and int8, with empty shards and a limit that cuts a batch; boxes found,
    and at least two shards holding images in every case (else it would be one process's run, shipped)."""
    from edgecnn.evaluate.accuracy import evaluate, shard_bounds
    from edgecnn.executor.ray_cluster import RayExecutor

    keras, int8 = detector
    local = {m: evaluate(m, "scenes:digits") for m in (keras, int8)}
    assert local[int8]["n"] == 500 and local[int8]["task"] == "detection"
    assert all(r["detections"] > 0 and r["objects"] > 0 for r in local.values())
    cut = 300  # 256 + 44: the limit cuts the second block, and the second LiteRT batch of 64 in it
    cut_local = evaluate(int8, "scenes:digits", cut)
    with RayExecutor() as ex:
        # shards are whole blocks of 256 (KERAS_BATCH): 500 scenes are 2 blocks, so 2 shards hold 256 + 244
        # images, and of 9 shards 2 hold images and 7 are empty (empty shards must add nothing)
        for count in (2, 9):
            for n in (500, cut):
                full = [b for b in (shard_bounds(n, i, count) for i in range(count)) if b[0] < b[1]]
                assert len(full) == 2, (n, count, full)
            shards = functools.partial(ex.map_shards, count=count)
            for model in (keras, int8):
                assert evaluate(model, "scenes:digits", map_shards=shards) == local[model]
            assert evaluate(int8, "scenes:digits", cut, map_shards=shards) == cut_local
    cli = run_cli("eval", int8, "--data", "scenes:digits", "--executor", f"ray:{cluster}", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout) == [json.loads(json.dumps(local[int8]))]


@pytest.mark.slow
def test_a_task_registered_from_the_tests_runs_on_the_ray_engine(cluster, tmp_path):
    """The toy task (tests/task_toy.py), known to the driver only: eval and compare sharded over Ray workers give
    the local numbers, with no stage knowing the task (the worker is handed the task with its shard)."""
    import ray.cloudpickle

    import deploy_models
    import task_toy
    from edgecnn import tasks
    from edgecnn.evaluate.accuracy import evaluate
    from edgecnn.evaluate.compare import compare
    from edgecnn.executor.ray_cluster import RayExecutor

    ray.cloudpickle.register_pickle_by_value(task_toy)  # workers cannot import the tests' modules
    tasks.register(task_toy.TASK)
    keras = task_toy.brightness_model(tmp_path / "bright.keras")
    int8 = deploy_models.to_int8(keras, tmp_path / "bright_int8.tflite", "digits", num_calibration=32)
    local = evaluate(int8, "digits")
    assert local["task"] == "brightness" and local["n"] > 300 and 0.0 < local["mae"] < 0.1
    with RayExecutor() as ex:
        shards = functools.partial(ex.map_shards, count=2)
        assert evaluate(int8, "digits", map_shards=shards) == local
        assert evaluate(keras, "digits", map_shards=shards) == evaluate(keras, "digits")
        assert compare(keras, int8, "digits", map_shards=shards) == compare(keras, int8, "digits")


@pytest.mark.slow
def test_sharded_detector_compare_equals_the_local_one(cluster, detector):
    """Detector compare on Ray (refused before the task table): the same agreement, mAPs and output SNRs as one
    process, on images where the model finds boxes."""
    from edgecnn.evaluate.compare import compare
    from edgecnn.executor.ray_cluster import RayExecutor

    keras, int8 = detector
    from edgecnn.evaluate.accuracy import evaluate

    local = compare(keras, int8, "scenes:digits", limit=300)
    assert local["task"] == "detection" and local["labeled"] is True and local["n"] == 300
    assert set(local["output_snr_db"]) == {"heatmap", "size", "offset"}
    # the mAPs compared are of boxes found on these images (a one-epoch model may have none at the agreement's
    # confidence 0.3, so `float_boxes` can be 0; eval counts every decoded box)
    assert evaluate(int8, "scenes:digits", 300)["detections"] > 0 and local["quant_map50"] is not None
    with RayExecutor() as ex:
        assert compare(keras, int8, "scenes:digits", limit=300,
                       map_shards=functools.partial(ex.map_shards, count=2)) == local


def _tiny_recipe(tmp_path: Path, models: str = "  - {name: lenet5, input_size: 16, epochs: 1}\n", **extra) -> Path:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndata: digits\nmodels:\n{models}"
                      "quant: [float32, int8]\ndevices: [local-cpu]\nbench_runs: 10\n"
                      + "".join(f"{k}: {v}\n" for k, v in extra.items()))
    return recipe


@pytest.mark.slow
def test_a_failed_step_keeps_every_finished_result(cluster, tmp_path):
    """int8 cannot calibrate: the run stops with that one line, and every step that finished stays recorded,
    its files whole, so the next run resumes from them."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.executor.ray_cluster import RayExecutor
    from edgecnn.pipeline import RunDir, run_pipeline
    from edgecnn.recipe import load_recipe

    recipe = load_recipe(str(_tiny_recipe(tmp_path, calibration="no-such-calibration-set")))
    with RayExecutor(boards=("board:local-cpu",)) as ex, pytest.raises(EdgecnnError, match="no-such-calibration"):
        run_pipeline(recipe, tmp_path / "run", log=lambda s: None, progress=False, executor=ex)
    run = RunDir(tmp_path / "run")
    assert "train/lenet5" in run.steps and "convert/lenet5/int8" not in run.steps
    for name, entry in run.steps.items():  # what is recorded is intact: its cache entry hits
        assert all(Path(p).is_file() for p in entry["outputs"]), name
    assert not _no_temp_files(tmp_path / "run")
    fixed = load_recipe(str(_tiny_recipe(tmp_path)))
    logs = []
    with RayExecutor(boards=("board:local-cpu",)) as ex:
        run_pipeline(fixed, tmp_path / "run", log=logs.append, progress=False, executor=ex)
    assert any(line.startswith("[1/6] train lenet5") and "(cached)" in line for line in logs), logs


# --- the executor itself, on toy steps (shipped to the workers by value) -----------------------------------------


def _toy(root: Path, out: str, text: str, sleep: float = 0.0) -> dict:
    time.sleep(sleep)
    (root / out).write_text(text)
    return {"out": str(root / out), "text": text}


def _dies_once(root: Path, out: str, marker: str) -> dict:
    """Kill this worker process the first time (half a file written), succeed when Ray runs the task again."""
    (root / out).write_text("half")
    if not Path(marker).exists():
        Path(marker).write_text("died once")
        os._exit(1)
    (root / out).write_text("whole")
    return {"out": str(root / out)}


def _steps(run, specs):
    from edgecnn.pipeline import Step

    return [Step(name, {}, (), (run.root / out,), fn, (out, *args), resources=res)
            for name, out, fn, args, res in specs]


def test_benches_on_one_board_queue_and_results_are_written_by_the_driver(cluster, tmp_path):
    from edgecnn.executor.ray_cluster import RayExecutor
    from edgecnn.pipeline import RunDir

    run = RunDir(tmp_path / "run")
    specs = [(f"bench/{i}/{b}", f"{i}-{b[-1]}.txt", _toy, (f"{i}", 0.3), {"num_cpus": 0, "resources": {b: 1}})
             for i in range(4) for b in TOY_BOARDS]
    with RayExecutor(boards=TOY_BOARDS) as ex:
        results = ex.run_steps(run, _steps(run, specs))
    assert results["bench/2/board:toy-b"] == {"out": str(run.root / "2-b.txt"), "text": "2"}  # paths: the run's
    assert (run.root / "3-a.txt").read_text() == "3" and len(RunDir(run.root).steps) == 8
    for b in TOY_BOARDS:
        spans = _spans(run.root, "bench/")
        _assert_no_overlap([s for s in spans if s[2].endswith(b)])


def test_a_lost_worker_is_retried_and_leaves_no_half_written_file(cluster, tmp_path):
    from edgecnn.executor.ray_cluster import RayExecutor
    from edgecnn.pipeline import RunDir

    run = RunDir(tmp_path / "run")
    specs = [("ok", "ok.txt", _toy, ("fine",), {"num_cpus": 1}),
             ("dies", "dies.txt", _dies_once, (str(tmp_path / "marker"),), {"num_cpus": 1})]
    with RayExecutor() as ex:
        ex.run_steps(run, _steps(run, specs))
    assert (tmp_path / "marker").exists()  # the first worker did die
    assert (run.root / "dies.txt").read_text() == "whole" and (run.root / "ok.txt").read_text() == "fine"
    assert set(RunDir(run.root).steps) == {"ok", "dies"} and not _no_temp_files(run.root)
    from edgecnn.executor.ray_cluster import STAGE_PREFIX

    stages = [p.name.split("-")[2] for p in Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*")]
    assert all(Path(f"/proc/{pid}").exists() for pid in stages), stages  # the dead worker's folder is swept


def test_a_board_missing_from_the_cluster_is_one_line(cluster):
    from edgecnn.errors import EdgecnnError
    from edgecnn.executor.ray_cluster import RayExecutor

    with pytest.raises(EdgecnnError, match=r"'board:10\.9\.8\.7:22' has capacity 0.*ray start .*--resources"):
        with RayExecutor(boards=("board:10.9.8.7:22",)):
            pass


@pytest.mark.slow
def test_ctrl_c_keeps_finished_steps(cluster, tmp_path):
    """Ctrl-C once the short training is recorded, while the long one still runs."""
    recipe = _tiny_recipe(tmp_path, "  - {name: lenet5, input_size: 16, epochs: 1}\n"
                                    "  - {name: lenet5, input_size: 32, epochs: 200, label: long}\n")
    e = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn.cli", "run", str(recipe), "-o", str(tmp_path / "run"),
                             "--executor", f"ray:{cluster}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e)
    manifest = tmp_path / "run" / "manifest.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and "train/lenet5" in manifest.read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "edgecnn: interrupted" in err and "Traceback" not in err
    steps = json.loads(manifest.read_text())["steps"]
    assert "train/lenet5" in steps and "train/long" not in steps
    assert all(Path(p).is_file() for s in steps.values() for p in s["outputs"])
    assert not _no_temp_files(tmp_path / "run")
    deadline = time.monotonic() + 120  # the driver gone, Ray ends its job's running task (the long training)
    while _busy_workers() and time.monotonic() < deadline:
        time.sleep(1)
    assert not _busy_workers()


def _busy_workers() -> list[str]:
    """Ray worker processes running a step now (Ray titles a worker by the task it runs)."""
    titles = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            titles.append(cmdline.read_bytes().decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            continue
    return [t for t in titles if t.startswith("ray::_staged_call")]


# --- without Ray, and bad values (no Ray needed) -------------------------------------------------------------------


def test_executor_ray_without_ray_says_how_to_install(tmp_path):
    stub = tmp_path / "noray" / "ray"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {"PYTHONPATH": os.pathsep.join([str(stub.parent), str(REPO), os.environ.get("PYTHONPATH", "")])}
    for args in (["run", "--executor", "ray"], ["eval", "m.tflite", "--data", "digits", "--executor", "ray:h:6379"]):
        assert_one_line_error(run_cli(*args, cwd=tmp_path, env=env), "pip install 'edgecnn[ray]'")


def test_a_cluster_nobody_answers_at_is_one_line(tmp_path):
    require(HAVE_RAY, "Ray is not installed: pip install 'edgecnn[ray]'")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_one_line_error(run_cli("eval", "m.tflite", "--data", "digits", "--executor", f"ray:127.0.0.1:{port}",
                                  cwd=tmp_path, timeout=60), "no Ray cluster answers there")


def test_bad_executor_value_is_one_line(tmp_path):
    for value in ("dask", "ray:", "rayy"):
        assert_one_line_error(run_cli("run", "--executor", value, cwd=tmp_path), f"--executor {value!r}",
                              "ray:ADDRESS")
    assert not (tmp_path / "runs").exists()
