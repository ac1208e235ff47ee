"""The built site in a real browser: headless Chromium (Debian's, at /usr/bin/chromium) driven
by Playwright, over HTTP from 127.0.0.1.

Every page of the table of contents loads without console errors, every image loads, math is
typeset by MathJax, notebook pages carry working launch and download buttons, and no link
within the site is broken. Screenshots of the home page and the first chapter are written to
``_build/screenshots/`` of the tests' site.

Without Chromium or Playwright the tests skip, except in CI (``CI`` set), where they fail:
``.ci/run`` installs Chromium, the dev extra installs Playwright (never ``playwright
install``: the browser is Debian's).
"""

import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import nbformat
import pytest

from recon.book import notebooks, status

CHROMIUM = Path(os.environ.get("RECON_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
SCREENSHOTS = notebooks.BUILD / "screenshots"
#: visits of a page whose checks a navigation interrupted (:func:`visited`)
VISITS = 3
CHAPTERS = notebooks.CHAPTERS_IN_SITE

# Wait for every image (lazy ones made eager) to load or fail, then report each one.
IMAGES_JS = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done); })));
  return images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth,
    figure: !!img.closest("figure, .cell_output")}));
}"""
WAIT_FOR_MATHJAX = """async () => {
  // MathJax loads asynchronously: on a page with math, wait (up to 120 s) for its startup
  // promise to exist before awaiting it, or a slow load reads the page untypeset
  const started = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
  const hasMath = document.querySelector("#main-content .math");
  for (let i = 0; hasMath && !started() && i < 1200; i++) {
    await new Promise(done => setTimeout(done, 100));
  }
  if (started()) { await MathJax.startup.promise; }
}"""
MATH_JS = """async () => {
  await (""" + WAIT_FOR_MATHJAX + """)();
  return {math: document.querySelectorAll("#main-content .math").length,
          typeset: document.querySelectorAll("#main-content mjx-container").length};
}"""
BUTTONS_JS = """() => {
  const hrefs = sel => Array.from(document.querySelectorAll(sel)).map(a => a.href);
  return {launch: hrefs(".dropdown-launch-buttons a"),
          download: hrefs(".dropdown-download-buttons a"),
          source: hrefs(".dropdown-source-buttons a")};
}"""


def require_browser():
    """Skip (fail in CI) when Chromium or Playwright is missing."""
    problems = []
    if not CHROMIUM.is_file():
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("Playwright is not installed (pip install -e '.[dev]')")
    if problems:
        message = "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {message}")
        pytest.skip(message)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@dataclass
class PageReport:
    url: str
    status: int
    errors: list = field(default_factory=list)
    images: list = field(default_factory=list)
    math: dict = field(default_factory=dict)
    links: list = field(default_factory=list)
    buttons: dict = field(default_factory=dict)
    menu_opens: bool | None = None


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(browser, built_book):
    """The built site over HTTP on a free port of 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(QuietHandler, directory=str(built_book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def favicon_probe(url: str | None, site: str) -> bool:
    """The one error ignored: Chromium's own request for /favicon.ico, which no page of the
    site makes (the book has no icon), failing with 404."""
    return url == f"{site}/favicon.ico"


# Resolves once the page is what the checks read: MathJax has typeset it (its startup promise,
# waited for until it exists)
# and every image has loaded or failed.
# (at most READY_SECONDS: Playwright's evaluate has no timeout of its own, and once, in a fresh
# clone's CI run, a first visit waited with the CPU idle for over 15 minutes)
READY_SECONDS = 150
READY_JS = """async () => {
  const ready = (async () => {
    await (""" + WAIT_FOR_MATHJAX + """)();
    await Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  })();
  await Promise.race([ready, new Promise((_, late) => setTimeout(
    () => late(new Error("page not ready within """ + str(READY_SECONDS) + """ s")),
    """ + str(1000 * READY_SECONDS) + """))]);
  return true;
}"""
REDIRECT_JS = """() => {
  const meta = document.querySelector('meta[http-equiv="refresh" i]');
  const target = meta && (meta.content.match(/url=(.*)$/i) || [])[1];
  return target ? new URL(target.trim(), document.baseURI).href : null;
}"""


def wait_until_ready(page, attempts: int = 5) -> None:
    """Wait for what the checks read (:data:`READY_JS`; waiting for "networkidle" timed out
    under load). A page that redirects (the home page's ``index.html``, by a meta refresh
    that fires after its load event) is followed to its target first, or the checks would
    read the target before MathJax ran; a context destroyed by the redirect is waited out
    and tried again."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        target = page.evaluate(REDIRECT_JS)
    except PlaywrightError as exc:
        if not worth_again(exc):
            raise
        target = None
        page.wait_for_load_state("load")
    if target and page.url != target:
        page.wait_for_url(target, wait_until="load")
    again_if_navigated(lambda: page.evaluate(READY_JS), attempts,
                       before_again=lambda: page.wait_for_load_state("load"))


def toc_pages() -> list[str]:
    """The site paths of the table of contents' pages, home page first."""
    return ["index.html"] + [f"{f}.html" for f in status.toc_files()]


def notebook_pages() -> list[str]:
    return [f"{CHAPTERS}/{name}.html" for name in status.toc_notebooks()]


def visit(context, path: str, site: str, screenshot: str | None) -> PageReport:
    """Open ``path`` in a new page of ``context`` and report what the browser saw (saving a
    full-page screenshot as ``screenshot`` when given)."""
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(
        f"console {m.type}: {m.text} at {m.location.get('url')}")
        if m.type == "error" and not favicon_probe(m.location.get("url"), site) else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))
    try:
        response = page.goto(f"{site}/{path}", wait_until="load")
        wait_until_ready(page)
        report = PageReport(url=page.url, status=response.status if response else 0,
                            errors=errors)
        report.math = page.evaluate(MATH_JS)
        report.images = page.evaluate(IMAGES_JS)
        report.links = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        report.buttons = page.evaluate(BUTTONS_JS)
        if screenshot:
            page.screenshot(path=str(SCREENSHOTS / screenshot), full_page=True)
        if path in notebook_pages():
            page.click(".dropdown-launch-buttons button")
            page.wait_for_selector(".dropdown-launch-buttons .dropdown-menu.show",
                                   state="visible", timeout=5_000)
            report.menu_opens = True
        return report
    finally:
        page.close()


