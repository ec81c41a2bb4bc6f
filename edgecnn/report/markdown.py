"""The report as Markdown for READMEs and pull requests: a pipe table, and the figures as PNG files beside the .md.

Markdown hosts (GitHub, GitLab) strip `data:` images, so the figures are separate files named after the report
(`report.md` -> `report-pareto.png`, ...) and linked relatively: commit the folder and the page renders.
"""

from __future__ import annotations

from edgecnn.report.cells import cells, columns
from edgecnn.report.load import ReportData
from edgecnn.report.pareto import front_rows
from edgecnn.report.plots import Plot


def image_name(stem: str, plot: Plot) -> str:
    return f"{stem}-{plot.name}.png"


def render_markdown(data: ReportData, plots: list[Plot], stem: str, version: str) -> str:
    what = "run directory" if data.kind == "run" else "results database"
    lines = [f"# edgecnn report: {data.title}", "",
             f"From {what} `{data.source}`" + (f", {data.created_at}" if data.created_at else "") + ".", ""]
    for n in data.notes:
        lines += [f"> **Note:** {_esc(n)}", ""]
    cols = columns(data)
    front = front_rows(data.rows) if data.has_accuracy else set()
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(cols))) + "|")
    for i, row in enumerate(data.rows):
        got = cells(row, data)
        if isinstance(got, list):
            vals = got
        else:  # Markdown tables have no colspan: the error goes in the first measured cell, the rest stay empty
            vals, failed = got
            vals = vals + [f"**{failed}**"] + [""] * (len(cols) - len(vals) - 1)
        if i in front:
            vals = [vals[0] + " ★"] + vals[1:]
        lines.append("| " + " | ".join(_esc(v) for v in vals) + " |")
    lines.append("")
    if front:
        lines += ["★ on the accuracy-vs-latency Pareto front of its device.", ""]
    for p in plots:
        lines += [f"## {p.title}", "", f"![{p.title}]({image_name(stem, p)})", "", f"*{_esc(p.caption)}*", ""]
    lines.append(f"<sub>made by edgecnn {version}</sub>")
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
