"""The report's figures as PNG bytes, drawn with matplotlib's Agg canvas.

| name      | figure                                                     | made when                                 |
|-----------|------------------------------------------------------------|-------------------------------------------|
| pareto    | the metric vs p50 latency, a panel per device, front marked | some bench ok and the metric known       |
| latency   | latency distribution per configuration (box from stats)    | some bench ok                             |
| size      | model file size per model x precision                      | sizes known                               |
| per_class | per-class metric change of the worst int8 (else quantized) | `edgecnn run` compared it with float      |
| history   | p50 over repeated benches of the same file on a device     | some configuration was benched twice      |
| boxes     | a detector's boxes on test images, float32 above int8      | rows carry `examples` (a detector's eval) |
| masks     | a segmenter's class maps: image, truth, float32, int8       | rows carry `examples` (a segmenter's eval) |

Figures are made on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot: no global backend is
switched, no window can open, and nothing leaks between reports. matplotlib is imported here only, and this module
only when a report is made, so `edgecnn --help` does not pay for it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from edgecnn.report.load import PRECISIONS, ReportData, config_key, config_label
from edgecnn.report.pareto import pareto_front

COLORS = {"float32": "#3b6ea8", "float16": "#3f9e6e", "dynamic": "#8a63b8", "int16x8": "#d19a2a",
          "int8": "#c8463d", "?": "#6b7280"}
INK, GRID, FAILED = "#1f2937", "#e5e7eb", "#b91c1c"
HALF, WIDE = 5.6, 11.4  # inches at 100 px per inch: half and full width of the HTML page's figure grid
DPI = 200  # saved at twice the logical size, so the figures stay sharp on high-density screens
MAX_CLASSES = 40  # more classes than this: only the largest changes are drawn


@dataclass
class Plot:
    name: str
    title: str
    caption: str
    png: bytes
    wide: bool = False  # drawn for the page's full width


def make_plots(data: ReportData) -> list[Plot]:
    """Every figure that `data` has the numbers for, in reading order."""
    makers = (pareto_plot, latency_plot, size_plot, per_class_plot, boxes_plot, masks_plot, history_plot)
    return [p for p in (m(data) for m in makers) if p is not None]


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax, grid_axis: str = "both") -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9ca3af")
    ax.tick_params(colors=INK, labelsize=8.5)
    ax.grid(True, axis=grid_axis, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _color(precision: str) -> str:
    return COLORS.get(precision, COLORS["?"])


def _legend(ax, precisions, **kw) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=_color(p), label=p) for p in sorted(set(precisions), key=_prec_order)]
    ax.legend(handles=handles, frameon=False, fontsize=8, **kw)


def _prec_order(p: str) -> int:
    return PRECISIONS.index(p) if p in PRECISIONS else len(PRECISIONS)


def pareto_plot(data: ReportData) -> Plot | None:
    rows = [r for r in data.rows if r["status"] == "ok" and r.get("value") is not None and r.get("p50_ms")]
    if not rows:
        return None
    devices = list(dict.fromkeys(r["device"] for r in rows))
    ncols = min(len(devices), 2)
    nrows = (len(devices) + ncols - 1) // ncols
    fig = _figure(HALF if ncols == 1 else WIDE, 3.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, device in zip(axes, devices):
        pts = [r for r in rows if r["device"] == device]
        front = [pts[i] for i in pareto_front([(r["p50_ms"], r["value"]) for r in pts])]
        ax.step([r["p50_ms"] for r in front], [100 * r["value"] for r in front], where="post", color=INK,
                linewidth=1.1, linestyle="--", zorder=1)
        for r in pts:
            on = any(r is f for f in front)
            ax.scatter(r["p50_ms"], 100 * r["value"], s=120 if on else 60, color=_color(r["precision"]),
                       edgecolor=INK if on else "white", linewidth=1.5 if on else 0.8, zorder=3, alpha=0.9)
        lats = [r["p50_ms"] for r in pts]
        log = max(lats) / min(lats) > 20
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(_plain_formatter())
        for (x, y), text in _cluster_labels(pts, log):
            ax.annotate(text, (x, 100 * y), xytext=(8, 6), textcoords="offset points", fontsize=8, color=INK)
        ax.margins(x=0.3, y=0.25)
        _style(ax)
        ax.set_title(device + (" (emulated)" if pts[0].get("emulated") else ""), fontsize=10, color=INK, loc="left")
        ax.set_xlabel("p50 latency (ms), faster ←", fontsize=9, color=INK)
        ax.set_ylabel(f"{data.metric} (%), better ↑", fontsize=9, color=INK)
    for ax in axes[len(devices):]:
        ax.set_visible(False)
    _legend(axes[0], [r["precision"] for r in rows], loc="lower right")
    return Plot("pareto", "Accuracy vs latency",
                "Each point is one model × precision; outlined points are on the Pareto front of their device "
                "(dashed): nothing else there is both faster and more accurate.", _png(fig), wide=ncols > 1)


def _cluster_labels(pts: list[dict], log: bool) -> list[tuple[tuple[float, float], str]]:
    """One label per group of points that would overprint each other: `lenet5 float32/float16`."""
    import math

    def xy(r):
        return (math.log10(r["p50_ms"]) if log else r["p50_ms"]), 100 * r["value"]

    xs, ys = zip(*(xy(r) for r in pts))
    sx, sy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    groups: list[list[dict]] = []
    for r in pts:
        x, y = xy(r)
        for g in groups:
            gx, gy = xy(g[0])
            if abs(x - gx) / sx < 0.06 and abs(y - gy) / sy < 0.06:
                g.append(r)
                break
        else:
            groups.append([r])
    out = []
    for g in groups:
        by_model: dict[str, list[str]] = {}
        for r in g:
            by_model.setdefault(r["model"], []).append(r["precision"])
        text = "\n".join(f"{m} {'/'.join(ps)}" for m, ps in by_model.items())
        top = max(g, key=lambda r: r["value"])
        out.append(((top["p50_ms"], top["value"]), text))
    return out


def _plain_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:g}")


def latency_plot(data: ReportData) -> Plot | None:
    rows = [r for r in data.rows if r["status"] == "ok" and (r.get("timing") or {}).get("p50_ms") is not None]
    if not rows:
        return None
    rows.reverse()  # matplotlib draws y upwards: the table's first row ends on top
    fig = _figure(HALF, 1.0 + 0.36 * len(rows))
    ax = fig.subplots()
    vals = [v for r in rows for v in (r["timing"].get("min_ms"), r["timing"].get("max_ms"), r["timing"]["p50_ms"])
            if v]
    hi = max(vals)
    for y, r in enumerate(rows):
        t, c = r["timing"], _color(r["precision"])
        p50 = t["p50_ms"]
        p90 = t.get("p90_ms") or p50
        mn, mx, p99 = t.get("min_ms") or p50, t.get("max_ms") or p90, t.get("p99_ms")
        ax.plot([mn, mx], [y, y], color="#9ca3af", linewidth=1, zorder=1)
        for end in (mn, mx):
            ax.plot([end, end], [y - 0.15, y + 0.15], color="#9ca3af", linewidth=1)
        ax.barh(y, max(p90 - p50, hi * 1e-4), left=p50, height=0.55, color=c, alpha=0.35, edgecolor=c, zorder=2)
        ax.plot([p50, p50], [y - 0.27, y + 0.27], color=c, linewidth=2.5, zorder=3)
        if p99 is not None:
            ax.scatter([p99], [y], marker="D", s=16, color=c, edgecolor="white", linewidth=0.5, zorder=4)
    ax.set_yticks(range(len(rows)), [config_label(r) for r in rows], fontsize=8)
    if hi / min(vals) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plain_formatter())
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.margins(x=0.05)
    _style(ax, "x")
    ax.set_xlabel("latency per inference (ms)", fontsize=9, color=INK)
    skipped = len(data.rows) - len(rows)
    return Plot("latency", "Latency distribution",
                "From each bench's summary statistics, not raw samples (benches keep none): the whisker runs min "
                "to max, the box p50 (thick mark) to p90, ◆ is p99."
                + (f" {skipped} failed bench{'es' if skipped != 1 else ''} not drawn (see the table)." if skipped
                   else ""), _png(fig))


def size_plot(data: ReportData) -> Plot | None:
    seen: dict[tuple, dict] = {}
    for r in data.rows:
        if r.get("size_bytes"):
            seen.setdefault((r["model"], r["precision"]), r)
    if not seen:
        return None
    rows = list(reversed(list(seen.values())))
    fig = _figure(HALF, 1.0 + 0.32 * len(rows))
    ax = fig.subplots()
    kib = [r["size_bytes"] / 1024 for r in rows]
    ax.barh(range(len(rows)), kib, height=0.6, color=[_color(r["precision"]) for r in rows])
    for y, (r, k) in enumerate(zip(rows, kib)):
        ratio = f"  ({r['size_ratio']:.2f}× float32)" if r.get("size_ratio") is not None else ""
        ax.text(k, y, f"  {k:,.1f} KiB{ratio}", va="center", fontsize=7.5, color=INK)
    ax.set_yticks(range(len(rows)), [f"{r['model']} · {r['precision']}" for r in rows], fontsize=8)
    ax.set_xlim(0, max(kib) * 1.6)
    _style(ax, "x")
    ax.set_xlabel("model file size (KiB)", fontsize=9, color=INK)
    return Plot("size", "Model size", "The .tflite file as flashed: weights, graph and metadata.", _png(fig))


def worst_quantized(data: ReportData) -> dict | None:
    """The int8 row with the largest drop (else the worst quantized one) that has per-class results."""
    cands = [r for r in data.rows if r.get("per_class") and r["precision"] != "float32"]
    int8 = [r for r in cands if r["precision"] == "int8"]
    pool = int8 or cands
    return max(pool, key=lambda r: r.get("drop_points") or 0.0) if pool else None


def per_class_plot(data: ReportData) -> Plot | None:
    r = worst_quantized(data)
    if r is None:
        return None
    classes = list(r["per_class"])
    note = ""
    if len(classes) > MAX_CLASSES:
        keep = {id(c) for c in sorted(classes, key=lambda c: -abs(c["delta_points"]))[:MAX_CLASSES]}
        classes = [c for c in classes if id(c) in keep]
        note = f" Only the {MAX_CLASSES} classes that changed most of {len(r['per_class'])} are drawn."
    fig = _figure(HALF, 3.3)
    ax = fig.subplots()
    deltas = [c["delta_points"] for c in classes]
    ax.bar(range(len(classes)), deltas, color=["#c8463d" if d < 0 else "#3f9e6e" for d in deltas], width=0.7)
    ax.axhline(0, color=INK, linewidth=0.8)
    ax.set_xticks(range(len(classes)), [str(c.get("name", c.get("class"))) for c in classes], fontsize=8,
                  rotation=0 if len(classes) <= 12 else 60)
    span = max([abs(d) for d in deltas] + [1.0])
    ax.set_ylim(-span * 1.25, span * 1.25)
    if not any(deltas):
        ax.text(0.5, 0.62, "no class changed", transform=ax.transAxes, ha="center", fontsize=10, color="#6b7280")
    _style(ax, "y")
    ax.set_ylabel(f"{r['metric']} change (points)", fontsize=9, color=INK)
    ax.set_xlabel("class", fontsize=9, color=INK)
    n = sum(c.get("n") or 0 for c in r["per_class"])
    overall = sum((c.get("n") or 0) * c["delta_points"] for c in r["per_class"]) / n if n else None
    many = any(x.get("per_class") and x["precision"] == r["precision"] and x["model"] != r["model"]
               for x in data.rows)
    return Plot("per_class", f"Per-class change: {r['model']} {r['precision']}",
                f"{r['metric'][:1].upper()}{r['metric'][1:]} per class of {r['model']} {r['precision']} minus "
                "float32, in points (red: lost)"
                + (f"; all classes together {overall:+.2f} points" if overall is not None else "")
                + (f", the worst {r['precision']} model here." if many else ".") + note, _png(fig))


def history_plot(data: ReportData) -> Plot | None:
    series: dict[tuple, list[dict]] = {}
    for h in data.history:
        if h.get("status") == "ok" and h.get("p50_ms") is not None:
            series.setdefault(config_key(h), []).append(h)
    series = {k: v for k, v in series.items() if len(v) > 1}
    if not series:
        return None
    fig = _figure(WIDE, 3.4)
    ax = fig.subplots()
    flagged = False
    for (name, device), runs in series.items():
        xs = list(range(1, len(runs) + 1))
        line = ax.plot(xs, [h["p50_ms"] for h in runs], marker="o", markersize=4, linewidth=1.4,
                       label=f"{name} · {device}")[0]
        ax.fill_between(xs, [h["p50_ms"] for h in runs], [h.get("p90_ms") or h["p50_ms"] for h in runs],
                        color=line.get_color(), alpha=0.12, linewidth=0)
        bad = [(x, h["p50_ms"]) for x, h in zip(xs, runs) if h.get("regressions")]
        if bad:
            flagged = True
            ax.scatter(*zip(*bad), marker="x", s=60, color=FAILED, zorder=5)
    _style(ax)
    ax.set_xlabel("bench of the same file on the same device (oldest → newest)", fontsize=9, color=INK)
    ax.set_ylabel("p50 latency (ms)", fontsize=9, color=INK)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return Plot("history", "Latency history",
                "p50 of every ok bench of each file on each device, shaded up to p90"
                + ("; ✕ marks a regression (slower than the previous comparable run by more than either run's "
                   "spread, as in `edgecnn history`)." if flagged else "; no regressions flagged."), _png(fig), wide=True)


def _example_rows(data: ReportData, key: str, what: str):
    """(the row, the test split) of the first model whose rows carry examples with `key` (`Task.examples`: a
    detector's "boxes", a segmenter's "mask"), the quantized precision's (int8 when there); the images are read
    back from the run's data source. None when there is none, or the source cannot be read (said in the notes)."""
    rows = [r for r in data.rows if r.get("examples") and r.get("float_examples") and key in r["examples"][0]]
    if not rows or not data.data_source:
        return None
    quant = [r for r in rows if r["precision"] == "int8"] or [r for r in rows if r["precision"] != "float32"] or rows
    try:
        from edgecnn.data import load_split

        ds = load_split(data.data_source, "test", needs_labels=None)
    except Exception as exc:  # noqa: BLE001 — a picture is not worth failing the report over; say why it is missing
        data.notes.append(f"{what} picture not drawn: cannot read {data.data_source}: {str(exc).splitlines()[0]}")
        return None
    return quant[0], ds


