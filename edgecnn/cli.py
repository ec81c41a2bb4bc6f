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

# --- convert / eval / compare -----------------------------------------------------------------------------------

# --- bench / history / devices ----------------------------------------------------------------------------------

# --- deploy -----------------------------------------------------------------------------------------------------

# --- report -----------------------------------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
