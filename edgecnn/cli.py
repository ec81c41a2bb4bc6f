"""The `edgecnn` command line: click commands only — parse, call one function of `edgecnn.api` (or of a stage), print.

Every heavy import (TensorFlow, Keras, LiteRT) happens inside a command, so `edgecnn --help` stays instant.
An `EdgecnnError` becomes one line on stderr and exit code 1; Ctrl-C becomes exit code 130.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings

import click

from edgecnn import __version__
from edgecnn.errors import EdgecnnError, EdgecnnWarning
from edgecnn.targets import DEFAULT as DEFAULT_TARGET, TARGETS


class _Group(click.Group):
    """A click group that turns project errors, bad command lines and Ctrl-C into one line and a non-zero exit."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # a bad option of `edgecnn` itself
            _usage_line(exc)

    def invoke(self, ctx):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
                warnings.simplefilter("always", EdgecnnWarning)
                return super().invoke(ctx)
        except EdgecnnError as exc:
            click.echo(f"edgecnn: error: {exc}", err=True)
            sys.exit(1)
        except click.UsageError as exc:  # a bad command, option or argument
            _usage_line(exc)
        except KeyboardInterrupt:
            click.echo("edgecnn: interrupted", err=True)
            sys.exit(130)


def _show_warning(python_show, message, category, filename, lineno, file=None, line=None):
    """An `EdgecnnWarning` is one line on stderr, `edgecnn: warning: ...`; any other warning goes to `python_show`
    (what `warnings.showwarning` was when the command started)."""
    if issubclass(category, EdgecnnWarning):
        click.echo(f"edgecnn: warning: {message}", err=True)
    else:
        python_show(message, category, filename, lineno, file, line)