def masks_plot(data: ReportData) -> Plot | None:
    """A segmenter's class maps on a few test images: the image, the true mask, the float32 and the quantized
    precision's maps (`Task.examples`: the first images' class maps), one colour per class, background black."""
    found = _example_rows(data, "mask", "mask")
    if found is None:
        return None
    r, ds = found
    from edgecnn.tasks.segmentation.metrics import example_map

    k = min(len(r["examples"]), len(r["float_examples"]), len(ds))
    panels = [("image", None), ("truth", None), ("float32", r["float_examples"]), (r["precision"], r["examples"])]
    fig = _figure(WIDE, 2.3 * len(panels))
    axes = fig.subplots(len(panels), k, squeeze=False)
    cmap = _class_colors(max(2, len(getattr(ds, "mask_names", ()) or ())))
    for row_axes, (label, examples) in zip(axes, panels):
        for i, ax in enumerate(row_axes):
            if label == "image":
                ax.imshow(ds.images[i], cmap="gray" if ds.images[i].ndim == 2 else None)
            else:
                m = ds.masks[i] if examples is None else example_map(examples[i])
                ax.imshow(m, cmap=cmap, vmin=0, vmax=cmap.N - 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label, fontsize=9, color=INK)
    return Plot("masks", f"Masks: {r['model']} float32 and {r['precision']}",
                f"{r['model']} on the first {k} test images of {data.data_source}: the image, the true mask, and the "
                f"float32 and {r['precision']} class maps (one colour per class, background black; ignore pixels of "
                "the truth in the last colour).", _png(fig), wide=True)


