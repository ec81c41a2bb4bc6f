"""The documentation says what the code does: the site builds, renders and links, and what it tells users to type
or run works.

- The site (`mkdocs.yml`, `docs/`) builds with `mkdocs build --strict`: a broken link, anchor, snippet or nav entry
  that MkDocs can see is an error, not a warning scrolled past.
- Every built page opened in headless Chromium (scripts/chromium.py, file:// URLs) renders: a non-empty `<h1>` and
  an article with text in it (a page whose Markdown did not convert, or whose theme broke, has neither). Every
  internal link (`a[href]` not http(s)/mailto) leads to a file of the built site, and its `#fragment` to an element
  id on that page, as the browser resolves them (MkDocs checks the Markdown's links; this checks the HTML the theme
  and plugins wrote: nav, table of contents, the CLI reference, the API pages).
- Every `edgecnn` command line in a ```bash / ```sh / ```console fence of README.md and docs/**/*.md parses against
  the real click tree (commands, options, choices, argument counts), without running: a renamed option or command
  makes the docs fail here, not for the user. One test per command line, named by file and line.
- Every ```python fence of README.md and docs/**/*.md runs for real as a script of its own (so each example is
  whole: a reader copies one), in a fresh folder holding `my_photos/`, the folder of labeled photos the docs'
  examples train on; the getting-started page must keep its Python example.
- The getting-started walk-through "Your own photos to a Coral Edge TPU" runs for real, command by command, in such
  a folder: each exits 0 and writes the files it names (`-o`), and the converted model maps fully to the Edge TPU
  when the page says it does.

`my_photos/` is built from what the repo ships: the real photos of calibration/photos (crops of scikit-image's
public-domain/CC0 photos, see its PROVENANCE.md), 16 per class in 3 classes: cat, space, ground. The examples that
run (the Python fences, the walk-through) train real models and are `slow`; the rest takes seconds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import require
from helpers import REPO, run_cli, run_cli_in_process

DOCS = REPO / "docs"
GETTING_STARTED = DOCS / "getting-started.md"
CORAL_SECTION = "## Your own photos to a Coral Edge TPU"
PYTHON_SECTION = "## The same in Python"

# lower bounds, so that an empty site or a fence parser that finds nothing fails instead of passing vacuously
MIN_PAGES = 20
MIN_LINKS = 500
MIN_CLI_COMMANDS = 80
MIN_ARTICLE_CHARS = 200

# the `docs` extra: mkdocs, mkdocs-material, mkdocs-click, mkdocstrings[python]
HAS_MKDOCS = all(importlib.util.find_spec(m) is not None for m in ("mkdocs", "material", "mkdocs_click",
                                                                   "mkdocstrings", "mkdocstrings_handlers"))


def _load_chromium():
    """scripts/chromium.py as a module (scripts/ is not a package; put nothing of it on sys.path)."""
    spec = importlib.util.spec_from_file_location("edgecnn_scripts_chromium", REPO / "scripts" / "chromium.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


chromium = _load_chromium()


# --- the Markdown: fences and the command lines in them -------------------------------------------------------------


@dataclass(frozen=True)
class Fence:
    path: Path
    line: int  # 1-based line of the opening ```
    lang: str
    lines: tuple[str, ...]  # the content, dedented to the fence's own indentation

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})\s*\{?\s*\.?(?P<lang>[\w+-]*)")


def fences(path: Path) -> list[Fence]:
    """The fenced code blocks of a Markdown file, nested ones too (admonitions, content tabs indent them)."""
    out, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, start = m["indent"], m["ticks"], i
        body, i = [], i + 1
        while i < len(lines) and not (lines[i].strip().startswith(ticks) and lines[i].strip().strip(ticks[0]) == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        out.append(Fence(path, start + 1, m["lang"].lower(), tuple(body)))
        i += 1
    return out


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def all_fences(langs: set[str]) -> list[Fence]:
    return [f for p in doc_files() if p.exists() for f in fences(p) if f.lang in langs]


SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py", "python3"}


def shell_lines(fence: Fence) -> list[tuple[int, str]]:
    """(line in the file, command line) of a shell fence: `\\` continuations joined; in a ```console fence only the
    `$ ` prompted lines (the rest is output)."""
    out, pending, first = [], "", 0
    for k, raw in enumerate(fence.lines):
        lineno = fence.line + 1 + k
        text = raw.rstrip()
        if not pending:
            if fence.lang == "console":
                if not text.lstrip().startswith("$ "):
                    continue
                text = text.lstrip()[2:]
            first = lineno
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        out.append((first, pending + text))
        pending = ""
    if pending:
        out.append((first, pending))
    return [(n, s) for n, s in out if s.strip()]


def split_commands(line: str) -> list[str]:
    """A shell line cut at `&&`, `||`, `;`, `|` and a background `&` outside quotes, its `# comment` dropped."""
    parts, cur, quote, i = [], "", None, 0
    while i < len(line):
        c = line[i]
        if quote:
            cur += c
            if c == "\\" and quote == '"' and i + 1 < len(line):
                cur += line[i + 1]
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote, cur = c, cur + c
        elif c == "\\" and i + 1 < len(line):
            cur += line[i:i + 2]
            i += 1
        elif c == "#" and (not cur or cur[-1].isspace()):
            break
        elif line.startswith(("&&", "||"), i):
            parts.append(cur)
            cur = ""
            i += 1
        elif c in ";|" or (c == "&" and not cur.endswith((">", "<")) and not line.startswith("&>", i)):
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