def _usage_line(exc: click.UsageError) -> None:
    """A bad command line as one line and click's exit code 2 (click's own form is 3-4 lines: usage, a hint, the
    error); `edgecnn` or a group without arguments still shows its help."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc
    where = exc.ctx.command_path if exc.ctx else "edgecnn"
    click.echo(f"edgecnn: error: {exc.format_message()} (see `{where} --help`)", err=True)
    sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
def main() -> None:
    """edgecnn: compact CNNs from Keras to edge devices.

    build -> train -> convert -> compare -> bench -> deploy, on bundled data or your own.
    """


def echo_json(obj) -> None:
    """Print `obj` as indented JSON on stdout (the machine-readable form of every command)."""
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


# --- foundation: zoo, data, train, run --------------------------------------------------------------------------


def _parse_knobs(options: tuple[str, ...]) -> dict:
    """`-O alpha=0.5 -O minimalistic=true` -> {"alpha": 0.5, "minimalistic": True} (YAML scalars)."""
    import yaml

    knobs = {}
    for opt in options:
        if "=" not in opt:
            raise EdgecnnError(f"option {opt!r}: expected KEY=VALUE (e.g. alpha=0.5)")
        key, value = opt.split("=", 1)
        knobs[key.strip()] = yaml.safe_load(value)
    return knobs


def _parse_shape(text: str | None):
    if not text:
        return None
    try:
        parts = [int(v) for v in text.lower().replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise EdgecnnError(f"--input-shape {text!r}: expected HxWxC, e.g. 96x96x3") from None
    if len(parts) != 3:
        raise EdgecnnError(f"--input-shape {text!r}: expected HxWxC, e.g. 96x96x3")
    return tuple(parts)


@main.command()
@click.argument("pattern", default="*")
@click.option("--num-classes", default=1000, show_default=True, help="Classes of the head used for counting.")
@click.option("--input-shape", help="HxWxC to count at (default: each model's own default input).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(pattern, num_classes, input_shape, as_json):
    """List zoo models matching PATTERN (e.g. 'mobilenet*') with params and MACs."""
    from edgecnn import api

    rows = api.models(pattern, num_classes, _parse_shape(input_shape))
    if as_json:
        echo_json(rows)
        return
    from edgecnn.console import print_table

    print_table("edgecnn model zoo", ["name", "family", "input", "params", "MACs"],
                [[r["name"], r["family"], "x".join(map(str, r["input_shape"])), f"{r['params']:,}",
                  f"{r['macs'] / 1e6:,.1f}M"] for r in rows],
                caption="builder options: `edgecnn models --json`; MACs counted from the built graph")


@main.command()
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .keras file.")
@click.option("--input-shape", help="HxWxC, e.g. 96x96x3 (default: the architecture's).")
@click.option("--num-classes", default=1000, show_default=True)
@click.option("-O", "--option", "options", multiple=True, help="Builder option KEY=VALUE (e.g. alpha=0.5).")
@click.option("--json", "as_json", is_flag=True)
def build(name, output, input_shape, num_classes, options, as_json):
    """Build zoo model NAME (untrained unless -O weights=...) and save it as .keras."""
    from edgecnn import api

    info = api.build(name, output, input_shape=_parse_shape(input_shape), num_classes=num_classes,
                     options=_parse_knobs(options)).to_dict()
    if as_json:
        echo_json(info)
    else:
        click.echo(f"{output}: {name} {info['input_shape']} params {info['params']:,} MACs {info['macs']:,}")


_SCALING = (("--scale", "Model without a saved spec: input = pixel*scale + offset."), ("--offset", None),
            ("--mean", "Model without a saved spec: input = (pixel - mean) / std."), ("--std", None))


def _scaling_options(command):
    """--scale/--offset and --mean/--std (`_SCALING`): how a model without a saved spec takes 0..255 pixels."""
    for name, text in reversed(_SCALING):
        command = click.option(name, type=float, help=text)(command)
    return command


@main.command()
@click.argument("model")
@click.option("--data", default="digits", show_default=True,
              help="digits, fashion-mnist, an image folder, .npz; for a detector scenes:digits, a COCO or YOLO folder; "
                   "for a segmenter scenes:digits (its masks) or a mask folder (images/ + masks/).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .keras file.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", "learning_rate", default=1e-3, show_default=True, type=float)
@click.option("--val-split", default=0.1, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--input-size", type=click.IntRange(1), help="Square input side (default: the architecture's).")
@click.option("-O", "--option", "options", multiple=True, help="Builder option KEY=VALUE (e.g. alpha=0.5).")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable/non-image files in an image folder (counted).")
@click.option("--max-train-samples", type=click.IntRange(1), help="Train on this many training images, drawn with "
              "--seed (default: all).")
@click.option("--augment", default=None, help="Comma-separated training augmentations: flip, shift (a detector: flip, "
              "boxes mirrored too; a segmenter: flip, masks mirrored too). Default: none; flip,shift for a "
              "pretrained backbone. '' for none.")
@click.option("--lr-schedule", default="cosine", show_default=True, type=click.Choice(["cosine", "constant"]))
@click.option("--cut-at", metavar="LAYER", help="New classes: the top-level layer whose output feeds the new head "
              "(default: the last global pooling / Flatten of a feature map).")
@click.option("--freeze/--no-freeze", default=None, help="Freeze the backbone while the head trains (default: when "
              "the backbone is pretrained: a saved classifier given new classes, -O weights=imagenet|FILE).")
@click.option("--fine-tune-blocks", default=0, type=int, help="Then unfreeze the top N blocks (batch norm stays "
              "frozen) and train again.")
@click.option("--fine-tune-lr", type=float, help="Learning rate of that phase (default: --lr / 10).")
@click.option("--fine-tune-epochs", type=click.IntRange(1), help="Epochs of that phase (default: --epochs).")
@click.option("--qat", is_flag=True, help="Quantization-aware: train through a simulation of the int8 model (folded "
              "batch norm, int8 weights and activations); `edgecnn convert --quant int8` then uses the learned ranges.")
@click.option("--per-tensor", is_flag=True, help="With --qat: simulate per-tensor int8 weights (convert with "
              "--per-tensor).")
@_scaling_options
@click.option("--json", "as_json", is_flag=True)
def train(model, data, output, epochs, batch_size, learning_rate, val_split, seed, input_size, options, skip_bad,
          max_train_samples, augment, lr_schedule, cut_at, freeze, fine_tune_blocks, fine_tune_lr, fine_tune_epochs,
          qat, per_tensor, scale, offset, mean, std, as_json):
    """Train zoo model MODEL (a name) or fine-tune a saved model on --data; saves the preprocessing spec.

    A saved classifier of other classes gets a new head of --data's classes on its backbone (transfer learning)."""
    from edgecnn import api

    result = api.train(model, output, data=data, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       val_split=val_split, seed=seed, input_size=input_size, options=_parse_knobs(options),
                       skip_bad=skip_bad, max_train_samples=max_train_samples,
                       augment=None if augment is None else [a.strip() for a in augment.split(",") if a.strip()],
                       lr_schedule=lr_schedule, cut_at=cut_at, freeze=freeze, fine_tune_blocks=fine_tune_blocks,
                       fine_tune_lr=fine_tune_lr, fine_tune_epochs=fine_tune_epochs, qat=qat, per_tensor=per_tensor,
                       scale=scale, offset=offset, mean=mean, std=std, progress=not as_json).to_dict()
    if as_json:
        echo_json(result)
        return
    from edgecnn.console import train_lines

    for line in train_lines(result, output, data):
        click.echo(line)


