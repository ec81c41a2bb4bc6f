"""Measured numbers in the docs come from results files the benchmarks write (`benchmarks/results.py`): each
`benchmarks/results/NAME.md` is exactly its `.json`'s rendering (never edited by hand), names a script that exists,
and is included by a docs page; `publish` writes both files with the command and machine."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import results  # noqa: E402

RESULTS = sorted((REPO / "benchmarks" / "results").glob("*.json"))
SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if p.name != "results.py")


def test_there_are_results():
    assert RESULTS, "benchmarks/results/ holds no results"
    assert SCRIPTS, "benchmarks/ holds no scripts"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_a_results_file_is_its_rendering_and_is_in_the_docs(path):
    doc = json.loads(path.read_text())
    assert doc["rows"] and doc["columns"], path
    assert (REPO / doc["script"]).is_file(), doc["script"]
    assert doc["command"].startswith(f".venv/bin/python {doc['script']}"), doc["command"]
    md = path.with_suffix(".md").read_text()
    assert md == results.render(doc), f"{path.with_suffix('.md').name} was edited by hand: re-run the benchmark"
    include = f'--8<-- "benchmarks/results/{path.stem}.md"'
    pages = [p for p in (REPO / "docs").rglob("*.md") if include in p.read_text()]
    assert pages, f"no docs page includes {path.stem}.md"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_benchmark_writes_its_table_and_is_listed(script):
    """No script prints a table for someone to copy by hand: each publishes through results.py, and the docs' list
    of scripts names it with its command."""
    text = script.read_text()
    assert "publish(" in text, f"{script.name} does not write its table with results.publish"
    listing = (REPO / "docs" / "benchmarks.md").read_text()
    assert f"| `benchmarks/{script.name}` |" in listing, f"{script.name} is not in docs/benchmarks.md's list"


def test_publish_writes_the_table_with_its_command(tmp_path):
    cols = [results.Column("model", "model"), results.Column("ms", "p50 ms", "{:.2f}")]
    md = results.publish("demo", cols, [{"model": "a|b", "ms": 1.234}, {"model": "c", "ms": None}],
                         notes=["one note"], argv=[str(REPO / "benchmarks" / "demo.py"), "--runs", "3"], out=tmp_path)
    doc = json.loads((tmp_path / "demo.json").read_text())
    assert doc["command"] == ".venv/bin/python benchmarks/demo.py --runs 3"
    assert doc["machine"]["cores"] and doc["rows"][0]["ms"] == 1.234
    text = md.read_text()
    assert "`.venv/bin/python benchmarks/demo.py --runs 3`" in text
    assert "| a\\|b | 1.23 |" in text and "| c | - |" in text and "- one note" in text
    with pytest.raises(ValueError, match="no rows"):
        results.publish("empty", cols, [], out=tmp_path)
