"""Measured numbers in the docs come from results files the benchmarks write (`benchmarks/results.py`): each
`benchmarks/results/NAME.md` is exactly its `.json`'s rendering (never edited by hand), names a script that exists,
and is included by a docs page; `publish` writes both files with the command and machine; no page of the docs types
a table of measurements itself."""

from __future__ import annotations

import json
import re
import sys

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import results  # noqa: E402

RESULTS = sorted((REPO / "benchmarks" / "results").glob("*.json"))
SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if p.name != "results.py")
DOC_PAGES = sorted((REPO / "docs").rglob("*.md"))


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
    pages = [p for p in DOC_PAGES if include in p.read_text()]
    assert pages, f"no docs page includes {path.stem}.md"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_benchmark_writes_its_table_and_is_listed(script):
    """No script prints a table for someone to copy by hand: each publishes through results.py, and the docs' list
    of scripts names it with its command."""
    text = script.read_text()
    assert "publish(" in text, f"{script.name} does not write its table with results.publish"
    listing = (REPO / "docs" / "benchmarks.md").read_text()
    assert f"| `benchmarks/{script.name}` |" in listing, f"{script.name} is not in docs/benchmarks.md's list"


# a table header naming what a benchmark measures (latency, size, accuracy, agreement, time)
MEASURED_HEADER = re.compile(r"p50|p90|\bms\b|KiB|top-1|mAP|mIoU|agreement|drop|seconds|\(s\)", re.I)
# dated research records (the page says the experiments were throwaway scripts, not kept): not measurement pages
RECORDS = ("docs/design/",)


def typed_measured_tables(text: str) -> list[tuple[int, str]]:
    """(line, header) of each Markdown table in `text` whose header names a measured quantity: in a docs page such
    a table is typed by hand (an included results file is not in the page's own text)."""
    lines = text.splitlines()
    return [(i + 1, line) for i, line in enumerate(lines[:-1])
            if line.lstrip().startswith("|") and re.fullmatch(r"\s*\|[-| :]+\|\s*", lines[i + 1])
            and MEASURED_HEADER.search(line)]


def test_typed_table_finder():
    """The check below finds a typed table of measurements and passes a table of options."""
    typed = "text\n\n| model | p50 ms |\n|---|---|\n| a | 0.12 |\n"
    options = "| option | what it does |\n|---|---|\n| `--runs` | how many |\n"
    assert typed_measured_tables(typed) == [(3, "| model | p50 ms |")]
    assert typed_measured_tables(options) == []


def test_no_docs_page_types_a_table_of_measurements():
    """Measured tables in README.md and the docs are includes of results files, never typed (#23: numbers copied
    by hand drift)."""
    pages = [REPO / "README.md", *DOC_PAGES]
    typed = [f"{p.relative_to(REPO)}:{n}: {h[:80]}" for p in pages
             if not p.relative_to(REPO).as_posix().startswith(RECORDS)
             for n, h in typed_measured_tables(p.read_text(encoding="utf-8"))]
    assert len(pages) > 10, pages
    assert not typed, "tables of measurements typed by hand (include the benchmark's results file instead):\n" + \
        "\n".join(typed)


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
