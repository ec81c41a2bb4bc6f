"""Readable terminal tables (rich), one helper so every command's table looks the same."""

from __future__ import annotations


def print_table(title: str, columns: list[str], rows: list[list], console=None, caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right" if _numeric(rows, i) else "left")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    import sys

    # piped output (CI logs, READMEs) gets a wide table instead of rich's 80-column default
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)


def _numeric(rows, i) -> bool:
    vals = [str(r[i]) for r in rows if i < len(r) and str(r[i]) not in ("", "-")]
    return bool(vals) and all(v.replace(",", "").replace(".", "").replace("%", "").replace("M", "").replace("-", "")
                              .replace("+", "").strip().isdigit() for v in vals)