_REDIRECT = re.compile(r"^(\d*|&)(>>?|<)(&\d+|.*)$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


_WRAPPERS = {"time", "sudo", "env", "nohup", "exec", "command"}  # run the command after them: `time edgecnn run ...`


def words(command: str) -> list[str]:
    """shlex words of one command: leading `VAR=value` assignments and wrappers (`time`, `sudo`, ...) and
    redirections (`> f`, `2>&1`) dropped."""
    out, skip = [], False
    for w in shlex.split(command):
        if skip:
            skip = False
            continue
        m = _REDIRECT.match(w)
        if m:
            skip = m[3] == ""
            continue
        if not out and (_ASSIGNMENT.match(w) or w in _WRAPPERS):
            continue
        out.append(w)
    return out


def edgecnn_args(command: str) -> list[str] | None:
    """The arguments of an `edgecnn ...` (or `.venv/bin/edgecnn ...`) command; None for any other command."""
    w = words(command)
    return w[1:] if w and Path(w[0]).name == "edgecnn" else None


@dataclass(frozen=True)
class CliCase:
    where: str
    command: str
    args: tuple[str, ...]


def cli_cases() -> list[CliCase]:
    cases = []
    for fence in all_fences(SHELL):
        for lineno, line in shell_lines(fence):
            found = [args for cmd in split_commands(line) if (args := edgecnn_args(cmd)) is not None]
            for k, args in enumerate(found):
                where = f"{fence.path.relative_to(REPO)}:{lineno}" + (f"#{k + 1}" if len(found) > 1 else "")
                cases.append(CliCase(where, line.strip(), tuple(args)))
    return cases


CLI_CASES = cli_cases()
# an example that appears on two pages (the README's and getting-started's) runs once, under its first place
PYTHON_FENCES = list({tuple(f.lines): f for f in reversed(all_fences(PYTHON))}.values())[::-1]


# --- the click tree -------------------------------------------------------------------------------------------------


def parse_cli(args: list[str]) -> str | None:
    """Parse `edgecnn ARGS` against the real click tree, down to the leaf command, without running anything: None
    when it parses (or is a `--help`/`--version`), else why not."""
    import click

    from edgecnn.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            ctx = main.make_context("edgecnn", list(args), resilient_parsing=False)
            cmd = main
            while isinstance(cmd, click.Group):
                protected = getattr(ctx, "_protected_args", None)  # click >= 8.2; 8.1: ctx.protected_args
                rest = [*(protected if protected is not None else ctx.protected_args), *ctx.args]
                if not rest:
                    break  # a group run on its own (`edgecnn devices`)
                name, cmd, rest = cmd.resolve_command(ctx, rest)
                ctx = cmd.make_context(name, rest, parent=ctx)
    except click.exceptions.NoArgsIsHelpError:
        return None  # `edgecnn` alone: its help
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "edgecnn"
        return f"{where}: {exc.format_message()}"
    except click.exceptions.Exit as exc:  # --help, --version
        return None if exc.exit_code == 0 else f"exit {exc.exit_code}"
    except SystemExit as exc:  # the `edgecnn` group's own one-line form of a usage error
        return err.getvalue().strip() or f"exit {exc.code}"
    return None


def test_cli_parser_catches_bad_lines():
    """The check itself: good lines parse, bad ones (at each level of the tree) do not."""
    assert parse_cli(["convert", "m.keras", "-o", "m.tflite", "--quant", "int8", "--calibration", "photos"]) is None
    assert parse_cli(["devices", "list"]) is None and parse_cli(["devices"]) is None
    assert parse_cli(["convert", "--help"]) is None and parse_cli(["--version"]) is None
    assert "no-such" in parse_cli(["no-such-command"])
    assert "--frobnicate" in parse_cli(["--frobnicate", "convert"])
    assert "--frobnicate" in parse_cli(["convert", "m.keras", "-o", "x", "--frobnicate"])
    assert "int9" in parse_cli(["convert", "m.keras", "-o", "x", "--quant", "int9"])
    assert "nope" in parse_cli(["devices", "nope"])
    assert parse_cli(["eval"]) is not None  # MODELS... is required
    assert parse_cli(["convert", "m.keras", "-o", "x", "[--json]"]) is not None  # meta-syntax is not a command line


def test_shell_line_splitting():
    line = ("EDGECNN_DB=r.sqlite .venv/bin/edgecnn bench m.tflite --json > out.json 2>&1 && "
            "edgecnn compare a b --data 'my photos/' | tee log; time edgecnn run quick  # a comment; edgecnn nope")
    cmds = split_commands(line)
    assert [edgecnn_args(c) for c in cmds] == [["bench", "m.tflite", "--json"],
                                               ["compare", "a", "b", "--data", "my photos/"], None, ["run", "quick"]]
    fence = Fence(REPO / "README.md", 1, "console", ("$ edgecnn convert a \\", "    -o b", "a.tflite: 12 kB"))
    assert shell_lines(fence) == [(2, "edgecnn convert a      -o b")]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.where for c in CLI_CASES])