@pytest.fixture(scope="module")
def visited(browser, site):
    """Open every page of the table of contents once and report what the browser saw. A visit
    whose page navigated under a check (Playwright's "context was destroyed": the home
    page's meta refresh racing a check on a busy machine) is made again from the start, at
    most :data:`VISITS` times (:func:`again_if_navigated`); every other failure fails at
    once."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    shots = {toc_pages()[1]: "home.png"}
    if notebook_pages():
        shots[notebook_pages()[0]] = f"chapter-{Path(notebook_pages()[0]).stem}.png"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(180_000)  # a busy 2-core machine, not a fault
    reports = {path: again_if_navigated(lambda path=path: visit(context, path, site,
                                                                 shots.get(path)))
               for path in toc_pages()}
    context.close()
    return reports


def worth_again(exc: Exception) -> bool:
    """Whether Playwright's ``exc`` says the page navigated under the call ("Execution context
    was destroyed"), or that it was not ready in time (:data:`READY_JS`): either way a new
    attempt may find it as it should be."""
    return "context was destroyed" in str(exc) or "page not ready within" in str(exc)


def again_if_navigated(action, attempts: int = VISITS, before_again=lambda: None):
    """``action()``, made again (at most ``attempts`` times in all, ``before_again()`` before
    each new attempt) while it fails because the page navigated under it or was not ready in
    time (:func:`worth_again`); any other failure, or the last attempt's, is raised."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(attempts):
        try:
            return action()
        except PlaywrightError as exc:
            if not worth_again(exc) or attempt == attempts - 1:
                raise
            before_again()


