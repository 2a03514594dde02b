"""The documentation site and the pipeline's report as a reader sees them: every page opened in headless
Chromium (Debian's chromium package, driven by Playwright; no browser is downloaded), served from a local
HTTP server on 127.0.0.1. A page fails on an image that did not load (naturalWidth 0), a link within the
site to a file or an #anchor that does not exist, a JavaScript error or a console error (a missing file
logs one). A screenshot of each page goes to the test's tmp_path (paths printed; `pytest -s` shows them).

The site is docs/_build/html, as `make docs` builds it (CI builds it first). If it is missing, or older than
a file it is built from (docs/, dip/, the config schema), the fixture builds it with the same command
(several minutes: the gallery's fits run), and a build that fails fails the test: it never skips.
"""

from __future__ import annotations

import functools
import html.parser
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SITE = DOCS / "_build" / "html"
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The sources the site is built from: a newer one makes the built site stale.
SOURCES = ("docs/**/*.md", "docs/**/*.py", "docs/_static/*", "dip/**/*.py", "workflow/schemas/*.yaml", "config/*.yaml")


def _newest_source() -> float:
    built = {DOCS / "_build", DOCS / "gallery", DOCS / "_generated"}
    files = [
        p
        for pattern in SOURCES
        for p in ROOT.glob(pattern)
        if p.is_file() and not any(parent in built for parent in p.parents)
    ]
    return max(p.stat().st_mtime for p in files)


@pytest.fixture(scope="module")
def site() -> Path:
    """docs/_build/html, built here (as `make docs` does) when missing or stale."""
    index = SITE / "index.html"
    if not index.exists() or index.stat().st_mtime < _newest_source():
        build = subprocess.run(
            [str(BIN / "sphinx-build"), "-W", "--keep-going", "-n", "-b", "html", "docs", str(SITE)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-5000:]
    assert index.exists(), f"{SITE}: no index.html after the build"
    return SITE


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """`root` over HTTP on 127.0.0.1 (a free port), in a thread, shut down on exit; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# After the page's load event: every image made eager and awaited, then those that decoded to nothing.
BROKEN_IMAGES = """async () => {
    const images = Array.from(document.images);
    images.forEach((img) => { img.loading = "eager"; });
    await Promise.all(images.map((img) => img.complete ? null :
        new Promise((done) => { img.addEventListener("load", done); img.addEventListener("error", done); })));
    return images.filter((img) => img.naturalWidth === 0).map((img) => img.currentSrc || img.src || img.outerHTML);
}"""
LINKS = "() => Array.from(document.querySelectorAll('a[href]')).map((a) => a.href)"


def _page_error(message) -> bool:
    """A console error of the page's own, not the browser's request for /favicon.ico (which neither the site
    nor the report has, nor needs)."""
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


def check_page(browser, base: str, root: Path, page_path: str, shots: Path) -> list[str]:
    """Open base/page_path; return what is wrong with it (empty: nothing) and save its screenshot."""
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda err: problems.append(f"JavaScript error: {err}"))
    page.on("console", lambda msg: problems.append(f"console error: {msg.text}") if _page_error(msg) else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: problems.append(f"request failed ({r.failure}): {r.url}"))
    response = page.goto(f"{base}/{page_path}", wait_until="load")
    if response is None or response.status != 200:
        problems.append(f"HTTP {response.status if response else 'no response'}")
    problems += [f"image did not load: {src}" for src in page.evaluate(BROKEN_IMAGES)]
    for href in page.evaluate(LINKS):
        url = urlsplit(href)
        if f"{url.scheme}://{url.netloc}" != base:
            continue  # another site: not fetched (the test runs offline)
        target = root / unquote(url.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"link to a missing file: {href}")
        elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in anchors(target):
            problems.append(f"link to a missing anchor: {href}")
    shot = shots / (page_path.replace("/", "__").removesuffix(".html") + ".png")
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.close()
    return problems


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site but Sphinx's generated index pages' assets."""
    skip = ("_static", "_sources", "_images", "_downloads")
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html") if p.relative_to(site).parts[0] not in skip)


def test_the_site_has_the_home_page_every_gallery_page_and_the_references(site):
    pages = set(site_pages(site))
    examples = sorted(p.stem for p in (DOCS / "examples").glob("plot_*.py"))
    assert len(examples) >= 9, examples
    wanted = {"index.html", "gallery/index.html", "reference/cli.html", "reference/config.html", "reference/api.html"}
    wanted |= {f"gallery/{name}.html" for name in examples}
    assert wanted <= pages, sorted(wanted - pages)
    # Each gallery page shows the figure its example drew when the site was built.
    for name in examples:
        text = (site / "gallery" / f"{name}.html").read_text()
        assert f"sphx_glr_{name}_001.png" in text, f"{name}: no figure on its page"


def test_every_page_of_the_site_loads_cleanly_in_chromium(site, browser, tmp_path):
    pages = site_pages(site)
    problems = {}
    with serve(site) as base:
        for page in pages:
            found = check_page(browser, base, site, page, tmp_path)
            if found:
                problems[page] = found
    assert not problems, "\n".join(f"{page}: {p}" for page, found in problems.items() for p in found)
    print(f"{len(pages)} pages checked")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The Snakemake report (one self-contained HTML file) of the small config cut to two tasks, one network and
    one greyscale image, run end to end here: every kind of page the report has (tables, figures, stopping
    curves, logs) with a few of the fits (the whole small config runs end to end in tests/test_workflow.py)."""
    work = tmp_path_factory.mktemp("report")
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / "data", work / "data")
    small = yaml.safe_load((work / "config" / "test.yaml").read_text())
    small |= {"images": ["camera"], "archs": ["skip"]}
    small["tasks"] = {name: small["tasks"][name] for name in ("denoise-s25", "sr-x4")}
    (work / "config" / "report.yaml").write_text(yaml.safe_dump(small))
    snakemake = [str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work)]
    config = ["--configfile", str(work / "config" / "report.yaml")]
    for extra in (["--cores", "2"], ["--report", str(work / "report.html")]):
        # The rules call `dip`: put this environment's scripts first, as an activated environment would.
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        r = subprocess.run(
            [*snakemake, *config, *extra], cwd=work, capture_output=True, text=True, timeout=1800, env=env
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work / "report.html"


def test_the_pipeline_report_loads_cleanly_in_chromium(report, browser, tmp_path):
    with serve(report.parent) as base:
        problems = check_page(browser, base, report.parent, report.name, tmp_path)
    assert not problems, "\n".join(problems)
