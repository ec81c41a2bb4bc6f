"""A fleet of boards benched one after another vs in parallel through Ray, on this machine.

    sudo .venv/bin/python benchmarks/ray_fleet.py [--boards 3] [--runs 20] [--rounds 2]

Starts N sshd of the emulated Raspberry Pi (`scripts/emulated_pi.sh start PORT KEY`, one port per board, each
board with its own work folder), writes a device profile for each, and benches LeNet-5 (untrained, 32x32x1) as
float32 and int8 on every board with the pipeline's own bench step: first with `LocalExecutor` (one bench after
another, as `edgecnn run` does without --executor), then with `RayExecutor` (each bench a task holding its board's
resource `board:127.0.0.1:PORT`), rounds alternating. Writes the wall times, their ratio, and the overlap check
from the recorded start/end of every bench (on one board never two at once; across boards, at once in the Ray run)
to benchmarks/results/ray_fleet.{json,md}.

All emulated boards are qemu processes on this machine's cores, so the parallel speed-up is bounded by the cores
(2 here), not by the number of boards; real boards each bring their own CPU.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from results import Column, publish  # noqa: E402

SCRIPT = ROOT / "scripts" / "emulated_pi.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pi_dir() -> Path:
    return Path(subprocess.run(["bash", str(SCRIPT), "path"], capture_output=True, text=True,
                               check=True).stdout.strip()).parent


def start_boards(n: int, tmp: Path) -> tuple[list[int], list[Path]]:
    """N sshd of the emulated Pi on free ports, and a profile for each (own work folder, host key pinned)."""
    subprocess.run(["bash", str(SCRIPT), "build"], check=True, capture_output=True)
    base = _pi_dir()
    host_pub = (base / "rootfs/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(host_pub)).digest()).decode().rstrip("=")
    ports, profiles = [], []
    for i in range(n):
        port = _free_port()
        subprocess.run(["bash", str(SCRIPT), "start", str(port), str(base / "key.pub")], check=True,
                       capture_output=True)
        ports.append(port)
        profile = tmp / f"fleet-pi-{i + 1}.yaml"
        profile.write_text(yaml.safe_dump({
            "name": f"fleet-pi-{i + 1}", "kind": "ssh", "emulated": True, "threads": 1, "runtime": "ai_edge_litert",
            "python": "/opt/venv/bin/python", "work_dir": f"~/edgecnn-fleet-{i + 1}",
            "ssh": {"host": "127.0.0.1", "port": port, "user": "pi", "key": str(base / "key"),
                    "host_key_fingerprint": fingerprint, "connect_timeout": 30, "run_timeout": 900}}))
        profiles.append(profile)
    return ports, profiles


def make_models(out: Path) -> list[Path]:
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build

    keras_path = out / "lenet5.keras"
    model = build("lenet5", (32, 32, 1), 10)
    save_model(model, keras_path, default_spec("lenet5", (32, 32, 1), [str(i) for i in range(10)], "digits"))
    paths = []
    for mode in ("float32", "int8"):
        paths.append(out / f"lenet5_{mode}.tflite")
        convert_model(keras_path, paths[-1], ConversionRequest(mode, calibration="digits", num_calibration=32))
    return paths


def bench_steps(run, models: list[Path], profiles: list[Path], runs: int, hold_board: bool = True) -> list:
    """The pipeline's bench step for every model x board, each asking for its board's resource (unless
    `hold_board` is False: the control run that shows what the resource prevents)."""
    import shutil

    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.devices.profiles import load_profile
    from edgecnn.pipeline import Step, bench_step, board_resource

    steps = []
    for model in models:
        shutil.copy(model, run.root / model.name)
        for path in profiles:
            profile = load_profile(str(path))
            settings = BenchSettings(threads=1, warmup=2, runs=runs)
            steps.append(Step(f"bench/{model.name}/{profile.name}", settings.to_dict(), (run.root / model.name,), (),
                              bench_step, (model.name, profile, settings),
                              resources={"num_cpus": 0,
                                         "resources": {board_resource(profile): 1} if hold_board else {}},
                              keep=lambda doc: True))
    return steps


def overlaps(spans: list[tuple[float, float]]) -> int:
    """Pairs of spans that overlap in time."""
    return sum(1 for i, a in enumerate(spans) for b in spans[i + 1:] if a[0] < b[1] and b[0] < a[1])


def measure(executor, out: Path, models, profiles, runs: int, hold_board: bool = True) -> dict:
    from edgecnn.pipeline import RunDir

    run = RunDir(tempfile.mkdtemp(dir=out))
    steps = bench_steps(run, models, profiles, runs, hold_board)
    t0 = time.perf_counter()
    results = executor.run_steps(run, steps)
    wall = time.perf_counter() - t0
    failed = [n for n, r in results.items() if r.get("status") != "ok"]
    if failed:
        raise SystemExit("benches failed: " + "; ".join(f"{n}: {results[n].get('error')}" for n in failed))
    entries = RunDir(run.root).steps
    per_board: dict[str, list] = {}
    for name, e in entries.items():
        per_board.setdefault(name.rsplit("/", 1)[1], []).append((e["started"], e["ended"]))
    same = sum(overlaps(s) for s in per_board.values())
    return {"wall": wall, "benches": len(entries), "same_board": same,
            "across": overlaps([(e["started"], e["ended"]) for e in entries.values()]) - same}  # pairs of two boards


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boards", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20, help="timed inferences per bench")
    ap.add_argument("--rounds", type=int, default=2, help="alternating sequential/Ray rounds")
    args = ap.parse_args()
    from edgecnn.executor.ray_cluster import RayExecutor
    from edgecnn.pipeline import LocalExecutor, boards
    from edgecnn.recipe import recipe_from_dict

    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-fleet-"))
    ports, profiles = start_boards(args.boards, tmp)
    try:
        models = make_models(tmp)
        recipe = recipe_from_dict({"name": "fleet", "data": "digits", "models": ["lenet5"],
                                   "devices": [str(p) for p in profiles]}, "fleet")
        t0 = time.perf_counter()
        with RayExecutor(boards=boards(recipe)) as ray_ex:
            ray_start = time.perf_counter() - t0
            measure(LocalExecutor(), tmp, models, profiles, 1)  # untimed: copies runner and models to each board
            seq, par, free = ("sequential (local executor)", "parallel (Ray, a resource per board)",
                              "control: Ray without the board resources")
            rows = {seq: [], par: [], free: []}
            for _ in range(args.rounds):
                rows[seq].append(measure(LocalExecutor(), tmp, models, profiles, args.runs))
                rows[par].append(measure(ray_ex, tmp, models, profiles, args.runs))
                rows[free].append(measure(ray_ex, tmp, models, profiles, args.runs, hold_board=False))
    finally:
        for port in ports:
            subprocess.run(["bash", str(SCRIPT), "stop", str(port)], capture_output=True)
    medians = {name: statistics.median(m["wall"] for m in ms) for name, ms in rows.items()}
    ok = all(m["same_board"] == 0 for name in (seq, par) for m in rows[name])
    n = len(models)  # benches per board
    pairs_board = args.boards * n * (n - 1) // 2
    pairs_across = (n * args.boards) * (n * args.boards - 1) // 2 - pairs_board
    table = [{"executor": name, "wall": medians[name], "rounds": ", ".join(f"{m['wall']:.1f}" for m in ms),
              "benches": ms[0]["benches"], "same_board": f"{max(m['same_board'] for m in ms)} of {pairs_board}",
              "across": f"{min(m['across'] for m in ms)}-{max(m['across'] for m in ms)} of {pairs_across}"}
             for name, ms in rows.items()]
    publish("ray_fleet",
            [Column("executor", "executor"), Column("wall", "wall s, median", "{:.1f}"), Column("rounds", "rounds (s)"),
             Column("benches", "benches"), Column("same_board", "overlapping pairs on one board"),
             Column("across", "overlapping pairs across boards")], table,
            notes=[f"{args.boards} emulated boards (qemu-user sshd on this machine's cores), LeNet-5 float32 + int8 on "
                   f"each, {args.runs} timed runs per bench, {args.rounds} alternating rounds; Ray start "
                   f"{ray_start:.1f} s (not counted)",
                   f"parallel / sequential: {medians[par] / medians[seq]:.2f} (speed-up "
                   f"{medians[seq] / medians[par]:.2f}x)",
                   "no two benches on one board overlapped under either executor" if ok
                   else "FAILED: two benches overlapped on one board"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
