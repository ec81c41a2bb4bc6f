"""Readable tables (rich) for a bench document and for `history` rows. Emulated devices are labelled."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if v < 100 else f"{v:.1f}"


def device_label(name, emulated) -> str:
    return f"{name} (EMULATED: not board timings)" if emulated else str(name)


def bench_table(doc: dict) -> Table:
    """Metric/value table of one bench document."""
    t = Table(title=f"edgecnn bench: {doc.get('model', {}).get('path', '?')}", show_header=True)
    t.add_column("metric")
    t.add_column("value", overflow="fold")
    m, dev, s = doc.get("model") or {}, doc.get("device") or {}, doc.get("settings") or {}
    rt, mach, tm = doc.get("runtime") or {}, doc.get("machine") or {}, doc.get("timing") or {}
    st, dl = tm.get("steady") or {}, doc.get("delegation") or {}
    rows = [
        ("model size", f"{m.get('size_bytes', 0) / 1024:.1f} KiB" if m.get("size_bytes") else "-"),
        ("model sha256", (m.get("sha256") or "-")[:16]),
        ("device", device_label(dev.get("name"), dev.get("emulated"))),
        ("machine", f"{mach.get('cpu_model', '?')} ({mach.get('arch', '?')}, {mach.get('cores', '?')} cores)"),
        ("runtime", f"{rt.get('name', '?')} {rt.get('version', '')} (python {rt.get('python', '?')})"),
        ("threads / XNNPACK", f"{s.get('threads')} / {'on' if s.get('xnnpack') else 'off'}"),
        ("inputs", doc.get("input_source", "-") + (f" ({s['data']})" if s.get("data") else "")),
        ("delegate partitions", str(dl.get("partitions", "-"))),
        ("ops outside XNNPACK", ", ".join(f"{o['op']}×{o['count']}" for o in dl.get("ops_outside", [])) or "none"),
        ("init", f"{_ms(tm.get('init_ms'))} ms"),
        ("first inference", f"{_ms(tm.get('first_ms'))} ms"),
        ("warm-up", f"{(tm.get('warmup') or {}).get('n', 0)} runs, mean {_ms((tm.get('warmup') or {}).get('mean_ms'))} ms"),
        ("runs", f"{st.get('n')} in {st.get('wall_s')} s"),
    ]
    for k in ("mean", "std", "min", "p50", "p90", "p99", "max"):
        rows.append((f"{k}", f"{_ms(st.get(k + '_ms'))} ms"))
    rows.append(("peak RSS", f"{doc.get('peak_rss_mb')} MiB"))
    acc = doc.get("accuracy")
    if acc:
        top1 = acc.get("top1")
        rows.append(("top-1", f"{top1 * 100:.2f}% of {acc['n']}" if top1 is not None else f"(no labels, {acc['n']})"))
    for k, v in rows:
        t.add_row(k, v)
    return t


def op_table(doc: dict) -> Table | None:
    prof = doc.get("op_profile")
    if not prof:
        return None
    t = Table(title="op profile" + ("" if prof.get("available") else f" — no per-op times: {prof.get('reason')}"))
    t.add_column("#", justify="right")
    t.add_column("op")
    t.add_column("ms", justify="right")
    for op in prof.get("ops", []):
        t.add_row(str(op.get("index")), op.get("op", "?"), _ms(op.get("avg_ms")))
    return t


def history_table(rows: list[dict]) -> Table:
    t = Table(title="edgecnn history")
    for c in ("id", "time (UTC)", "model", "sha", "device", "thr", "xnn", "status", "p50 ms", "p90 ms", "std",
              "Δp50", "flag"):
        t.add_column(c, justify="right" if c in ("id", "thr", "p50 ms", "p90 ms", "std", "Δp50") else "left")
    for r in rows:
        flag = ", ".join(f"REGRESSION {m}" for m in r.get("regressions", []))
        if r.get("status") != "ok":
            flag = (r.get("error") or "").split(": ", 1)[-1][:48]
        d = r.get("delta_p50_pct")
        t.add_row(
            str(r["id"]), (r.get("created_at") or "")[5:16].replace("T", " "),
            (r.get("model_path") or "?").rsplit("/", 1)[-1], (r.get("model_sha256") or "-")[:8],
            device_label(r.get("device"), r.get("emulated")), "-" if r.get("threads") is None else str(r["threads"]),
            {1: "on", 0: "off"}.get(r.get("xnnpack"), "-"), r.get("status") or "?",
            _ms(r.get("p50_ms")), _ms(r.get("p90_ms")), _ms(r.get("std_ms")),
            "-" if d is None else f"{d:+.1f}%", flag,
            style="red" if r.get("regressions") else None,
        )
    return t


def print_table(table: Table) -> None:
    """Print to stdout; a pipe or file gets 160 columns instead of rich's 80 so rows stay on one line."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
