"""The report as one self-contained HTML file: inline CSS, figures as `data:image/png;base64` images, no scripts.

One file means it can be mailed, attached to a CI run or opened from disk with no server and no network, and it
still shows everything. Every piece of text that came from input (model names, device errors) is escaped.
"""

from __future__ import annotations

import base64
from html import escape

from edgecnn.report.cells import cells, columns, metric_cell
from edgecnn.report.load import ReportData
from edgecnn.report.pareto import front_rows
from edgecnn.report.plots import Plot

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#1f2937;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
 "Helvetica Neue",Arial,sans-serif}
header{background:#1f2937;color:#f9fafb;padding:28px 40px 24px}
header h1{margin:0 0 4px;font-size:24px;font-weight:600}
header p{margin:0;color:#d1d5db;font-size:13px}
main{max-width:1240px;margin:0 auto;padding:24px 40px 48px}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin:-40px 0 22px}
.card{flex:1 1 180px;background:#fff;border-radius:10px;padding:14px 18px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.card .k{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px}
.card .s{font-size:12px;color:#4b5563}
.card.bad .v{color:#b91c1c}
section{background:#fff;border-radius:10px;padding:18px 22px;margin-bottom:20px;
 box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:16px;margin:0 0 12px;font-weight:600}
.note{background:#fffbeb;border-left:4px solid #f59e0b;padding:8px 14px;margin:0 0 10px;border-radius:4px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th{text-align:left;font-weight:600;color:#4b5563;border-bottom:2px solid #d1d5db;padding:6px 10px;
 white-space:nowrap}
td{border-bottom:1px solid #e5e7eb;padding:6px 10px;white-space:nowrap}
td.n,th.n{text-align:right}
tr:hover td{background:#f9fafb}
td.failed{color:#b91c1c;background:#fef2f2;white-space:normal}
.prec{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-size:12px}
.star{color:#b45309}
.legend{font-size:12px;color:#6b7280;margin:8px 0 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:20px;align-items:start}
figure{margin:0;background:#fff;border-radius:10px;padding:16px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
figure.wide{grid-column:1/-1}
figure h3{margin:0 0 8px;font-size:15px;font-weight:600}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#6b7280;margin-top:6px}
footer{color:#9ca3af;font-size:12px;text-align:center;margin-top:12px}
"""


def render_html(data: ReportData, plots: list[Plot], version: str) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>edgecnn report: {escape(data.title)}</title><style>{CSS}</style></head><body>",
             f"<header><h1>edgecnn report: {escape(data.title)}</h1>",
             f"<p>{escape(_source_line(data))}</p></header><main>", _cards(data)]
    if data.notes:
        parts.append("<section>" + "".join(f'<p class="note">{escape(n)}</p>' for n in data.notes) + "</section>")
    parts.append(_table(data))
    if plots:
        parts.append('<div class="grid">')
        for p in plots:
            b64 = base64.b64encode(p.png).decode("ascii")
            parts.append(f'<figure class="{"wide" if p.wide else ""}" id="fig-{p.name}">'
                         f"<h3>{escape(p.title)}</h3>"
                         f'<img alt="{escape(p.title)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{escape(p.caption)}</figcaption></figure>")
        parts.append("</div>")
    parts.append(f"<footer>made by edgecnn {escape(version)} from {escape(data.source)}</footer></main>"
                 "</body></html>")
    return "\n".join(parts) + "\n"


def _source_line(data: ReportData) -> str:
    what = "run directory" if data.kind == "run" else "results database"
    n = len(data.rows)
    return (f"{what} {data.source} · {n} configuration{'s' if n != 1 else ''}"
            + (f" · {data.created_at}" if data.created_at else ""))


def _card(key: str, value: str, sub: str = "", bad: bool = False) -> str:
    return (f'<div class="card{" bad" if bad else ""}"><div class="k">{escape(key)}</div>'
            f'<div class="v">{escape(value)}</div><div class="s">{escape(sub)}</div></div>')


def _cards(data: ReportData) -> str:
    """The three numbers people look for first: most accurate, fastest, smallest; and what failed."""
    ok = [r for r in data.rows if r["status"] == "ok"]
    out = []
    acc = [r for r in data.rows if r.get("value") is not None]
    if acc:
        best = max(acc, key=lambda r: r["value"])
        out.append(_card("most accurate", f"{metric_cell(best)} {best['metric']}",
                         f"{best['model']} · {best['precision']}"))
    fast = [r for r in ok if r.get("p50_ms") is not None]
    if fast:
        best = min(fast, key=lambda r: r["p50_ms"])
        out.append(_card("fastest p50", f"{best['p50_ms']:.3f} ms",
                         f"{best['model']} · {best['precision']} · {best['device']}"))
    sized = [r for r in data.rows if r.get("size_bytes")]
    if sized:
        best = min(sized, key=lambda r: r["size_bytes"])
        out.append(_card("smallest", f"{best['size_bytes'] / 1024:,.1f} KiB", f"{best['model']} · "
                         f"{best['precision']}" + (f" · {best['size_ratio']:.2f}× float32"
                                                   if best.get("size_ratio") is not None else "")))
    failed = data.failed
    devices = sorted({r["device"] for r in failed})
    out.append(_card("benches failed", f"{len(failed)} of {len(data.rows)}",
                     ", ".join(devices) if devices else "every device answered", bad=bool(failed)))
    return '<div class="cards">' + "".join(out) + "</div>"


def _table(data: ReportData) -> str:
    from edgecnn.report.plots import COLORS

    cols = columns(data)
    front = front_rows(data.rows) if data.has_accuracy else set()
    numeric = {i for i, c in enumerate(cols) if i >= 3}
    head = "".join(f'<th class="{"n" if i in numeric else ""}">{escape(c)}</th>' for i, c in enumerate(cols))
    body = []
    for i, row in enumerate(data.rows):
        got = cells(row, data)
        vals, failed = (got, None) if isinstance(got, list) else got
        tds = []
        for j, v in enumerate(vals):
            text = escape(v)
            if j == 0 and i in front:
                text += ' <span class="star" title="on the Pareto front of its device">★</span>'
            if j == 1:
                text = f'<span class="prec" style="background:{COLORS.get(v, COLORS["?"])}">{text}</span>'
            tds.append(f'<td class="{"n" if j in numeric else ""}">{text}</td>')
        if failed is not None:
            tds.append(f'<td class="failed" colspan="{len(cols) - len(vals)}">{escape(failed)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    legend = []
    if front:
        legend.append("★ on the accuracy-vs-latency Pareto front of its device.")
    if data.has_accuracy:
        legend.append(f"Drop: float32 {data.metric} minus this one, in points (negative: better than float).")
    legend.append("Latency: steady state, per inference, after warm-up. Peak RSS: the bench process on the device. "
                  "Partitions: subgraphs handed to the delegate (XNNPACK, Edge TPU); fewer is better.")
    return ('<section><h2>Results</h2><div class="scroll"><table id="results"><thead><tr>' + head
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>"
            + f'<p class="legend">{escape(" ".join(legend))}</p></section>')
