"""Every table and summary edgecnn prints for people (rich); `--json` output is the dicts themselves.

| function               | prints / builds                                                      | used by              |
|------------------------|----------------------------------------------------------------------|----------------------|
| `print_table`          | a titled table from columns and rows (numbers right-aligned)          | models, eval, run, ...|
| `show`                 | any rich table, 160 columns wide when piped                           | every command        |
| `bench_table`, `op_table` | one bench document: metrics; per-op times                         | bench                |
| `devices_table`        | one row per device of a multi-device bench                            | bench --device A -d B |
| `history_table`        | stored runs with regression flags                                     | history              |
| `preflight_table`      | the Edge TPU preflight verdict                                        | edgetpu-check, convert |
| `print_convert_report` | what a conversion wrote                                               | convert              |

Emulated devices are labelled wherever a device is shown.
"""

from __future__ import annotations

import sys

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
        ("ops outside XNNPACK", "; ".join(f"{o['op']}×{o['count']}" + (f" ({o['reason']}" + (
            f"; `edgecnn convert` rewrites it: pass {o['rewrite']}" if o.get("rewrite") else "") + ")"
            if dl.get("partitions", 0) > 1 and o.get("reason") else "") for o in dl.get("ops_outside", [])) or "none"),
        ("init", f"{_ms(tm.get('init_ms'))} ms"),
        ("first inference", f"{_ms(tm.get('first_ms'))} ms"),
        ("warm-up", f"{(tm.get('warmup') or {}).get('n', 0)} runs, mean {_ms((tm.get('warmup') or {}).get('mean_ms'))} ms"),
        ("runs", f"{st.get('n')} in {st.get('wall_s')} s"),
    ]
    for k in ("mean", "std", "min", "p50", "p90", "p99", "max"):
        rows.append((f"{k}", f"{_ms(st.get(k + '_ms'))} ms"))
    pp = doc.get("postprocess")
    if pp:
        rows.append(("post-processing", f"{pp.get('head')}: p50 {_ms(pp.get('p50_ms'))} ms, mean "
                                        f"{_ms(pp.get('mean_ms'))} ms, {pp.get('detections')} detections "
                                        f"({pp.get('method')})"))
    rows.append(("peak RSS", f"{doc.get('peak_rss_mb')} MiB"))
    acc = doc.get("accuracy")
    if acc:
        rows.append(accuracy_row(acc))
    for k, v in rows:
        t.add_row(k, v)
    return t


def accuracy_row(acc: dict) -> tuple[str, str]:
    """(name, value) of a bench's accuracy, as its task says it (`Task.bench_text`): a classifier's top-1, a
    detector's mAP (or why there is none)."""
    from rich.markup import escape

    from edgecnn import tasks

    task = tasks.known(acc.get("task"))
    return task.metric, escape(task.bench_text(acc))  # a note may show [x0, ...] rows: not rich markup


def accuracy_value(doc: dict) -> float | None:
    """The one accuracy number of a bench (its task's metric: top-1, mAP@.5), None when unmeasured."""
    from edgecnn import tasks

    acc = doc.get("accuracy") or {}
    return acc.get(tasks.known(acc.get("task")).metric_key)


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


