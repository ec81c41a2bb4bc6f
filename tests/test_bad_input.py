"""The bad-input catalogue: every command, every kind of bad input a new user gives, one parametrized test.

Kinds: a missing file, an empty file, a corrupt file, the wrong kind of file, a data folder broken one way (a mask
folder's mask of another size, missing, unreadable, of a class or colour it does not name; no images), a model and a
data set of different tasks, an option out of its range, a list option given a scalar, a detector head that lacks a
key. Each case must give a non-zero exit, exactly one line on stderr (`edgecnn: error: ...`) naming the file or the
problem, no traceback, and leave nothing written: every command runs in an empty folder that its outputs point into,
and that folder must still be empty afterwards (a bench's failed row goes to its own database, outside it, by
design).

Most cases run in this process (`run_cli_in_process`: click's CliRunner, with file descriptor 2, shown warnings and
escaped tracebacks counted as stderr, as a real process would print them), which saves an interpreter and
TensorFlow start-up per case. The cases in `IN_A_PROCESS` run the real entry point (`python -m edgecnn.cli`) in a
process of their own: the contract as a user meets it (exit code, one line, no traceback, no start-up noise) for a
usage error, each kind of bad file and each task/head check, and the commands that change process-wide state
before failing (a training turns on TensorFlow's op determinism).

New commands and new file formats join `CASES`. The models are tiny and untrained (built with the zoo, converted to
float32 once per session): every case fails before a model would have to be good at anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli, run_cli_in_process
from mask_folders import break_mask_dir, mask_dir

TINY_DETECTOR = {"alpha": 0.25, "head_channels": 8}


def _save(model, path: Path, spec) -> Path:
    from edgecnn.modelfile import save_model

    save_model(model, path, spec)
    return path


def _zoo_model(directory: Path, name: str, shape, classes: int = 10, head_change=None, **knobs) -> Path:
    """Zoo model `name` untrained, with the spec `edgecnn train` would save (labels 0..classes-1, its head)."""
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build, get_entry

    model = build(name, shape, classes, **knobs)
    spec = default_spec(name, shape, [str(i) for i in range(classes)], "")
    entry = get_entry(name)
    if entry.head:
        head = entry.head(model)
        spec = spec.replace(head={k: v for k, v in head.items() if k != head_change})
    return _save(model, directory / f"{name}{'-no-' + head_change if head_change else ''}.keras", spec)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The catalogue's input files: good tiny models and bad files of each kind."""
    import deploy_models

    d = tmp_path_factory.mktemp("bad-input")
    f = {"missing.keras": d / "missing.keras", "missing.tflite": d / "missing.tflite",
         "missing.npz": d / "missing.npz", "missing.yaml": d / "missing.yaml", "missing-dir": d / "no-such-folder"}
    for name in ("empty.keras", "empty.tflite", "empty.npz", "empty.yaml", "empty.sqlite"):
        f[name] = d / name
        f[name].write_bytes(b"")
    rng = np.random.default_rng(0)
    for name in ("corrupt.keras", "corrupt.tflite", "corrupt.npz", "corrupt.sqlite"):
        f[name] = d / name
        f[name].write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    f["corrupt.yaml"] = d / "corrupt.yaml"
    f["corrupt.yaml"].write_text("name: [unclosed\n  models: {\n")
    f["notes.txt"] = d / "notes.txt"
    f["notes.txt"].write_text("not a model\n")
    f["photo.png"] = d / "photo.png"
    f["photo.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    f["strides-scalar.yaml"] = d / "strides-scalar.yaml"
    f["strides-scalar.yaml"].write_text("name: t\ndata: scenes:digits\nmodels:\n"
                                        "  - {name: ssdlite_mobilenet_v2, input_size: 64, options: {strides: 8}}\n")
    f["lenet5.keras"] = _zoo_model(d, "lenet5", (32, 32, 1))
    f["lenet5.tflite"] = deploy_models.to_float32(f["lenet5.keras"], d / "lenet5.tflite")
    f["det.keras"] = _zoo_model(d, "centernet_mobilenet_v1", (32, 32, 3), **TINY_DETECTOR)
    f["det.tflite"] = deploy_models.to_float32(f["det.keras"], d / "det.tflite")
    ssd = _zoo_model(d, "ssdlite_mobilenet_v2", (32, 32, 3), strides=[16])
    f["ssd.tflite"] = deploy_models.to_float32(ssd, d / "ssd.tflite")
    for key in ("anchors", "variances"):  # the same model, its head description without `key`
        f[f"ssd-no-{key}.keras"] = _zoo_model(d, "ssdlite_mobilenet_v2", (32, 32, 3),
                                              head_change=key, strides=[16])
    f["seg.keras"] = _zoo_model(d, "lraspp_mobilenet_v3_small", (32, 32, 3), classes=2, alpha=0.35,
                                minimalistic=True)  # a segmenter of 2 classes: the mask folders hold up to 3
    f["masks-good"] = d / "masks-good"
    mask_dir(f["masks-good"])
    for case in ("size", "missing", "colour", "index", "unreadable", "empty"):  # mask folders, each broken one way
        f[f"masks-{case}"] = d / f"masks-{case}"
        mask_dir(f[f"masks-{case}"], kind="RGB" if case == "colour" else "L")
        break_mask_dir(f[f"masks-{case}"], case)
    return f


# (case id, command line with {file} placeholders and OUT for the output folder, a text the error line must hold)
CASES = [
    # the command line itself
    ("unknown-command", "evall m.keras --data digits", "evall"),
    ("unknown-option", "--bogus", "--bogus"),
    ("missing-argument", "eval --data digits", "MODELS"),
    # models / build: names, options
    ("models-no-match", "models nosuchnet*", "nosuchnet"),
    ("models-bad-shape", "models lenet5 --input-shape 8x8", "--input-shape"),
    ("build-unknown-name", "build lenett5 -o OUT/m.keras", "lenett5"),
    ("build-classes-out-of-range", "build lenet5 --num-classes 0 -o OUT/m.keras", "num_classes"),
    ("build-input-too-small", "build mobilenet_v2 --input-shape 16x16x3 -o OUT/m.keras", "too small"),
    ("build-strides-scalar", "build ssdlite_mobilenet_v2 -O strides=8 -o OUT/m.keras", "`strides` takes a list"),
    ("build-aspect-ratios-scalar", "build ssdlite_mobilenet_v2 -O aspect_ratios=2 -o OUT/m.keras",
     "`aspect_ratios` takes a list"),
    ("build-flag-not-bool", "build mobilenet_v3_small -O minimalistic=3 -o OUT/m.keras", "`minimalistic`"),
    ("build-output-dir-missing", "build lenet5 -o OUT/no/m.keras", "does not exist"),
    # train: data files, tasks, options
    ("train-data-missing", "train lenet5 --data {missing.npz} -o OUT/m.keras", "missing.npz"),
    ("train-data-empty", "train lenet5 --data {empty.npz} -o OUT/m.keras", "empty.npz"),
    ("train-data-corrupt", "train lenet5 --data {corrupt.npz} -o OUT/m.keras", "corrupt.npz"),
    ("train-model-missing", "train {missing.keras} --data digits -o OUT/m.keras", "missing.keras"),
    ("train-classifier-on-detection", "train lenet5 --data scenes:digits -o OUT/m.keras", "detection set"),
    ("train-detector-on-classification", "train centernet_mobilenet_v1 --data digits -o OUT/m.keras",
     "classification set"),
    ("train-masks-size-differs", "train lenet5 --data {masks-size} -o OUT/m.keras",
     "im2.png: mask is 16x10 pixels, its image im2.png is 16x12"),
    ("train-epochs-out-of-range", "train lenet5 --epochs 0 -o OUT/m.keras", "--epochs"),
    ("train-strides-scalar", "train ssdlite_mobilenet_v2 --data scenes:digits -O strides=8 -o OUT/m.keras",
     "`strides` takes a list"),
    # convert: model files, options
    ("convert-missing", "convert {missing.keras} -o OUT/m.tflite", "missing.keras"),
    ("convert-empty", "convert {empty.keras} -o OUT/m.tflite", "empty.keras"),
    ("convert-corrupt-keras", "convert {corrupt.keras} -o OUT/m.tflite", "corrupt.keras"),
    ("convert-corrupt-tflite", "convert {corrupt.tflite} -o OUT/m.tflite", "corrupt.tflite"),
    ("convert-wrong-kind", "convert {notes.txt} -o OUT/m.tflite", "notes.txt"),
    ("convert-quant-unknown", "convert {lenet5.keras} --quant int4 -o OUT/m.tflite", "--quant"),
    ("convert-calibration-missing", "convert {lenet5.keras} --quant int8 --calibration {missing-dir} "
                                    "-o OUT/m.tflite", "no-such-folder"),
    ("convert-calibration-masks-empty", "convert {lenet5.keras} --quant int8 --calibration {masks-empty} "
                                        "-o OUT/m.tflite", "images: no images"),
    # convert --precision: plans, and precisions the target cannot run
    ("convert-precision-unknown-op", "convert {lenet5.keras} --quant int8 --precision CONV2D=int16 -o OUT/m.tflite",
     "is no TFLite op type (did you mean CONV_2D?), got 'CONV2D'"),
    ("convert-precision-unknown-precision", "convert {lenet5.keras} --quant int8 --precision CONV_2D=int4 "
                                            "-o OUT/m.tflite", "int4"),
    ("convert-precision-bad-regex", "convert {lenet5.keras} --quant int8 --precision .*(conv=int16 -o OUT/m.tflite",
     "not a valid regex"),
    ("convert-precision-plan-missing", "convert {lenet5.keras} --quant int8 --precision {missing.yaml} "
                                       "-o OUT/m.tflite", "missing.yaml"),
    ("convert-precision-plan-corrupt", "convert {lenet5.keras} --quant int8 --precision {corrupt.yaml} "
                                       "-o OUT/m.tflite", "corrupt.yaml"),
    ("convert-precision-plan-empty", "convert {lenet5.keras} --quant int8 --precision {empty.yaml} -o OUT/m.tflite",
     "empty.yaml"),
    ("convert-precision-not-int8", "convert {lenet5.keras} --quant float16 --precision CONV_2D=int16 "
                                   "-o OUT/m.tflite", "--precision needs --quant int8"),
    ("convert-precision-edgetpu", "convert {lenet5.keras} --quant int8 --calibration digits --num-calibration 8 "
                                  "--target edgetpu --precision CONV_2D=int16 -o OUT/m.tflite",
     "--target edgetpu runs int8 only: the plan puts CONV_2D("),
    ("convert-precision-tflm-float", "convert {lenet5.keras} --quant int8 --calibration digits --num-calibration 8 "
                                     "--target tflm --precision FULLY_CONNECTED=float -o OUT/m.tflite",
     "--target tflm is integer-only: the plan puts FULLY_CONNECTED("),
    # eval: model files, data, tasks, detector heads
    ("eval-missing", "eval {missing.tflite} --data digits", "missing.tflite"),
    ("eval-empty", "eval {empty.tflite} --data digits", "empty.tflite"),
    ("eval-corrupt", "eval {corrupt.tflite} --data digits", "corrupt.tflite"),
    ("eval-wrong-kind", "eval {photo.png} --data digits", "photo.png"),
    ("eval-data-missing", "eval {lenet5.keras} --data {missing-dir}", "no-such-folder"),
    ("eval-masks-missing", "eval {lenet5.keras} --data {masks-missing}", "im2.png: no mask"),
    ("eval-masks-class-out-of-range", "eval {lenet5.tflite} --data {masks-index}", "im2.png: class index 4"),
    ("eval-limit-out-of-range", "eval {lenet5.keras} --data digits --limit 0", "--limit"),
    ("eval-classifier-on-detection", "eval {lenet5.keras} --data scenes:digits", "detection set"),
    ("eval-detector-on-classification", "eval {det.keras} --data digits", "classification set"),
    ("eval-segmenter-on-classification", "eval {seg.keras} --data digits", "a classification set, but"),
    ("eval-classifier-on-masks", "eval {lenet5.keras} --data {masks-good}", "a segmentation set, but"),
    ("eval-detector-on-masks", "eval {det.keras} --data {masks-good}", "a segmentation set, but"),
    ("eval-segmenter-class-above-model", "eval {seg.keras} --data {masks-good}",
     "has 4 classes but the model was trained on 2"),
    ("eval-head-without-anchors", "eval {ssd-no-anchors.keras} --data scenes:digits", "anchors"),
    ("eval-head-without-variances", "eval {ssd-no-variances.keras} --data scenes:digits", "variances"),
    # compare
    ("compare-missing", "compare {lenet5.keras} {missing.tflite} --data digits", "missing.tflite"),
    ("compare-corrupt", "compare {lenet5.keras} {corrupt.tflite} --data digits", "corrupt.tflite"),
    ("compare-wrong-kind", "compare {lenet5.keras} {lenet5.keras} --data digits", ".tflite"),
    ("compare-masks-colour-outside-palette", "compare {lenet5.keras} {lenet5.tflite} --data {masks-colour}",
     "im2.png: colour (1, 2, 3) at pixel (x=7, y=5) is not in the VOC colour map"),
    ("compare-classifier-on-detection", "compare {lenet5.keras} {lenet5.tflite} --data scenes:digits",
     "detection set"),
    ("compare-detector-on-classification", "compare {det.keras} {det.tflite} --data digits", "classification set"),
    ("compare-head-without-anchors", "compare {ssd-no-anchors.keras} {ssd.tflite} --data scenes:digits --limit 4",
     "anchors"),
    ("compare-head-without-variances",
     "compare {ssd-no-variances.keras} {ssd.tflite} --data scenes:digits --limit 4", "variances"),
    # bench (a failed bench is a row in its database, by design: EDGECNN_DB is outside OUT)
    ("bench-missing", "bench {missing.tflite}", "missing.tflite"),
    ("bench-empty", "bench {empty.tflite}", "empty.tflite"),
    ("bench-corrupt", "bench {corrupt.tflite}", "corrupt.tflite"),
    ("bench-wrong-kind", "bench {lenet5.keras}", "lenet5.keras"),
    ("bench-device-missing", "bench {lenet5.tflite} --device {missing.yaml}", "missing.yaml"),
    ("bench-data-missing", "bench {lenet5.tflite} --data {missing.npz}", "missing.npz"),
    ("bench-masks-unreadable", "bench {lenet5.tflite} --data {masks-unreadable} --limit 4",
     "im2.png: not a readable PNG mask"),
    ("bench-classifier-on-detection", "bench {lenet5.tflite} --data scenes:digits --limit 4", "detection set"),
    ("bench-detector-on-classification", "bench {det.tflite} --data digits --limit 4", "classification set"),
    # the other commands
    ("edgetpu-check-missing", "edgetpu-check {missing.tflite}", "missing.tflite"),
    ("edgetpu-check-corrupt", "edgetpu-check {corrupt.tflite}", "corrupt.tflite"),
    ("export-c-empty", "export-c {empty.tflite} -o OUT/model", "empty.tflite"),
    ("export-c-wrong-kind", "export-c {lenet5.keras} -o OUT/model", "lenet5.keras"),
    ("mcu-check-corrupt", "mcu-check {corrupt.tflite}", "corrupt.tflite"),
    ("mcu-check-ram-out-of-range", "mcu-check {lenet5.tflite} --ram -5K", "-5K"),
    ("run-missing", "run {missing.yaml} -o OUT/run", "missing.yaml"),
    ("run-empty", "run {empty.yaml} -o OUT/run", "empty.yaml"),
    ("run-corrupt", "run {corrupt.yaml} -o OUT/run", "corrupt.yaml"),
    ("run-strides-scalar", "run {strides-scalar.yaml} -o OUT/run", "`strides` takes a list"),
    ("report-missing", "report {missing-dir} -o OUT/report.html", "no-such-folder"),
    ("report-db-corrupt", "report --db {corrupt.sqlite} -o OUT/report.html", "corrupt.sqlite"),
    ("history-db-corrupt", "history --db {corrupt.sqlite}", "corrupt.sqlite"),
    ("devices-check-missing", "devices check {missing.yaml}", "missing.yaml"),
    ("devices-check-empty", "devices check {empty.yaml}", "empty.yaml"),
    ("flash-missing", "flash {missing.tflite} --device local-cpu", "missing.tflite"),
    ("deployed-not-a-board", "deployed --device local-cpu", "local-cpu"),
    # Model Explorer: the overlay compare writes, the viewer
    ("compare-explorer-missing-folder", "compare {lenet5.tflite} {lenet5.tflite} --data digits --limit 4 "
                                        "--explorer OUT/none/e.json", "does not exist"),
    ("explore-missing", "explore {missing.tflite} --no-browser", "missing.tflite"),
    ("explore-overlay-corrupt", "explore {lenet5.tflite} --overlay {corrupt.yaml} --no-browser", "corrupt.yaml"),
]


# Cases run as a real `python -m edgecnn.cli` process (see the module docstring); the rest run in this process.
IN_A_PROCESS = {
    "unknown-command",  # click's own usage error, rewritten to one line by the group
    "train-model-missing",  # a training's request refused before it changes process-wide state (op determinism)
    "convert-corrupt-keras",  # a bad file where TensorFlow loads it (its start-up noise must stay silent)
    "eval-head-without-anchors",  # a detector head checked after the model loads
    "bench-corrupt",  # a failed bench, written as a row of its own database
    "run-strides-scalar",  # a recipe, through the pipeline
}


def _argv(template: str, inputs: dict[str, Path], out: Path) -> list[str]:
    argv = []
    for word in template.split():
        if word.startswith("{") and word.endswith("}"):
            argv.append(str(inputs[word[1:-1]]))
        else:
            argv.append(word.replace("OUT", str(out)))
    return argv


@pytest.mark.parametrize("template, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(inputs, tmp_path, request, template, needle):
    out = tmp_path / "out"
    out.mkdir()
    run = run_cli if request.node.callspec.id in IN_A_PROCESS else run_cli_in_process
    proc = run(*_argv(template, inputs, out), cwd=out, env={"EDGECNN_DB": str(tmp_path / "results.sqlite"),
                                                          "HOME": str(tmp_path / "home")})
    assert_one_line_error(proc, needle)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == []  # nothing written, whole or half


def test_catalogue_covers_every_command():
    """A new command joins the catalogue (`devices list` takes no input that could be bad)."""
    from edgecnn.cli import main

    def names(group, prefix=""):
        for name, cmd in group.commands.items():
            yield from names(cmd, f"{prefix}{name} ") if hasattr(cmd, "commands") else [f"{prefix}{name}"]

    commands = set(names(main))
    covered = {n for n in commands for _, line, _ in CASES if line == n or line.startswith(n + " ")}
    assert commands - covered == {"devices list"}


def test_in_a_process_names_cases():
    """Every case meant to run as a real process is one of the catalogue's (a renamed case would else slip in)."""
    assert IN_A_PROCESS <= {c[0] for c in CASES}