def test_a_visit_interrupted_by_a_navigation_is_made_again():
    pytest.importorskip("playwright")
    from playwright.sync_api import Error as PlaywrightError

    calls = []

    def flaky(fails: int, message: str):
        def action():
            calls.append(message)
            if len(calls) <= fails:
                raise PlaywrightError(message)
            return "report"
        return action

    destroyed = ("Page.evaluate: Execution context was destroyed, most likely because of a "
                 "navigation")
    waits = []
    assert again_if_navigated(flaky(2, destroyed), attempts=3,
                              before_again=lambda: waits.append(1)) == "report"
    assert len(calls) == 3 and len(waits) == 2
    calls.clear()
    with pytest.raises(PlaywrightError, match="destroyed"):
        again_if_navigated(flaky(3, destroyed), attempts=3)
    calls.clear()
    late = "Page.evaluate: Error: page not ready within 150 s"
    assert again_if_navigated(flaky(1, late), attempts=3) == "report" and len(calls) == 2
    calls.clear()
    with pytest.raises(PlaywrightError, match="Timeout"):
        again_if_navigated(flaky(1, "Timeout 180000ms exceeded"), attempts=3)
    assert len(calls) == 1


def test_every_page_loads_without_console_errors(visited):
    problems = [f"{path}: HTTP {report.status}" for path, report in visited.items()
                if report.status != 200]
    problems += [f"{path}: {error}" for path, report in visited.items()
                 for error in report.errors]
    assert not problems, "\n".join(problems)


def test_every_image_loads_and_chapters_show_their_figures(visited):
    for path, report in visited.items():
        broken = [img["src"] for img in report.images if img["width"] <= 0]
        assert not broken, f"{path}: images that did not load: {broken}"
    for path in notebook_pages():
        assert any(img["figure"] for img in visited[path].images), f"{path} shows no figure"


def test_math_is_typeset_by_mathjax(visited):
    with_math = {p: r.math for p, r in visited.items() if r.math["math"]}
    assert with_math, "no page of the book has math"
    for path, math in with_math.items():
        assert math["typeset"] > 0, f"{path}: {math['math']} math elements, none typeset"


def test_notebook_pages_have_launch_and_download_buttons(visited, site):
    repository = status.repository_url()
    for path in notebook_pages():
        report = visited[path]
        name = Path(path).stem
        assert report.menu_opens, f"{path}: the launch menu does not open"
        launch = report.buttons["launch"]
        assert any(u.startswith("https://colab.research.google.com/github/") and
                   u.endswith(f"/notebooks/{name}.ipynb") for u in launch), launch
        assert any(u.startswith("https://mybinder.org/v2/gh/") and "urlpath=" in u and
                   u.endswith(f"tree/notebooks/{name}.ipynb") for u in launch), launch
        assert repository in report.buttons["source"]
        (notebook,) = [u for u in report.buttons["download"] if u.endswith(".ipynb")]
        assert notebook.startswith(site)
        with urllib.request.urlopen(notebook) as response:
            nb = nbformat.reads(response.read().decode(), as_version=4)
        nbformat.validate(nb)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{notebook} is not the executed notebook"


def test_no_link_within_the_site_is_broken(visited, site):
    targets = {}
    for path, report in visited.items():
        for href in report.links:
            if href.startswith(site + "/"):
                targets.setdefault(href, path)
    assert targets
    pages, broken = {}, []
    for href, source in sorted(targets.items()):
        url, fragment = urldefrag(href)
        if urlsplit(url).path.endswith("/"):
            url += "index.html"
        if url not in pages:
            try:
                with urllib.request.urlopen(url) as response:
                    body = response.read()
                    pages[url] = body.decode(errors="replace") if url.endswith(".html") else ""
            except urllib.error.HTTPError as exc:
                pages[url] = None
                broken.append(f"{href} (HTTP {exc.code}), linked from {source}")
        fragment = unquote(fragment)
        if fragment and pages[url] and f'id="{fragment}"' not in pages[url]:
            broken.append(f"{href} (no element #{fragment}), linked from {source}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_screenshots_of_two_pages(visited):
    shots = sorted(SCREENSHOTS.glob("*.png"))
    assert len(shots) == 2, shots
    for shot in shots:
        assert shot.stat().st_size > 10_000, shot
    (SCREENSHOTS / "pages.json").write_text(json.dumps(
        {p: {"status": r.status, "images": len(r.images), "math": r.math, "links": len(r.links)}
         for p, r in visited.items()}, indent=1))
