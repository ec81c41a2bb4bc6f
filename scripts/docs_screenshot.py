"""Screenshots of the documentation site: the landing page and one task page, as a reader's browser shows them.

    .venv/bin/python scripts/docs_screenshot.py OUT_DIR [--size 1280x900] [--page tasks/detection/]

Builds the site (`mkdocs build --strict`, mkdocs.yml at the repo root) into OUT_DIR/site, opens the pages in
headless Chromium (scripts/chromium.py, file:// URLs) and writes OUT_DIR/index.png and OUT_DIR/<page>.png
(e.g. tasks-detection.png). Needs the `docs` extra (pip install -e '.[docs]') and Chromium.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ is not a package: its chromium.py
from chromium import Chromium  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# the theme's fonts and icons are local, but give its layout (and a page's images) a moment after `load`
READY = "document.querySelector('article h1') !== null && [...document.images].every(i => i.complete)"


def build(site: Path) -> None:
    print(f"$ mkdocs build --strict -d {site}", flush=True)
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"mkdocs build failed (exit {p.returncode})")


def page_file(site: Path, page: str) -> Path:
    """The built file of a page given as its site path (`tasks/detection/`, `` for the landing page)."""
    path = site / page.strip("/")
    path = path / "index.html" if path.is_dir() or not path.suffix else path
    if not path.is_file():
        raise SystemExit(f"{page or '/'}: not a page of the built site ({path} does not exist)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="Folder for the screenshots (and the built site, in OUT/site).")
    ap.add_argument("--size", default="1280x900", help="Browser window WxH.")
    ap.add_argument("--page", action="append", help="Site path of a page to shoot besides the landing page "
                    "(repeatable; default: tasks/detection/).")
    ap.add_argument("--settle", type=float, default=1.0, help="Seconds to wait after a page is ready.")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    site = out / "site"
    build(site)
    width, height = (int(v) for v in a.size.lower().split("x"))
    pages = ["", *(a.page or ["tasks/detection/"])]
    with Chromium(width, height) as browser:
        for page in pages:
            shot = out / (page.strip("/").replace("/", "-").removesuffix(".html") + ".png" if page.strip("/")
                          else "index.png")
            browser.navigate(page_file(site, page).as_uri(), ready=READY)
            time.sleep(a.settle)
            browser.capture(shot)
            print(f"{shot}: {shot.stat().st_size} bytes", flush=True)


if __name__ == "__main__":
    main()