def show(table: Table) -> None:
    """Print to stdout; a pipe or file gets 160 columns instead of rich's 80 so rows stay on one line."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def preflight_table(report: dict) -> str:
    """A short human summary (the CLI's non-JSON output)."""
    lines = [f"{report['model']}: " + ("maps fully to the Edge TPU" if report["maps_fully"] else
             f"{report['ops_edgetpu']}/{report['ops_total']} ops on the Edge TPU")]
    for c in report["checks"]:
        lines.append(f"  [{'ok' if c['ok'] else 'NO'}] {c['check']}" + (f": {c['detail']}" if c["detail"] else ""))
    cut = report["first_cpu_op"]
    if cut:
        lines.append(f"  first op on the CPU: #{cut['index']} {cut['op']}: {cut['reason']} "
                     f"-> it and the {report['ops_total'] - cut['index'] - 1} ops after it run on the CPU")
    lines.append(f"  (Coral's op list: {report['source']}, compiler {report['compiler_version']}, "
                 f"runtime {report['runtime_version']})")
    return "\n".join(lines)


def print_table(title: str, columns: list[str], rows: list[list], console=None, caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right" if _numeric(rows, i) else "left")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    # piped output (CI logs, READMEs) gets a wide table instead of rich's 80-column default
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)


def _numeric(rows, i) -> bool:
    vals = [str(r[i]) for r in rows if i < len(r) and str(r[i]) not in ("", "-")]
    return bool(vals) and all(v.replace(",", "").replace(".", "").replace("%", "").replace("M", "").replace("-", "")
                              .replace("+", "").strip().isdigit() for v in vals)


def devices_table(docs: list[dict]) -> Table:
    """One row per device: status, latency, accuracy (top-1, or mAP@.5 for a detector), post-processing p50 when
    any device timed it, runtime, CPU; emulated boards say so in the device column."""
    t = Table(title=f"bench {(docs[0].get('model') or {}).get('path', '')}" if docs else "bench")
    from edgecnn import tasks

    metrics = {tasks.known(d["accuracy"].get("task")).metric for d in docs if d.get("accuracy")} or \
        {tasks.get(None).metric}
    post = any((d.get("postprocess") or {}).get("p50_ms") is not None for d in docs)
    metric = metrics.pop() if len(metrics) == 1 else "accuracy"
    cols = ["device", "status", "p50 ms", "mean ms", metric] + (["post-proc p50 ms"] if post else []) + \
        ["runtime", "cpu / error"]
    for col in cols:
        t.add_column(col, justify="right" if "ms" in col or col == metric else "left")
    for d in docs:
        t.add_row(*_device_cells(d, post))
    return t


def _device_cells(d: dict, post: bool) -> list[str]:
    """The cells of one device's row of `devices_table`."""
    dev = d.get("device") or {}
    steady = (d.get("timing") or {}).get("steady") or {}
    acc = accuracy_value(d)
    rt = d.get("runtime") or {}
    ok = d.get("status") == "ok"
    pp50 = (d.get("postprocess") or {}).get("p50_ms")
    cells = [device_label(dev.get("name"), dev.get("emulated")),
             "ok" if ok else "FAILED",
             f"{steady['p50_ms']:.3f}" if ok and steady.get("p50_ms") is not None else "-",
             f"{steady['mean_ms']:.3f}" if ok and steady.get("mean_ms") is not None else "-",
             "-" if acc is None else f"{acc:.4f}"]
    if post:
        cells.append(f"{pp50:.3f}" if ok and pp50 is not None else "-")
    return cells + [f"{rt.get('name', '')} {rt.get('version', '')}".strip() or "-",
                    ((d.get("machine") or {}).get("cpu_model", "") + f" ({(d.get('machine') or {}).get('arch', '')})")
                    if ok else str(d.get("error", ""))[:120]]


def train_lines(result: dict, output, data: str) -> list[str]:
    """`edgecnn train`'s text output: what was trained and, for a pretrained backbone, where it came from and each
    phase."""
    from edgecnn import tasks

    lines = [f"{output}: {tasks.get(result['task']).train_text(result, output, data)}; loss "
             f"{result['loss_first_epoch']:.3f} -> {result['loss_last_epoch']:.3f}; {result['wall_seconds']:.1f} s"]
    if result.get("qat"):
        q = result["qat"]
        floats = {k: v for k, v in (result.get("float_measures") or {}).items() if isinstance(v, float)}
        floats = ", ".join(f"{k} {v:.4f}" for k, v in floats.items())
        lines.append(f"  quantization-aware: {q['ranges']} int8 ranges learned, {q['weights']} weights; the measures "
                     "above are the int8 simulation's" + (f" (float: {floats})" if floats else ""))
    t = result["transfer"] or {}
    if "cut_at" in t:
        lines.append(f"  backbone of {t['from']} up to {t['cut_at']} ({t['backbone_layers']} layers, {t['blocks']} "
                     f"blocks){'; head ' + t['head'] if t.get('head') else ''}")
    lines += [f"  {key}: {t[key]}" for key in ("weights", "backbone_weights") if key in t]
    for p in result["phases"] if t else ():
        val = f", val top-1 {p['val_accuracy']:.3f}" if p["val_accuracy"] is not None else ""
        lines.append(f"  phase {p['name']}: {p['epochs']} epochs at lr {p['learning_rate']:g}, "
                     f"{p['trainable_params']:,} trainable / {p['frozen_params']:,} frozen params, "
                     f"loss {p['loss_last_epoch']:.3f}{val}; {p['seconds']:.1f} s")
    return lines


def print_convert_report(r: dict) -> None:
    from edgecnn.tflite.reader import describe_io

    c = Console()
    req = r["request"]
    c.print(f"[bold]{r['output']}[/]  {req['mode']} (io {req['io']}, "
            f"{'per-tensor' if req['per_tensor'] else 'per-channel'})")
    for note in r.get("source_notes") or ():
        c.print(f"  source: {note}", markup=False, highlight=False)
    c.print(f"  size {r['size_bytes']:,} B = {r['size_ratio_to_float32']:.3f} x float32 ({r['float32_size_bytes']:,} B)")
    c.print("  ops  " + ", ".join(f"{k}x{v}" for k, v in r["op_histogram"].items()))
    c.print(f"  ops in float: {', '.join(r['ops_in_float']) or 'none'}")
    for t in r["inputs"]:
        c.print(f"  input  {describe_io(t)}")
    for t in r["outputs"]:
        c.print(f"  output {describe_io(t)}")
    if r.get("calibration"):
        cal = r["calibration"]
        p = cal["preprocessing"]
        if cal.get("best"):
            b = cal["best"]
            c.print("  calibration-method best: " + ", ".join(
                f"{m} {v['snr_db']:.1f} dB / agreement {_num3(v['agreement'])}" for m, v in b["scores"].items())
                + f" on {b['held_out_samples']} held-out samples -> {b['chosen']}")
        if cal.get("quality"):
            q = cal["quality"]
            c.print(f"  quality auto (options tried on {q['fit_samples']} samples, scored on {q['held_out_samples']} "
                    f"held out): {q['why']}", markup=False, highlight=False)
        c.print(f"  calibration: {cal['samples']} samples from {cal['source']} (seed {cal['seed']}; "
                f"x*{p['scale']:.6g}{p['offset']:+g})")
        for note in cal.get("notes", ()):
            c.print(f"  note: {note}", markup=False, highlight=False)
    if r.get("guided"):
        g = r["guided"]
        c.print(f"  guided: {g['metric']} drop {g['final_drop_points']:.2f} pts (limit {g['max_drop_points']}); "
                "kept in float: "
                f"{', '.join(g['kept_in_float']) or 'none'}")
        i16 = g.get("int16") or {}
        if i16.get("reached"):
            c.print(f"  guided int16: the worst {len(i16['layers'])} layer(s), {i16['int16_ops']} ops int16; plan "
                    f"{i16['plan_file']} (reuse: --precision {i16['plan_file']})", markup=False, highlight=False)
        elif i16:
            c.print("  guided int16: " + (
                f"not enough (every ranked layer int16: drop {i16['steps'][0]['drop_points']:.2f} pts)"
                if i16.get("steps") else f"not possible ({i16['failed']})" if i16.get("failed") else
                f"not tried ({i16.get('why', 'no layer has an int16 kernel on the target')})"),
                markup=False, highlight=False)
    dead = r.get("dead_inputs")
    if dead and dead["zeroed_channels"]:
        c.print(f"  dead inputs: the weights reading {dead['zeroed_channels']} channel(s) that are 0 on every "
                f"calibration sample set to 0, in {len(dead['layers'])} layer(s), so they stop setting the per-tensor "
                "weight step", markup=False, highlight=False)
    if r.get("bias_correction"):
        bc = r["bias_correction"]
        c.print(f"  bias correction: {bc['layers']} layers on {bc['samples']} calibration samples"
                + (f" (median mean shift {bc['mean_abs_shift_median']:.3g})" if "mean_abs_shift_median" in bc else
                   f" ({bc.get('note', '')})"))
    for row in r.get("rewrites") or []:
        if row["count"]:
            c.print(f"  rewrite {row['pass']}: {row['count']}x {row['replaces']} "
                    + ("applied" if row["applied"] else f"NOT applied ({row.get('note', '')})")
                    + (f" (vs float on {row['samples']} calibration samples: mean error {row['error_steps_before']:.2f}"
                       f" -> {row['error_steps_after']:.2f} output steps, agreement "
                       f"{_num3(row['agreement_vs_float_before'])} -> {_num3(row['agreement_vs_float_after'])}"
                       + (f"; the first {row['screen']['samples']} had refused it" if "screen" in row else "") + ")"
                       if "error_steps_after" in row and row["applied"] else ""))
    pr = r.get("precision")
    if pr:
        c.print("  precision: " + ", ".join(f"{k} x{v}" for k, v in pr["counts"].items())
                + f", {pr['conversions']} conversion(s); plan: "
                + ", ".join(f"{row['rule']} ({row['matched']} ops)" for row in pr["rules"]), markup=False)
        if "partitions" in pr:
            off = [f"{o['op']}({o['precision']})" for o in pr["ops"] if not o["xnnpack"]]
            c.print(f"  XNNPACK: {pr['partitions']} partition(s), {pr['ops_on_xnnpack']}/{len(pr['ops'])} ops; off it: "
                    + (", ".join(off[:8]) + (f" and {len(off) - 8} more" if len(off) > 8 else "") or "none"),
                    markup=False)
        for note in pr["notes"]:
            c.print(f"  note: {note}", markup=False, highlight=False)
    dl = r.get("delegate")
    if dl and dl.get("available"):
        c.print(f"  CPU delegate (XNNPACK): {dl['partitions']} partition(s), {dl['ops_delegated']}/{dl['ops_total']} ops "
                "delegated")
        for o in dl["ops_outside"]:
            fix = f"; convert rewrites it (pass {o['rewrite']})" if o.get("rewrite") else ""
            c.print(f"    outside: {o['op']}x{o['count']}: {o['reason']}{fix}")
    tpu = r.get("edgetpu")
    if tpu:
        c.print("  " + preflight_table(tpu["preflight"]).replace("\n", "\n  "))
        comp = tpu["compiler"]
        if comp.get("compiled"):
            c.print(f"  compiled: {comp.get('output')}")
        else:
            c.print(f"  edgetpu_compiler is not installed here; compile with: {comp['command']}  ({comp['install']})")
    c.print(f"  wall time {r['wall_seconds']:.2f} s")


def _num3(v) -> str:
    return "-" if v is None else f"{v:.3f}"