def test_docs_command_line_parses(case):
    why = parse_cli(list(case.args))
    assert why is None, f"{case.where}: `{case.command}` does not parse: {why}"


def test_docs_have_many_command_lines():
    """The fences were found and read: a parser that finds nothing, or docs without commands, fail here."""
    assert len(CLI_CASES) >= MIN_CLI_COMMANDS, \
        f"only {len(CLI_CASES)} edgecnn command lines in README.md and docs/ (expected >= {MIN_CLI_COMMANDS})"


# --- the site: build, render, links ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` of the repo's site into a temporary folder; that folder."""
    require(HAS_MKDOCS, "the docs tools are not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"mkdocs build --strict failed (exit {p.returncode}):\n{p.stdout[-3000:]}\n" \
                              f"{p.stderr[-6000:]}"
    return out


_PAGE_FACTS = """(() => {
  const article = document.querySelector('article') || document.querySelector('.md-content') || document.body;
  const h1 = article.querySelector('h1') || document.querySelector('h1');
  return {
    h1: h1 ? h1.textContent.replace(/¶/g, '').trim() : '',
    text: (article.innerText || '').trim().length,
    ids: [...document.querySelectorAll('[id]')].map(e => e.id)
         .concat([...document.querySelectorAll('a[name]')].map(a => a.getAttribute('name'))),
    links: [...document.querySelectorAll('a[href]')].map(a => [a.getAttribute('href'), a.href]),
  };
})()"""


def _pages(site: Path) -> list[Path]:
    """The built HTML pages, 404.html aside (a server shows it at any depth, so its links are root-absolute)."""
    return sorted(p for p in site.rglob("*.html") if p.relative_to(site).as_posix() != "404.html")


@pytest.fixture(scope="module")
def rendered(site) -> dict[Path, dict]:
    """Every built page opened in headless Chromium: its h1, article text length, element ids and links."""
    require(chromium.find() is not None, "chromium not installed (apt-get install chromium)")
    facts = {}
    with chromium.Chromium(1280, 900) as browser:
        for page in _pages(site):
            browser.navigate(page.as_uri())
            facts[page] = browser.value(_PAGE_FACTS)
    return facts


def test_site_builds_strict(site):
    """The build itself (the fixture asserts its exit code): the landing page and every nav page are there."""
    assert (site / "index.html").is_file()
    assert len(_pages(site)) >= MIN_PAGES, f"only {len(_pages(site))} pages built (expected >= {MIN_PAGES})"


def test_site_pages_render(site, rendered):
    problems = []
    for page, f in rendered.items():
        rel = page.relative_to(site)
        if not f["h1"]:
            problems.append(f"{rel}: no <h1>, or an empty one")
        if f["text"] < MIN_ARTICLE_CHARS:
            problems.append(f"{rel}: the article has {f['text']} characters of text (< {MIN_ARTICLE_CHARS})")
    assert len(rendered) >= MIN_PAGES, f"only {len(rendered)} pages built (expected >= {MIN_PAGES})"
    assert not problems, f"{len(problems)} pages do not render:\n" + "\n".join(problems)


def _is_external(href: str) -> bool:
    return href.startswith(("http://", "https://", "mailto:"))


def test_site_internal_links_resolve(site, rendered):
    problems, checked = [], 0
    for page, f in rendered.items():
        rel = page.relative_to(site)
        for raw, absolute in f["links"]:
            if _is_external(raw):
                continue
            checked += 1
            url = urllib.parse.urlsplit(absolute)
            if url.scheme != "file" or url.netloc:
                problems.append(f"{rel}: {raw!r} -> {absolute} is not a file of the site")
                continue
            target = Path(urllib.parse.unquote(url.path))
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(site):
                problems.append(f"{rel}: {raw!r} leads outside the site ({target})")
            elif not target.is_file():
                problems.append(f"{rel}: {raw!r} -> {target.relative_to(site)} was not built")
            elif url.fragment and target.suffix == ".html":
                fragment = urllib.parse.unquote(url.fragment)
                ids = rendered[target]["ids"] if target in rendered else []
                if fragment not in ids:
                    problems.append(f"{rel}: {raw!r}: no id {fragment!r} on {target.relative_to(site)}")
    assert checked >= MIN_LINKS, f"only {checked} internal links checked (expected >= {MIN_LINKS})"
    assert not problems, f"{len(problems)} of {checked} internal links are broken:\n" + "\n".join(problems)


# --- running the examples -------------------------------------------------------------------------------------------

# my_photos/<class>/: the shipped photos (calibration/photos, real photos) that show the same thing
PHOTO_CLASSES = {"cat": ("cat", "chelsea"), "space": ("moon", "hubble_deep_field"), "ground": ("grass", "gravel")}


def make_workdir(root: Path) -> Path:
    """A fresh folder with `my_photos/<class>/*.jpg` (3 classes of 16 real photos); the folder."""
    root.mkdir(parents=True, exist_ok=True)
    photos = REPO / "calibration" / "photos"
    for cls, sources in PHOTO_CLASSES.items():
        (root / "my_photos" / cls).mkdir(parents=True)
        for name in sources:
            for src in sorted(photos.glob(f"{name}_*.jpg")):
                shutil.copyfile(src, root / "my_photos" / cls / src.name)
        assert len(list((root / "my_photos" / cls).iterdir())) >= 12
    return root


def _env(work: Path) -> dict:
    """The examples' environment: a results database of their own, never the user's."""
    return {**os.environ, "EDGECNN_DB": str(work / "results.sqlite")}


def section(path: Path, heading: str) -> tuple[int, list[str]] | None:
    """(line number of the heading, the lines up to the next heading of the same or a higher level), or None."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    level = len(heading) - len(heading.lstrip("#"))
    for i, line in enumerate(lines):
        if line.strip() == heading:
            end = next((j for j in range(i + 1, len(lines))
                        if re.match(rf"^#{{1,{level}}}\s", lines[j])), len(lines))
            return i + 1, lines[i:end]
    return None


def section_fences(path: Path, heading: str, langs: set[str]) -> list[Fence]:
    found = section(path, heading)
    if found is None:
        return []
    start, lines = found
    return [f for f in fences(path) if start <= f.line < start + len(lines) and f.lang in langs]


def test_getting_started_has_a_python_example():
    """The getting-started page keeps its Python example (the fence test below runs it)."""
    assert section(GETTING_STARTED, PYTHON_SECTION) is not None, \
        f"{GETTING_STARTED.relative_to(REPO)}: no section {PYTHON_SECTION!r}"
    assert section_fences(GETTING_STARTED, PYTHON_SECTION, PYTHON), \
        f"{GETTING_STARTED.relative_to(REPO)}: {PYTHON_SECTION!r} has no ```python fence"


@pytest.mark.slow
@pytest.mark.parametrize("fence", PYTHON_FENCES, ids=[f.where for f in PYTHON_FENCES])
def test_docs_python_example_runs(fence, tmp_path):
    """Each ```python fence as a script of its own, in a fresh folder with my_photos/."""
    work = make_workdir(tmp_path / "work")
    script = work / "example.py"
    script.write_text("\n".join(fence.lines) + "\n")
    p = subprocess.run([sys.executable, str(script)], cwd=work, env=_env(work), capture_output=True, text=True,
                       timeout=1800)
    assert p.returncode == 0, f"{fence.where}: the example failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n" \
                              f"{p.stderr[-4000:]}"


def _outputs(args: list[str]) -> list[str]:
    """The files an edgecnn command line says it writes: its `-o X` / `--output X`."""
    out = []
    for k, a in enumerate(args):
        if a in ("-o", "--output") and k + 1 < len(args):
            out.append(args[k + 1])
        elif a.startswith("--output="):
            out.append(a.split("=", 1)[1])
    return out


def _is_pip(w: list[str]) -> bool:
    return bool(w) and (Path(w[0]).name in ("pip", "pip3") or w[1:3] == ["-m", "pip"])


@pytest.mark.slow
def test_getting_started_coral_walkthrough_runs(tmp_path):
    """`## Your own photos to a Coral Edge TPU`: its commands, run in order as a reader would, in a fresh folder
    with my_photos/: train, convert to int8 for the Edge TPU, bench, compare."""
    found = section(GETTING_STARTED, CORAL_SECTION)
    assert found is not None, f"{GETTING_STARTED.relative_to(REPO)}: no section {CORAL_SECTION!r}"
    blocks = section_fences(GETTING_STARTED, CORAL_SECTION, {"bash"})
    assert blocks, f"{GETTING_STARTED.relative_to(REPO)}: {CORAL_SECTION!r} has no ```bash fence"
    fence, says_maps_fully = blocks[0], "maps fully" in "\n".join(found[1])
    # the set-up line (`python3 -m venv .venv && . .venv/bin/activate && pip install -e .`) is left out whole: the
    # test runs in the installed project already, and a venv made here would install nothing
    commands = [(n, c) for n, line in shell_lines(fence) if not any(_is_pip(words(c)) for c in split_commands(line))
                for c in split_commands(line)]
    subcommands = [args[0] for _, c in commands if (args := edgecnn_args(c))]
    assert {"train", "convert", "bench", "compare"} <= set(subcommands), \
        f"{fence.where}: expected train, convert, bench and compare, found {subcommands}"

    work = make_workdir(tmp_path / "work")
    env = {"EDGECNN_DB": str(work / "results.sqlite")}
    converted_to_edgetpu = False
    for lineno, command in commands:
        where = f"{GETTING_STARTED.relative_to(REPO)}:{lineno}"
        args = edgecnn_args(command)
        if args is None:  # another shell command of the walk-through (ls, mkdir, ...): as written
            p = subprocess.run(["bash", "-c", command], cwd=work, env=_env(work), capture_output=True, text=True,
                               timeout=600)
        elif args[0] == "train":  # training turns on TensorFlow's op determinism: a process of its own
            p = run_cli(*args, cwd=work, env=env, timeout=1800)
        else:
            p = run_cli_in_process(*args, cwd=work, env=env)
        assert p.returncode == 0, f"{where}: `{command}` exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        for name in _outputs(args or []):
            assert (work / name).exists(), f"{where}: `{command}` did not write {name}"
        if args and args[0] == "convert" and "edgetpu" in args:
            converted_to_edgetpu = True
            if says_maps_fully:
                assert "maps fully to the Edge TPU" in p.stdout, \
                    f"{where}: the page says the model maps fully to the Edge TPU; the preflight says:\n{p.stdout}"
    assert converted_to_edgetpu, f"{fence.where}: no `edgecnn convert ... --target edgetpu`"
