"""The `edgecnn` command line: click commands only — parse, call one stage function, print.

Every heavy import (TensorFlow, Keras, LiteRT) happens inside a command, so `edgecnn --help` stays instant.
An `EdgecnnError` becomes one line on stderr and exit code 1; Ctrl-C becomes exit code 130.
"""

from __future__ import annotations

import json
import sys

import click

from edgecnn import __version__
from edgecnn.errors import EdgecnnError


class _Group(click.Group):
    """A click group that turns project errors and Ctrl-C into one line and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgecnnError as exc:
            click.echo(f"edgecnn: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("edgecnn: interrupted", err=True)
            sys.exit(130)


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
    from edgecnn.zoo import list_models
    from edgecnn.zoo.listing import model_rows

    if not list_models(pattern):
        raise EdgecnnError(f"no zoo model matches {pattern!r}; `edgecnn models` lists them all")
    rows = model_rows(pattern, num_classes, _parse_shape(input_shape))
    if as_json:
        echo_json(rows)
        return
    from edgecnn.report.tables import print_table

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
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build as build_model
    from edgecnn.zoo.counting import summarize

    model = build_model(name, _parse_shape(input_shape), num_classes, **_parse_knobs(options))
    spec = default_spec(name, model.input_shape[1:], [str(i) for i in range(num_classes)], "")
    save_model(model, output, spec)
    info = {"output": output, "name": name, "input_shape": list(model.input_shape[1:]), **summarize(model)}
    if as_json:
        echo_json(info)
    else:
        click.echo(f"{output}: {name} {info['input_shape']} params {info['params']:,} MACs {info['macs']:,}")


@main.command()
@click.argument("model")
@click.option("--data", default="digits", show_default=True, help="digits, fashion-mnist, an image folder, .npz.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .keras file.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", "learning_rate", default=1e-3, show_default=True, type=float)
@click.option("--val-split", default=0.1, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--input-size", type=click.IntRange(1), help="Square input side (default: the architecture's).")
@click.option("-O", "--option", "options", multiple=True, help="Builder option KEY=VALUE (e.g. alpha=0.5).")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable/non-image files in an image folder (counted).")
@click.option("--json", "as_json", is_flag=True)
def train(model, data, output, epochs, batch_size, learning_rate, val_split, seed, input_size, options, skip_bad,
          as_json):
    """Train zoo model MODEL (a name) or fine-tune a saved model on --data; saves the preprocessing spec."""
    from edgecnn.train.trainer import TrainConfig, train as run_train

    cfg = TrainConfig(model, data, epochs, batch_size, learning_rate, val_split, seed, input_size,
                      _parse_knobs(options), skip_bad)
    result = run_train(cfg, output, progress=not as_json)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{output}: test top-1 {result['test_top1']:.4f} on {result['test_samples']} {data} images; "
                   f"loss {result['loss_first_epoch']:.3f} -> {result['loss_last_epoch']:.3f}; "
                   f"{result['wall_seconds']:.1f} s")


@main.command()
@click.argument("recipe", required=False)
@click.option("-o", "--out", "out_dir", help="Run directory (default: runs/<recipe name>).")
@click.option("--json", "as_json", is_flag=True)
def run(recipe, out_dir, as_json):
    """Run the whole pipeline on RECIPE (a YAML file or a name in models/; default: quick, on bundled digits)."""
    from edgecnn.pipeline import run_pipeline
    from edgecnn.recipe import load_recipe

    r = load_recipe(recipe)
    out_dir = out_dir or f"runs/{r.name}"
    summary = run_pipeline(r, out_dir, log=lambda s: click.echo(s, err=True), progress=not as_json)
    if as_json:
        echo_json(summary)
        return
    from edgecnn.report.tables import print_table

    print_table(f"edgecnn run: {r.name} on {r.data}", ["model", "precision", "top-1", "params", "MACs", "file"],
                [[x["model"], x["precision"], f"{x['top1']:.4f}", f"{x['params']:,}", f"{x['macs'] / 1e6:.2f}M",
                  x["path"]] for x in summary["rows"]])
    click.echo(f"results in {summary['run_dir']}")


# --- convert / eval / compare -----------------------------------------------------------------------------------

# --- bench / history / devices ----------------------------------------------------------------------------------

# --- deploy -----------------------------------------------------------------------------------------------------

# --- report -----------------------------------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