def _class_colors(n: int):
    from matplotlib.colors import ListedColormap
    import matplotlib

    base = matplotlib.colormaps["tab20"].colors
    return ListedColormap([(0, 0, 0)] + [base[i % len(base)] for i in range(n - 1)] + [(1, 1, 1)] * (256 - n))


def boxes_plot(data: ReportData) -> Plot | None:
    """Predicted boxes of the first model whose rows carry examples (`Task.examples`: a detector's) on a few test
    images: float32 above the quantized precision (int8 when there), the true boxes dashed. The images are read
    back from the run's data source."""
    found = _example_rows(data, "boxes", "box")
    if found is None:
        return None
    r, ds = found
    panels = [("float32", r["float_examples"]), (r["precision"], r["examples"])]
    k = min(len(r["examples"]), len(r["float_examples"]), len(ds))
    names = list(ds.class_names)
    fig = _figure(WIDE, 2.9 * len(panels))
    axes = fig.subplots(len(panels), k, squeeze=False)
    for row_axes, (precision, examples) in zip(axes, panels):
        for i, ax in enumerate(row_axes):
            ex = examples[i]
            ax.imshow(ds.images[i], cmap="gray" if ds.images[i].ndim == 2 else None)
            for x0, y0, x1, y1, *_ in ex["truth"]:
                ax.add_patch(_rect(x0, y0, x1, y1, "white", "--"))
            for (x0, y0, x1, y1), score, c in zip(ex["boxes"], ex["scores"], ex["classes"]):
                ax.add_patch(_rect(x0, y0, x1, y1, _color(precision), "-"))
                label = names[c] if 0 <= c < len(names) else str(c)
                ax.text(x0, y0 - 1, f"{label} {score:.2f}", fontsize=7, color="white", va="bottom",
                        bbox={"facecolor": _color(precision), "edgecolor": "none", "pad": 1})
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(precision, fontsize=9, color=INK)
    return Plot("boxes", f"Boxes: {r['model']} float32 and {r['precision']}",
                f"{r['model']} on the first {k} test images of {data.data_source}: float32 (top) and "
                f"{r['precision']} (bottom) boxes with score >= 0.3 and class; the true boxes dashed white.",
                _png(fig), wide=True)


def _rect(x0, y0, x1, y1, color, style):
    from matplotlib.patches import Rectangle

    return Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.4, linestyle=style)