def _executor_option(what: str):
    return click.option("--executor", default=None, metavar="local|ray[:ADDRESS]",
                        help=f"Where {what} runs: here (local, the default), a Ray instance started here (ray) or a "
                             "running Ray cluster (ray:HOST:6379, ray:ray://HOST:10001); needs edgecnn[ray].")


@main.command()
@click.argument("recipe", required=False)
@click.option("-o", "--out", "out_dir", help="Run directory (default: runs/<recipe name>).")
@_executor_option("each step (train, convert, eval, compare, bench)")
@click.option("--json", "as_json", is_flag=True)
def run(recipe, out_dir, executor, as_json):
    """Run the whole pipeline on RECIPE (a YAML file or a name in models/; default: quick, on bundled digits)."""
    from edgecnn import api

    summary = api.run(recipe, out_dir, executor=executor, progress=not as_json,
                      log=lambda s: click.echo(s, err=True)).to_dict()
    if as_json:
        echo_json(summary)
        return
    from edgecnn.console import print_table

    def ms(v):
        return "-" if v is None else f"{v:.3f}"

    metrics = {x["metric"] for x in summary["rows"]}
    print_table(f"edgecnn run: {summary['recipe']} on {summary['data']}",
                ["model", "precision", "device", "size", "x f32",
                 metrics.pop() if len(metrics) == 1 else "accuracy", "drop pts", "p50 ms", "p90 ms"],
                [[x["model"], x["precision"], x["device"] + (" (emulated)" if x["emulated"] else ""),
                  f"{x['size_bytes'] / 1024:,.1f} KiB", f"{x['size_ratio']:.2f}", f"{x['value']:.4f}",
                  f"{x['drop_points']:+.2f}", ms(x["p50_ms"]) if x["bench_status"] == "ok" else "failed",
                  ms(x["p90_ms"])] for x in summary["rows"]])
    click.echo(f"results in {summary['run_dir']} (database {summary['database']})")
    click.echo(f"report: {summary['report']}")


# --- convert / eval / compare -----------------------------------------------------------------------------------


@main.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .tflite file.")
@click.option("--quant", "mode", default="float32", show_default=True,
              type=click.Choice(["float32", "float16", "dynamic", "int8", "int16x8"]))
@click.option("--io", "io", type=click.Choice(["int8", "uint8", "float32", "int16"]),
              help="Input/output dtype (default: int8 for --quant int8, int16 for int16x8, else float32).")
