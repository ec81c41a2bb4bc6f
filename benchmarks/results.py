"""Where a benchmark's numbers go: `benchmarks/results/NAME.json` and `NAME.md`, both written by the run itself.

    from results import Column, publish
    publish("cli_startup", [Column("what", "command"), Column("median_ms", "median ms", "{:.0f}")], rows)

The JSON keeps the rows with what produced them: the exact command, the date, the commit (`-dirty` when the tree had
changes), and the machine (CPU, cores, Python, the TensorFlow/LiteRT/Keras versions). The Markdown is that table,
headed by the same command and machine; a docs page includes it with `--8<-- "benchmarks/results/NAME.md"`, so no
measured number is typed by hand, and re-running the command is how a number changes. `python benchmarks/results.py`
re-renders every .md from its .json (after a change of `render`); `tests/test_benchmark_results.py` checks that each
.md is its .json's rendering and that a docs page includes it.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent
PACKAGES = ("tensorflow", "tensorflow-cpu", "ai-edge-litert", "keras")


@dataclass(frozen=True)
class Column:
    """One column of the table: the row key, its header, and how a value is written (`fmt.format(value)`)."""

    key: str
    header: str
    fmt: str = "{}"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What ran the benchmark: CPU, cores, OS, Python and the versions of the packages that do the work."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": _cpu(), "cores": os.cpu_count(), "arch": platform.machine(), "os": platform.platform(terse=True),
            "python": platform.python_version(), "packages": versions}


def commit() -> str | None:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        # the results files themselves do not make a tree dirty: a re-run rewrites them
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
        return rev + ("-dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def command(argv: list[str] | None = None) -> str:
    """The command that ran this benchmark, as a user types it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return shlex.join([".venv/bin/python", str(script), *argv[1:]])


def _cell(col: Column, row: dict) -> str:
    value = row.get(col.key)
    if value is None:
        return "-"
    try:
        text = col.fmt.format(value)
    except (ValueError, TypeError):
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render(doc: dict) -> str:
    """The Markdown of a results document: the command and machine, the table, the notes."""
    m = doc["machine"]
    cols = [Column(**c) for c in doc["columns"]]
    versions = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [f"<!-- written by {doc['script']}; do not edit: re-run the command below -->",
             f"`{doc['command']}`: {doc['date']}, commit `{doc['commit']}`; {m['cpu']}, {m['cores']} cores, "
             f"{m['os']}, Python {m['python']}" + (f", {versions}" if versions else "") + ".", "",
             "| " + " | ".join(c.header for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(c, row) for c in cols) + " |" for row in doc["rows"]]
    if doc.get("notes"):
        lines += [""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def publish(name: str, columns: list[Column], rows: list[dict], notes: list[str] = (),
            argv: list[str] | None = None, out: Path = RESULTS) -> Path:
    """Write `out/NAME.json` (rows, command, date, commit, machine) and `out/NAME.md` (its table), print the table;
    return the .md's path."""
    if not rows:
        raise ValueError(f"{name}: no rows to publish")
    argv = list(sys.argv if argv is None else argv)
    doc = {"name": name, "script": f"benchmarks/{Path(argv[0]).name}", "command": command(argv),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(), "machine": machine(),
           "columns": [asdict(c) for c in columns], "rows": rows, "notes": list(notes)}
    out.mkdir(parents=True, exist_ok=True)
    _write(out / f"{name}.json", json.dumps(doc, indent=2, default=str) + "\n")
    _write(out / f"{name}.md", render(doc))
    print(f"\n{render(doc)}\nresults: {out / name}.json, .md", flush=True)
    return out / f"{name}.md"


def main() -> int:
    """Re-render every results/*.md from its .json."""
    for p in sorted(RESULTS.glob("*.json")):
        _write(p.with_suffix(".md"), render(json.loads(p.read_text())))
        print(p.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
