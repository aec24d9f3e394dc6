"""The documentation site, built once per test run, and a browser to open it.

The build (a few minutes: the gallery runs every example) starts in a child process
as soon as the tests are collected, so it runs while the other tests do; the site's
tests are moved to the end of the run and wait for it (see ``conftest.py``).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SITE = DOCS / "_build" / "html"
#: What a build writes beside the sources; removed first, so every build is from scratch.
GENERATED = (DOCS / "_build", DOCS / "generated", DOCS / "auto_examples")


class SiteBuild:
    """``sphinx-build -W --keep-going`` of ``docs/`` into ``docs/_build/html``."""

    def __init__(self):
        for folder in GENERATED:
            shutil.rmtree(folder, ignore_errors=True)
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
             str(DOCS), str(SITE)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
            # One torch thread: the build runs beside the other tests, which keep a core.
            env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"},
        )
        self._result: tuple[int, str] | None = None

    def result(self, timeout: float = 900) -> tuple[int, str]:
        """Exit status and output of the build, once it is done."""
        if self._result is None:
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            self._log.seek(0)
            self._result = (code, self._log.read())
            self._log.close()
        return self._result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def page_text(path: Path) -> str:
    """The visible text of an HTML page, tags removed (for looking up printed output)."""
    import html

    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", path.read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


# ------------------------------------------------------------------------- browser
def chromium() -> str | None:
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


#: Served beside the site: opens a page of it in a frame, waits until the page and
#: its images have loaded, and writes what it found into #result as JSON.
_CHECK_PAGE = """<!doctype html>
<html><body><pre id="result">pending</pre>
<iframe id="page" src="/{page}" width="1280" height="900"></iframe>
<script>
const frame = document.getElementById("page");
frame.addEventListener("load", async () => {{
  const doc = frame.contentDocument;
  const images = Array.from(doc.querySelectorAll("img"));
  // Load every image now, also those below the fold that would load lazily.
  images.forEach((img) => {{ img.loading = "eager"; }});
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {{
    img.addEventListener("load", done); img.addEventListener("error", done);
  }})));
  const h1 = doc.querySelector("h1");
  document.getElementById("result").textContent = JSON.stringify({{
    title: doc.title,
    h1: h1 ? h1.textContent : null,
    images: images.map((img) => ({{
      src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0,
      width: img.naturalWidth,
    }})),
  }});
}});
</script></body></html>
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        if self.path.startswith("/__check__/"):
            body = _CHECK_PAGE.format(page=self.path[len("/__check__/"):]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format, *args):  # quiet
        pass


class Browser:
    """Headless Chromium opening pages of the site, served on 127.0.0.1."""

    def __init__(self, executable: str, site: Path):
        self.executable = executable
        handler = functools.partial(_Handler, directory=str(site))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.profile = tempfile.TemporaryDirectory()

    def open(self, page: str) -> dict:
        """What the page showed once loaded: title, first heading, images."""
        port = self.server.server_address[1]
        done = subprocess.run(
            [self.executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={self.profile.name}", "--virtual-time-budget=15000",
             "--dump-dom", f"http://127.0.0.1:{port}/__check__/{page}"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
        if not found or found.group(1) == "pending":
            raise AssertionError(f"{page} did not finish loading:\n{done.stderr[-2000:]}")
        import html

        return json.loads(html.unescape(found.group(1)))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.profile.cleanup()