@click.option("--per-tensor", is_flag=True, help="Per-tensor weight scales (default: per-channel).")
@click.option("--calibration", help="Any data source (its train split), e.g. photos, recipe:NAME, digits, a folder.")
@click.option("--num-calibration", default=100, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--keep-float", multiple=True, help="Layer-name pattern or op type (e.g. HARD_SWISH) left in float.")
@click.option("--allow-float-fallback", is_flag=True, help="Let ops that cannot be quantized stay in float.")
@_scaling_options
@click.option("--calibrator", default="fast", show_default=True, type=click.Choice(["fast", "stock"]))
@click.option("--calibration-method", default="minmax", show_default=True,
              type=click.Choice(["minmax", "percentile", "mse", "best"]),
              help="How each activation range is chosen: minmax (the stock converter's), percentile (99.99%), mse, "
                   "or best (tries them on held-out calibration samples, keeps the one closest to float).")
@click.option("--max-accuracy-drop", type=float, help="Guided mode: put the worst layers in int16 (where the target "
              "runs it; the plan found is written beside the output), else keep them in float, until the drop of the "
              "task's metric (points) is within this.")
@click.option("--eval-data", help="Data for --max-accuracy-drop (its test split); without labels (an image folder) "
              "the drop is in agreement with the float model.")
@click.option("--target", default=DEFAULT_TARGET, show_default=True, type=click.Choice(list(TARGETS)),
              help="Where the model runs (" + "; ".join(f"{t.name}: {t.runs_on}" for t in TARGETS.values())
              + "): picks the modes it takes, the int8 rewrite passes and the check run on the written model.")
@click.option("--no-rewrite", is_flag=True, help="Keep the converter's plain int8 graph (no rewrite passes; per-tensor: no "
              "dead-input zeroing).")
@click.option("--bias-correction", is_flag=True, help="int8: fold the mean output shift of int8 weights back into "
              "each layer's bias, measured layer by layer on the calibration samples.")
@click.option("--equalize", is_flag=True, help="int8: cross-layer equalization of conv/depthwise pairs before "
              "calibration (same float outputs, balanced channel weight ranges: for --per-tensor).")
@click.option("--quality", default="default", show_default=True, type=click.Choice(["default", "auto"]),
              help="int8: auto tries the range methods, bias correction and CLE (per-tensor), scores each on held-out "
                   "calibration samples, keeps each only if it brings the model closer to float, writes the options "
                   "kept calibrated on every sample, and says what it chose.")
@click.option("--precision", "precision", metavar="PLAN", help="int8 with per-op int16/float: a YAML plan file or "
              "rules 'MATCH=int8|int16|float,...' (MATCH: an op type like CONV_2D, or a regex on the output tensor "
              "name); the last match wins, unmatched ops are int8. Needs the `precision` extra.")
@click.option("--postprocess", default="graph", show_default=True, type=click.Choice(["graph", "numpy"]),
              help="An SSD .tflite ending in TFLite_Detection_PostProcess: graph keeps the op in float after the "
                   "int8 body (the standard recipe); numpy cuts it off (integer-only model, edgecnn decodes the boxes "
                   "with the op's anchors).")
@click.option("--graph-input", metavar="NODE", help="A TF1 frozen graph's input node, when convert cannot tell it.")
@click.option("--graph-outputs", metavar="NODE[,NODE]", help="A TF1 frozen graph's output nodes, when convert "
              "cannot tell them (a TF Object Detection API SSD export is recognised without either).")
@click.option("--verbose", is_flag=True, help="Show the converter's own log.")
@click.option("--json", "as_json", is_flag=True)
def convert(model, output, mode, io, per_tensor, calibration, num_calibration, seed, keep_float,
            allow_float_fallback, scale, offset, mean, std, calibrator, calibration_method, max_accuracy_drop, eval_data,
            target, no_rewrite, bias_correction, equalize, quality, precision, postprocess, graph_input, graph_outputs,
            verbose, as_json):
    """Convert a Keras model (.keras, .h5, SavedModel dir), a TF1 frozen graph (.pb) or a float32 .tflite to
    .tflite."""
    from edgecnn import api

    report = api.convert(model, output, quant=mode, io=io, per_tensor=per_tensor, calibration=calibration,
                         num_calibration=num_calibration, seed=seed, keep_float=keep_float,
                         allow_float_fallback=allow_float_fallback, scale=scale, offset=offset, mean=mean, std=std,
                         calibrator=calibrator, calibration_method=calibration_method,
                         max_accuracy_drop=max_accuracy_drop, eval_data=eval_data, target=target,
                         rewrite=not no_rewrite, bias_correction=bias_correction, equalize=equalize, quality=quality,
                         precision=precision, postprocess=postprocess, graph_input=graph_input,
                         graph_outputs=(graph_outputs or "").split(","), verbose=verbose,
                         log=None if as_json else (lambda s: click.echo(s, err=True))).to_dict()
    if as_json:
        echo_json(report)
        return
    from edgecnn.console import print_convert_report

    print_convert_report(report)


@main.command("eval")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", required=True, help="Labeled data source; its test split is used.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N test samples.")
@_scaling_options
@_executor_option("the evaluation (sharded over the workers)")
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(models, data, limit, scale, offset, mean, std, executor, as_json):
    """Top-1/top-5 of Keras and .tflite models (any IO dtype) on --data's test split; COCO mAP@[.5:.95] and mAP@.5
    (+ per-class AP in --json) for detectors on a detection set (scenes:digits, a COCO or YOLO folder); mIoU, pixel
    and mean accuracy (+ per-class IoU in --json) for segmenters on a set with masks (scenes:digits, a mask folder)."""
    from edgecnn import api

    rows = [r.to_dict() for r in api.evaluate_all(models, data, limit=limit, scale=scale, offset=offset, mean=mean,
                                                  std=std, executor=executor)]
    if as_json:
        echo_json(rows)
        return
    from edgecnn.console import print_table

    from edgecnn import tasks

    for name in dict.fromkeys(r["task"] for r in rows):  # one table per task, in the order met
        task, cols = tasks.get(name), tasks.get(name).eval_columns()
        print_table(f"{name} on {data} (test split, {task.metric})", ["model", *(h for h, _ in cols)],
                    [[r["model"], *(f"{r[k]:.4f}" if isinstance(r[k], float) else r[k] for _, k in cols)]
                     for r in rows if r["task"] == name])


@main.command()
@click.argument("float_model")
@click.argument("quant_model")
@click.option("--data", required=True, help="Data source (labeled or a flat folder of images); its test split.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N test samples.")
@click.option("--layers", "top_layers", default=10, show_default=True, help="Worst layers to list.")
@_scaling_options
@_executor_option("the comparison (sharded over the workers)")
@click.option("--explorer", "explorer_path", metavar="FILE.json",
              help="Also write Model Explorer node data for QUANT_MODEL's graph: FILE.json (relative RMSE of every "
                   "compared layer), FILE.precision.json and FILE.delegate.json; view with `edgecnn explore`.")
@click.option("--json", "as_json", is_flag=True)
def compare(float_model, quant_model, data, limit, top_layers, scale, offset, mean, std, executor, explorer_path,
            as_json):
    """Quantized vs float: agreement, output SNR, KL divergence and the layers that lose it; with labels also the
    accuracy drop and per-class deltas."""
    from edgecnn import api

    r = api.compare(float_model, quant_model, data, limit=limit, layers=top_layers, scale=scale, offset=offset,
                    mean=mean, std=std, executor=executor, explorer=explorer_path).to_dict()
    if as_json:
        echo_json(r)
        return
    from edgecnn.console import print_table

    from edgecnn import tasks

    lines, table = tasks.get(r.get("task")).compare_text(r)
    for line in lines:
        click.echo(line)
    if table:
        print_table(*table)
    print_table(f"worst layers ({r['layers_compared']} compared)", ["tensor", "op", "RMSE/scale", "rel RMSE",
                                                                      "max |err|"],
                [[w["tensor"][-60:], w["op"], f"{w['rmse_over_scale']:.3f}", f"{w['relative_rmse']:.4f}",
                  f"{w['max_abs_error']:.4g}"] for w in r["worst_layers"]])
    if "explorer" in r:
        files = r["explorer"]["files"]
        click.echo(f"Model Explorer node data: {', '.join(files.values())}; view: edgecnn explore {quant_model} "
                   f"--overlay {files['error']}")


@main.command()
@click.argument("model")
@click.option("--overlay", "overlays", multiple=True, metavar="FILE.json",
              help="Model Explorer node data to show on the graph (repeatable); the .precision.json and "
                   ".delegate.json files `compare --explorer` wrote beside it come along.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the local server (8080: the next free one from there).")
@click.option("--no-browser", is_flag=True, help="Only start the server and print its address.")
def explore(model, overlays, port, no_browser):
    """Open MODEL (.tflite) in Model Explorer, Google's graph viewer, with per-node overlays (e.g. the error
    `compare --explorer` writes); Ctrl-C stops it. Needs the optional extra: pip install 'edgecnn[explorer]'."""
    from edgecnn.report.explorer import explore as run_explore

    run_explore(model, overlays, port, browser=not no_browser)


# --- bench / history / devices ----------------------------------------------------------------------------------


def _bench_several(docs, as_json) -> None:
    """`bench --device A --device B ...`: one table of every device's run."""
    if as_json:
        echo_json(docs)
    else:
        from edgecnn.console import devices_table, show

        show(devices_table(docs))
    failed = [d for d in docs if d.get("status") != "ok"]
    if failed:
        raise EdgecnnError(f"{len(failed)} of {len(docs)} devices failed; first: {failed[0].get('error')} "
                           f"(recorded as failed run {failed[0].get('run_id')})")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="With no subcommand: the profiles as JSON.")
