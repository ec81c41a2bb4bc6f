"""edgecnn.report stage: results -> something people read.

| module      | what it does                                                             |
|-------------|--------------------------------------------------------------------------|
| tables      | rich tables for the terminal (every command's table)                     |
| load        | run directory / results database -> `ReportData` (bad input judged here) |
| pareto      | the accuracy-vs-latency front                                            |
| plots       | matplotlib figures as PNG bytes                                          |
| html        | one self-contained HTML file                                             |
| markdown    | a Markdown page + PNG files beside it                                    |
| explorer    | Model Explorer node data (`compare --explorer`) and the viewer (`explore`) |

`make_report` is the one entry point; everything heavy (matplotlib) is imported inside it.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md"}


def make_report(source: str | Path | None, out_path: str | Path) -> dict:
    """Write a report of `source` (a run directory, a results database file, or None for the default database)
    to `out_path` (.html or .md) and return what was written. Every file is written atomically: a failure leaves
    the previous report whole."""
    from edgecnn import __version__
    from edgecnn.atomic import check_output_dir, write_bytes_atomic, write_text_atomic
    from edgecnn.errors import EdgecnnError
    from edgecnn.report.load import load

    out = Path(out_path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise EdgecnnError(f"{out}: unknown report format {out.suffix or '(no suffix)'!r}; use .html or .md")
    check_output_dir(out)  # before the work, so a typo in -o costs nothing
    data = load(source)

    from edgecnn.report.plots import make_plots

    plots = make_plots(data)
    images: list[str] = []
    if fmt == "html":
        from edgecnn.report.html import render_html

        write_text_atomic(out, render_html(data, plots, __version__))
    else:
        from edgecnn.report.markdown import image_name, render_markdown

        for p in plots:  # the images first: the page never links a file that is not there yet
            images.append(str(write_bytes_atomic(out.with_name(image_name(out.stem, p)), p.png)))
        write_text_atomic(out, render_markdown(data, plots, out.stem, __version__))
    return {"output": str(out), "format": fmt, "source": data.source, "kind": data.kind, "title": data.title,
            "rows": len(data.rows), "failed": [{"model": r["model"], "precision": r["precision"],
                                                "device": r["device"], "error": r["error"]} for r in data.failed],
            "plots": [p.name for p in plots], "images": images, "notes": data.notes,
            "bytes": out.stat().st_size}
