"""The human-readable convert report (the JSON report is the dict itself)."""

from __future__ import annotations


def _io(t: dict) -> str:
    q = f" scale={t['scale']:.6g} zp={t['zero_point']}" if t.get("scale") is not None else ""
    return f"{t['name']} {t['dtype']}{list(t['shape'])}{q}"


def print_convert_report(r: dict) -> None:
    from rich.console import Console

    c = Console()
    req = r["request"]
    c.print(f"[bold]{r['output']}[/]  {req['mode']} (io {req['io']}, "
            f"{'per-tensor' if req['per_tensor'] else 'per-channel'})")
    c.print(f"  size {r['size_bytes']:,} B = {r['size_ratio_to_float32']:.3f} x float32 ({r['float32_size_bytes']:,} B)")
    c.print("  ops  " + ", ".join(f"{k}x{v}" for k, v in r["op_histogram"].items()))
    c.print(f"  ops in float: {', '.join(r['ops_in_float']) or 'none'}")
    for t in r["inputs"]:
        c.print(f"  input  {_io(t)}")
    for t in r["outputs"]:
        c.print(f"  output {_io(t)}")
    if r.get("calibration"):
        cal = r["calibration"]
        p = cal["preprocessing"]
        c.print(f"  calibration: {cal['samples']} samples from {cal['source']} (seed {cal['seed']}; "
                f"x*{p['scale']:.6g}{p['offset']:+g})")
    if r.get("guided"):
        g = r["guided"]
        c.print(f"  guided: drop {g['final_drop_points']:.2f} pts (limit {g['max_drop_points']}); kept in float: "
                f"{', '.join(g['kept_in_float']) or 'none'}")
    c.print(f"  wall time {r['wall_seconds']:.2f} s")