@click.pass_context
def devices(ctx, as_json):
    """Device profiles (devices/*.yaml and ~/.config/edgecnn/devices/): list them, check a board.

    With no subcommand: the same as `devices list`.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(devices_list, as_json=as_json)


@devices.command("list")
@click.option("--json", "as_json", is_flag=True)
def devices_list(as_json):
    """List the device profiles that `--device NAME` finds (a profile that does not parse says why)."""
    from edgecnn import api

    rows = api.devices()
    if as_json:
        echo_json(rows)
        return
    from edgecnn.console import print_table

    print_table("device profiles", ["name", "kind", "where", "description"],
                [[r["name"] + (" (emulated)" if r["emulated"] else ""), r["kind"], r["where"],
                  f"BAD PROFILE: {r['error']}" if r.get("error") else r["description"]] for r in rows])


@devices.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def devices_check(name, as_json):
    """Reach board NAME over SSH and report its Python, LiteRT, CPU and disk, and what is missing.

    Exit code 0 when the board has everything the profile needs, 1 otherwise (each missing part is listed with
    the command that installs it).
    """
    from edgecnn import api
    from edgecnn.devices.profiles import load_profile

    info = api.check_device(name).to_dict()
    if as_json:
        echo_json(info)
    else:
        profile = load_profile(name)  # what the report is read against: its Python, its delegate
        gib = info["disk_free_bytes"] / 2 ** 30 if info.get("disk_free_bytes") is not None else None
        click.echo(f"{info['device']}: reachable at {info['user'] or ''}@{info['host']} in {info['connect_s']:.2f} s"
                   + ("  [EMULATED: timings are not board timings]" if info["emulated"] else ""))
        click.echo(f"  arch      {info['arch']}  ({info['os']}, kernel {info['kernel']})")
        click.echo(f"  cpu       {info['cpu'] or '?'}  x{info['cores'] or '?'}")
        click.echo(f"  python    {info['python'] or 'MISSING'}  ({info['python_path'] or profile.python})")
        click.echo(f"  numpy     {info['numpy'] or 'missing'}")
        click.echo(f"  litert    ai-edge-litert {info['ai_edge_litert'] or 'missing'}, "
                   f"tflite-runtime {info['tflite_runtime'] or 'missing'}")
        if profile.delegate == "edgetpu":
            click.echo(f"  edgetpu   {info['libedgetpu'] or 'libedgetpu.so.1 missing'}")
        click.echo(f"  disk      {gib:.1f} GiB free in {info['work_dir']}" if gib is not None else "  disk      ?")
        for m in info["missing"]:
            click.echo(f"  MISSING   {m['what']}: {m['install']}")
        if not info["missing"]:
            click.echo("  ready")
    if info["missing"]:
        sys.exit(1)


@main.command("edgetpu-check")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--runtime-version", type=click.IntRange(10, 16), default=None,
              help="Edge TPU runtime to check against [default: 14, the latest].")
@click.option("--json", "as_json", is_flag=True, help="The full report, op by op.")
def edgetpu_check(model, runtime_version, as_json):
    """Offline Edge TPU preflight of MODEL.tflite (no Coral software needed).

    Checks Coral's model requirements (integer-only, static shapes, batch 1, tensor rank) and every op against
    Coral's supported-op list, and shows where edgetpu_compiler would cut the graph back to the CPU: the first
    unsupported op and every op after it. Exit code 0 when the model maps fully, 2 when part of it would run on
    the CPU, 1 for an error (e.g. a float model).
    """
    from edgecnn import api
    from edgecnn.console import preflight_table

    report = api.edgetpu_check(model, runtime_version=runtime_version).to_dict()
    if as_json:
        echo_json(report)
    else:
        click.echo(preflight_table(report))
    if not report["maps_fully"]:
        sys.exit(2)


@main.command()
@click.argument("model")
@click.option("--device", "devices", multiple=True, default=("local-cpu",), show_default=True,
              help="Device profile: a name or a .yaml path; repeat to bench on several devices in parallel.")
@click.option("--threads", type=int, default=None, help="CPU threads [default: the device profile's].")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed inferences after the first.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed inferences (at least).")
@click.option("--min-secs", type=float, default=0.0, show_default=True, help="Keep timing for at least S seconds.")
@click.option("--no-xnnpack", is_flag=True, help="Plain TFLite kernels, no XNNPACK delegate.")
@click.option("--op-profile", is_flag=True, help="Per-op report (ops and where they run).")
@click.option("--data", default=None, help="Real inputs (top-1 if labeled; a detector's mAP if it has boxes; a "
              "segmenter's mIoU if it has masks): a data source, or an .npz of x/y (a foreign detector's true boxes: "
              "'boxes').")
@click.option("--limit", type=int, default=1000, show_default=True, help="At most this many --data samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--head", default=None, metavar="KIND|JSON",
              help="Detection head of a foreign model (blazeface, tflite_detection_postprocess, or a JSON "
                   "description) [default: the model's spec, else recognised from its outputs].")
@click.option("--db", "db_path", default=None, help="Results database [default: $EDGECNN_DB or the user data dir].")
@click.option("--json", "as_json", is_flag=True, help="Print the full result document as JSON.")
def bench(model, devices, threads, warmup, runs, min_secs, no_xnnpack, op_profile, data, limit, seed, head, db_path,
          as_json):
    """Benchmark MODEL.tflite on a device (this CPU by default) and store the result.

    Runs the board runner (edgecnn/board/runner.py) in a fresh process: init, first inference, warm-up, then
    steady-state latency (mean, std, min, p50, p90, p99, max), peak RSS, delegate partitions; top-1 with --data.
    Every run, failed or not, becomes a row in the results database (see `edgecnn history`).
    A detector (edgecnn's, or a foreign BlazeFace-style or TFLite_Detection_PostProcess .tflite) also gets its
    post-processing timed apart from invoke (`postprocess` in --json); with --data, its accuracy is the COCO mAP@.5
    and mAP@[.5:.95] of the boxes the device found (as `edgecnn eval` computes them), not a top-1. A segmenter's
    arg-max is timed the same way; with --data the device returns one confusion matrix, scored here as mIoU.
    """
    from edgecnn import api

    try:
        docs = api.bench_records(model, devices, data=data, limit=limit, db=db_path, threads=threads, warmup=warmup,
                                 runs=runs, min_secs=min_secs, xnnpack=not no_xnnpack, op_profile=op_profile,
                                 seed=seed, head=head)
    except api.RunsInterrupted as exc:
        click.echo(f"edgecnn: interrupted ({exc})", err=True)
        sys.exit(130)
    if len(dict.fromkeys(devices)) > 1:
        _bench_several(docs, as_json)
        return
    [doc] = docs
    if as_json:
        echo_json(doc)
    if doc.get("interrupted"):
        click.echo(f"edgecnn: interrupted (recorded as failed run {doc['run_id']})", err=True)
        sys.exit(130)
    if doc["status"] != "ok":
        raise EdgecnnError(f"{doc['error']} (recorded as failed run {doc['run_id']})")
    if not as_json:
        from edgecnn.console import bench_table, op_table, show

        show(bench_table(doc))
        if op_table(doc) is not None:
            show(op_table(doc))


@main.command()
@click.option("--model", default=None, help="A model file, a sha256 prefix, or part of the model's path.")
@click.option("--device", default=None, help="Only runs on this device profile.")
@click.option("--limit", type=int, default=50, show_default=True, help="Show the newest N runs.")
@click.option("--db", "db_path", default=None, help="Results database [default: $EDGECNN_DB or the user data dir].")
@click.option("--json", "as_json", is_flag=True)
def history(model, device, limit, db_path, as_json):
    """List stored bench runs, each compared with the previous comparable one.

    Comparable = same model hash, device, threads and XNNPACK. REGRESSION p50 (or p90) means the newer run is
    slower by more than max(spread) of the two runs, where spread = max(std, p90 - p50).
    """
    from edgecnn import api

    rows = api.history(model=model, device=device, limit=limit, db=db_path)
    if as_json:
        echo_json(rows)
        return
    from edgecnn.console import history_table, show

    show(history_table(rows))


# --- deploy -----------------------------------------------------------------------------------------------------


@main.command("export-c")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="model_data", show_default=True,
              help="Output base path: writes OUTPUT.c and OUTPUT.h.")
@click.option("--name", default=None, help="C identifier of the array [default: the output's file name].")
@click.option("--json", "as_json", is_flag=True)
def export_c(model, output, name, as_json):
    """Write MODEL.tflite as a 16-byte aligned C array (+ header) for TFLM, ESP-IDF, Arduino or Zephyr."""
    from edgecnn import api

    info = api.export_c(model, output, name=name).to_dict()
    if as_json:
        echo_json(info)
        return
    click.echo(f"{info['source']} + {info['header']}: {info['identifier']}[{info['bytes']}] "
               f"sha256 {info['sha256'][:16]}... fnv1a32 {info['fnv1a32']}")


def _kb(n) -> str:
    return "-" if n is None else f"{n} B ({n / 1024:.1f} KB)"


@main.command("mcu-check")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--device", default=None, help="An MCU profile (kind: mcu), e.g. cortex-m4-256k: sets the budgets.")
@click.option("--ram", default=None, help="RAM budget for the tensor arena, e.g. 256K [default: the device's].")
@click.option("--flash", default=None, help="Flash budget for the model, e.g. 1M [default: the device's].")
@click.option("--data", default=None, help="Data source: top-1 under TFLM vs LiteRT on its test split.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="At most this many --data samples.")
@click.option("--allow-float", is_flag=True, help="Check a model with float tensors instead of refusing it.")
@click.option("--json", "as_json", is_flag=True)
def mcu_check(model, device, ram, flash, data, limit, allow_float, as_json):
    """Run MODEL.tflite in TensorFlow Lite for Microcontrollers on this host: arena, flash, missing ops, fit.

    Exits 1 (one line on stderr) when TFLM cannot run it or it does not fit the budget.
    """
    from edgecnn import api

    result = api.mcu_check(model, device=device, ram=ram, flash=flash, data=data, limit=limit,
                           allow_float=allow_float)
    r = result.to_dict()
    if as_json:
        echo_json(r)
    else:
        click.echo(f"{r['model']}" + (f" on {r['device']}" if r["device"] else "") + f" (TFLM {r['tflm_version']})")
        click.echo(f"  runs in TFLM   {'yes' if r['runs_in_tflm'] else 'no'}"
                   + (f"; missing ops: {', '.join(r['tflm_missing_ops'])}" if r["tflm_missing_ops"] else ""))
        click.echo(f"  tensor arena   {_kb(r.get('arena_bytes'))}  (budget {_kb(r['ram_budget'])})")
        click.echo(f"  flash (model)  {_kb(r['flash_bytes'])}  (budget {_kb(r['flash_budget'])}; code not included)")
        if r.get("accuracy"):
            a = r["accuracy"]
            agree = "-" if a["prediction_agreement"] is None else f"{a['prediction_agreement']:.2%}"
            click.echo(f"  {a['metric']} ({a['data']}, {a['samples']} test samples): TFLM {a['value_tflm']:.4f}, "
                       f"LiteRT {a['value_litert']:.4f}, agreement {agree} "
                       f"(identical outputs {a['identical_outputs']:.1%})")
        if r["fits"] is not None and not r["problems"]:
            click.echo("  fits the budget")
    if result.failure:
        raise EdgecnnError(result.failure)


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--device", required=True, help="SSH board profile: a name or a .yaml path.")
@click.option("--name", default=None, help="Name on the board [default: MODEL's file name without .tflite].")
@click.option("--smoke", is_flag=True, help="Run one inference on the board before installing (IO checked).")
@click.option("--rollback", is_flag=True, help="Put the previous version of --name back instead of flashing.")
@click.option("--db", "db_path", default=None, help="Results database [default: $EDGECNN_DB or the user data dir].")
@click.option("--json", "as_json", is_flag=True)
def flash(model, device, name, smoke, rollback, db_path, as_json):
    """Install MODEL.tflite on an SSH board: temp copy, sha256 checked there, atomic rename; previous kept.

    `flash --rollback --device D --name N` restores the previous version. Every flash is recorded in the results
    database. The board always keeps a complete model: a failed copy, check or --smoke leaves the old one.
    """
    from edgecnn import api

    if rollback:
        if smoke:
            raise EdgecnnError("--smoke applies to a flash, not to --rollback")
        doc = api.rollback(device, name=name, model=model, db=db_path).to_dict()
    else:
        if not model:
            raise EdgecnnError("flash: give MODEL.tflite (or --rollback)")
        doc = api.flash(model, device, name=name, smoke=smoke, db=db_path).to_dict()
    if as_json:
        echo_json(doc)
    elif rollback:
        click.echo(f"{doc['device']}: rolled back {doc['name']} to {doc['model_sha256'][:16]} "
                   f"(was {str(doc['previous_sha256'])[:16]})")
    elif doc.get("unchanged"):
        click.echo(f"{doc['device']}: {doc['name']} is already {doc['model_sha256'][:16]}; nothing changed")
    else:
        click.echo(f"{doc['device']}: {doc['board_path']} sha256 {doc['model_sha256'][:16]} verified on the board"
                   + (", smoke test ok" if smoke else "")
                   + (f"; previous {doc['previous_sha256'][:16]} kept" if doc.get("previous_sha256") else ""))


@main.command()
@click.option("--device", required=True, help="SSH board profile: a name or a .yaml path.")
@click.option("--json", "as_json", is_flag=True)
def deployed(device, as_json):
    """List the models flashed on a board, with hashes computed on the board and dates."""
    from edgecnn import api

    info = api.deployed(device).to_dict()
    if as_json:
        echo_json(info)
        return
    if not info["models"]:
        click.echo(f"{info['device']}: nothing deployed in {info['dir']}")
        return
    from edgecnn.console import print_table

    print_table(f"deployed on {info['device']} ({info['dir']})" + (" [emulated]" if info["emulated"] else ""),
                ["name", "sha256", "bytes", "installed", "previous"],
                [[m["name"], m["sha256"][:16], f"{m['size']:,}", m["installed_at"],
                  f"{m['previous']['sha256'][:16]} ({m['previous']['installed_at']})" if m["previous"] else "-"]
                 for m in info["models"]])

# --- report -----------------------------------------------------------------------------------------------------


@main.command()
@click.argument("source", required=False, type=click.Path())
@click.option("--db", "db_path", default=None,
              help="Report a results database instead of a run directory [default: $EDGECNN_DB or the user data dir].")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="report.html (self-contained) or report.md (+ PNGs beside it) [default: SOURCE/report.html, "
                   "else ./report.html].")
@click.option("--json", "as_json", is_flag=True)
def report(source, db_path, output, as_json):
    """Write an HTML or Markdown report of a run directory (SOURCE, from `edgecnn run`) or of a results database.

    A table (model x precision x device: size, top-1, drop vs float, p50/p90, peak memory, delegate partitions) and
    plots: accuracy vs latency with the Pareto front, latency distributions, sizes, per-class change of the worst
    int8 model, and p50 history when a configuration was benched more than once. A device that failed keeps its
    rows, marked failed with its error.
    """
    from edgecnn import api

    info = api.report(source, output, db=db_path).to_dict()
    if as_json:
        echo_json(info)
        return
    failed = info["failed"]
    click.echo(f"{info['output']}: {info['rows']} configurations, {len(info['plots'])} plots"
               + (f" (+ {len(info['images'])} PNG files beside it)" if info["images"] else "")
               + (f"; {len(failed)} benches failed, on {', '.join(sorted({f['device'] for f in failed}))}"
                  if failed else ""))
    for note in info["notes"]:
        click.echo(f"note: {note}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
