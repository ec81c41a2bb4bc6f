"""Headless Chromium driven over the DevTools protocol on `--remote-debugging-pipe`: no extra packages.

    from chromium import Chromium            # scripts/ is not a package: put this folder on sys.path first
    browser = Chromium(1280, 900)
    try:
        browser.navigate(Path("site/index.html").resolve().as_uri())
        title = browser.value("document.querySelector('h1').textContent")   # any JSON value
        browser.capture(Path("shot.png"))
    finally:
        browser.close()

Used by scripts/explorer_screenshot.py, scripts/docs_screenshot.py and tests/test_docs.py. A failure of the browser
or of a page (no Chromium, a closed pipe, a protocol error, a navigation that fails or never loads, a script that
throws) raises ChromiumError, a SystemExit: a script stops with its one line, a test fails with it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REAL = Path("/usr/lib/chromium/chromium")  # Debian's launcher script does not pass fds 3 and 4 through


class ChromiumError(SystemExit):
    """The browser or a page failed; its one line."""


def find() -> str | None:
    """The Chromium executable to start, or None when none is installed."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        return None
    return str(REAL) if REAL.exists() else exe


class Chromium:
    """Headless Chromium over the DevTools protocol on a pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, width: int, height: int):
        exe = find()
        if exe is None:
            raise ChromiumError("no Chromium on PATH")
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        high_cmd, high_res = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, res_w))  # clear of 3 and 4

        def child():
            os.dup2(high_cmd, 3)
            os.dup2(high_res, 4)

        # a profile of its own: a Chromium the user has open (or another run of this) holds the default one's lock
        self._profile = tempfile.mkdtemp(prefix="edgecnn-chromium-")
        self.proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--remote-debugging-pipe", "--hide-scrollbars",
                                      f"--window-size={width},{height}", "--use-angle=swiftshader",
                                      "--enable-unsafe-swiftshader", f"--user-data-dir={self._profile}",
                                      "about:blank"],
                                     preexec_fn=child, close_fds=False, stderr=subprocess.DEVNULL)
        for fd in (cmd_r, res_w, high_cmd, high_res):
            os.close(fd)
        self._buf, self._id = b"", 0
        page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", self.session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, session: str | None = None, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise ChromiumError("Chromium closed its DevTools pipe")
                self._buf += chunk
            line, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(line)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise ChromiumError(f"Chromium: {method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        """The JSON value of `expression` in the page; None when it throws (a page still loading: poll again)."""
        return self.send("Runtime.evaluate", self.session, expression=expression, returnByValue=True)["result"].get(
            "value")

    def value(self, expression: str):
        """The JSON value of `expression` (a promise is awaited); ChromiumError when it throws."""
        r = self.send("Runtime.evaluate", self.session, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            why = (d.get("exception") or {}).get("description") or d.get("text") or "an exception"
            raise ChromiumError(f"script failed: {why.splitlines()[0]}")
        return r["result"].get("value")

    def navigate(self, url: str, ready: str | None = None, timeout_s: float = 60) -> None:
        """Open `url` and wait until its document has loaded (`document.readyState == 'complete'` in the new
        document, not the one before it) and, when given, the JS expression `ready` holds."""
        self.evaluate("window.__edgecnn_previous_page = true")  # gone once the new document replaced this one
        nav = self.send("Page.navigate", self.session, url=url)
        if nav.get("errorText"):
            raise ChromiumError(f"{url}: {nav['errorText']}")
        loaded = "!window.__edgecnn_previous_page && document.readyState === 'complete'"
        deadline = time.monotonic() + timeout_s
        for what in (loaded, ready):
            while what and not self._holds(what):
                if time.monotonic() > deadline:
                    raise ChromiumError(f"{url}: the page never got ready ({what}) in {timeout_s:g} s")
                time.sleep(0.1 if what == loaded else 0.5)

    def _holds(self, expression: str) -> bool:
        try:
            return bool(self.evaluate(expression))
        except ChromiumError:  # no execution context between two documents: ask again
            return False

    def capture(self, out: Path) -> None:
        """A PNG screenshot of the viewport to `out`."""
        out.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", self.session, format="png")["data"]))

    def screenshot(self, url: str, out: Path, ready: str, settle_s: float, zoom: tuple[int, int, int] | None = None,
                   timeout_s: float = 120) -> None:
        """Open `url`, wait until `ready` (JS) holds, then `settle_s` seconds; `zoom` (x, y, steps): that many
        Ctrl+wheel steps in at (x, y) first (Model Explorer's own zoom gesture)."""
        self.send("Page.navigate", self.session, url=url)
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(ready):
            if time.monotonic() > deadline:
                raise ChromiumError(f"the page never showed the graph ({ready})")
            time.sleep(0.5)
        time.sleep(settle_s)  # layout and the node-data colours after the canvas appears
        if zoom:
            x, y, steps = zoom
            for _ in range(steps):
                self.send("Input.dispatchMouseEvent", self.session, type="mouseWheel", x=x, y=y, deltaX=0,
                          deltaY=-100, modifiers=2)
                time.sleep(0.2)
            time.sleep(2)
        self.capture(out)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
