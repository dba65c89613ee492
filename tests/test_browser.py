"""The web page and the unpacked extension in a real browser: Debian's Chromium, headless, driven by Playwright.

The service runs the tiny random Llama in a thread on a free localhost port. Its whitespace and special
tokens are silenced so that its (gibberish) letter is not empty and can be seen on the page.
Skipped when /usr/bin/chromium (apt-get install chromium) or the playwright package is missing; Playwright
never downloads a browser here (executable_path is Debian's).

  pytest -m browser tests/test_browser.py
  # the screenshots in docs/ (the popup at 600 px, the side panel), from the embedded SmolLM2 (~1 min of CPU):
  COVERLORA_BROWSER_MODEL=embedded COVERLORA_SCREENSHOTS=docs pytest -m browser tests/test_browser.py -k "600 or panel"
"""

import functools
import http.server
import os
import re
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser
if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no `playwright install` needed)")
pytest.importorskip("uvicorn")

expect = sync_api.expect
from conftest import start_service  # noqa: E402

from coverlora.service import EXTENSION_DIR, EXTENSION_ID, LetterWriter, ServeConfig  # noqa: E402

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check"]
RESUME = {"name": "Ana Silva", "current_experience": "Data Analyst at Bar Inc for 3 years",
          "past_experience": "Junior Analyst at Foo Ltd for 2 years", "skills": "SQL, Tableau, Python",
          "qualifications": "BSc in Statistics"}
JOB_PAGE = """<!doctype html><html><head><title>Data Analyst - Acme Corp | Careers</title>
<meta property="og:site_name" content="Acme Corp"></head>
<body><nav>Home · Jobs · About</nav><main><h1>Data Analyst</h1>
<p>Acme Corp is hiring a Data Analyst to turn sales data into decisions.</p>
<p>You have 3+ years of SQL and Tableau, and you explain numbers to people who are not analysts.</p>
</main></body></html>"""


@pytest.fixture(scope="module")
def writer(tiny_model_path):
    import torch

    name = os.environ.get("COVERLORA_BROWSER_MODEL")
    if name:
        torch.set_num_threads(1)  # a real model on a shared CPU: one core
        return LetterWriter.from_config(ServeConfig(model=name))
    writer = LetterWriter.from_config(ServeConfig(model=tiny_model_path))
    tokenizer = writer.tokenizer
    silent = [i for i in range(len(tokenizer)) if not tokenizer.decode([i]).strip() or i in tokenizer.all_special_ids]
    with torch.no_grad():  # a random model's letter is all newlines; make it visible gibberish instead
        writer.model.get_output_embeddings().weight[silent] = 0
    return writer


@pytest.fixture(scope="module")
def service(writer):
    url, stop = start_service(writer)
    yield url
    stop()


@pytest.fixture(scope="module")
def job_site(tmp_path_factory):
    """A job posting page on another localhost port (what a user would have open)."""
    folder = tmp_path_factory.mktemp("job-site")
    (folder / "job.html").write_text(JOB_PAGE, encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/job.html"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium with the unpacked extension, a fresh profile, nothing fetched from outside."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    extension = str(EXTENSION_DIR)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=False,  # headless via --headless=new: extensions work
            args=[*FLAGS, f"--disable-extensions-except={extension}", f"--load-extension={extension}"],
            ignore_default_args=["--disable-extensions"], viewport={"width": 900, "height": 1000})
        context.set_default_timeout(60_000)
        yield context
        context.close()


def fill_resume(page) -> None:
    # A saved resume starts collapsed (by design, so the form fits); another test may have saved one already.
    page.evaluate("document.getElementById('resume-box').open = true")
    for name, value in RESUME.items():
        page.fill(f"#resume-{name}", value)


def wait_for_letter(page) -> dict:
    page.click("#write")
    expect(page.locator("#meta")).to_contain_text("tokens in", timeout=240_000)
    return {"letter": page.evaluate("CoverloraLetter.text(document.getElementById('letter'))"),
            "warnings": page.locator("#warnings li").all_inner_texts(),
            "banner": page.locator("#grounding-banner").inner_text(),
            "error": page.locator("#error").inner_text() if page.locator("#error").is_visible() else ""}


def in_view(page, selector: str) -> bool:
    """Whether the element is shown and wholly inside the viewport (not below Chrome's 600 px cut)."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] and box["width"] > 0


def screenshot(page, name: str) -> None:
    """Into $COVERLORA_SCREENSHOTS/NAME when set (the docs/ pictures), else nowhere."""
    folder = os.environ.get("COVERLORA_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def save_service_url(browser, service) -> None:
    options = browser.new_page()
    options.goto(f"chrome-extension://{EXTENSION_ID}/options.html")
    options.fill("#service-url", service)
    options.click("button[type=submit]")
    expect(options.locator("#result")).to_have_text("saved")
    options.close()


def test_web_page_writes_a_letter(browser, service, tmp_path):
    page = browser.new_page()
    page.goto(service + "/")
    expect(page.locator("#service-status")).to_have_text(re.compile("^model:"))
    assert page.evaluate("document.body.dataset.mode") == "page"
    assert not page.locator("#use-page").is_visible()  # the page cannot read other tabs
    page.fill("#job-title", "Data Analyst")
    page.fill("#job-company", "Acme Corp")
    page.fill("#job-posting", "3+ years of SQL and Tableau.")
    fill_resume(page)
    shown = wait_for_letter(page)
    assert shown["error"] == ""
    assert shown["letter"].strip(), "no letter on the page"
    assert shown["warnings"], "the grounding warnings are not shown"
    assert "passed" not in shown["banner"].lower()
    # The untuned base model is labelled: in the header and under the letter.
    expect(page.locator("#model-kind")).to_be_visible()
    assert any("untuned base model" in warning for warning in shown["warnings"])
    page.screenshot(path=str(tmp_path / "web-page.png"), full_page=True)
    # The resume is kept (localStorage) for the next visit, and folds away once saved.
    page.reload()
    expect(page.locator("#resume-name")).to_have_value("Ana Silva")
    assert page.get_attribute("#resume-box", "open") is None
    expect(page.locator("#resume-summary")).to_contain_text("Ana Silva")
    # A missing required field: not marked before a submit, caught at the submit before any request.
    page.fill("#job-company", "")
    assert page.locator(".missing, form.submitted").count() == 0
    border = page.eval_on_selector("#job-company", "el => getComputedStyle(el).borderColor")
    page.click("#write")
    expect(page.locator("#error")).to_contain_text("Fill in the job title")
    expect(page.locator("#job-company")).to_have_class(re.compile("missing"))
    assert page.eval_on_selector("#job-company", "el => getComputedStyle(el).borderColor") != border
    page.close()


def test_extension_popup_reads_the_page_and_writes_a_letter(browser, service, job_site, tmp_path):
    base = f"chrome-extension://{EXTENSION_ID}"
    save_service_url(browser, service)
    options = browser.new_page()
    options.goto(f"{base}/options.html")
    options.click("#test")
    expect(options.locator("#result")).to_have_text(re.compile("^connected"))
    options.close()

    popup = browser.new_page()
    popup.set_viewport_size({"width": 440, "height": 600})
    popup.goto(f"{base}/popup.html?view=popup")
    expect(popup.locator("#service-status")).to_have_text(re.compile("^model:"))
    assert popup.evaluate("document.body.dataset.mode") == "popup"
    # Open the job posting as the active tab of the popup's window, as when a user clicks the toolbar icon.
    # (Playwright sees the new tab: waiting on it has a timeout, where a promise in evaluate() has none.)
    with browser.expect_page() as opened:
        popup.evaluate("url => chrome.tabs.create({url, active: true}).then(() => true)", job_site)
    opened.value.wait_for_load_state("load")
    popup.click("#use-page")
    expect(popup.locator("#job-posting")).to_have_value(re.compile("sales data"))
    assert popup.input_value("#job-title") == "Data Analyst"
    assert popup.input_value("#job-company") == "Acme Corp"
    assert "Home · Jobs" not in popup.input_value("#job-posting")  # <main>, not the navigation
    fill_resume(popup)
    shown = wait_for_letter(popup)
    assert shown["error"] == ""
    assert shown["letter"].strip(), "no letter in the popup"
    assert shown["warnings"]
    # the resume draft is saved 300 ms after the last keystroke: the tiny model can answer sooner than that.
    # evaluate() awaits the storage promise; wait_for_function would take the pending promise itself as truthy.
    deadline = time.monotonic() + 5
    while "resume" not in (stored := popup.evaluate("chrome.storage.local.get(['resume', 'lastResult'])")):
        assert time.monotonic() < deadline, "the popup never saved the resume draft"
        popup.wait_for_timeout(100)
    assert stored["resume"]["name"] == "Ana Silva" and stored["lastResult"]["letter"] == shown["letter"]
    popup.locator("body").screenshot(path=str(tmp_path / "extension-popup.png"))
    popup.close()


def test_web_page_asks_for_the_token(browser, writer):
    url, stop = start_service(writer, token="browser-token")
    try:
        page = browser.new_page()
        page.goto(url + "/")
        expect(page.locator("#service-status")).to_have_text("token needed")
        expect(page.locator("#page-settings")).to_have_attribute("open", "")
        page.fill("#page-token", "browser-token")
        page.dispatch_event("#page-token", "change")
        expect(page.locator("#service-status")).to_have_text(re.compile("^model:"))
        page.fill("#job-title", "Data Analyst")
        page.fill("#job-company", "Acme Corp")
        fill_resume(page)
        assert wait_for_letter(page)["letter"].strip()
        page.close()
    finally:
        stop()


def test_job_heuristics_in_the_browser(browser, service):
    page = browser.new_page()
    page.goto(service + "/")  # heuristics.js is loaded by the page
    guess = lambda info: page.evaluate("info => CoverloraHeuristics.guessJob(info, 100)", info)  # noqa: E731
    ld = {"title": "Nurse", "company": "Umbrella Health", "description": "<p>Care for <b>patients</b>.</p>"}
    assert guess({"title": "Jobs | Indeed", "jobPosting": ld, "text": "menu"}) == {
        "title": "Nurse", "company": "Umbrella Health", "posting": "Care for patients .", "fromSelection": False}
    linkedin = guess({"title": "Backend Engineer at Globex | LinkedIn", "h1": "", "text": "x" * 500, "siteName": "LinkedIn"})
    assert (linkedin["title"], linkedin["company"], len(linkedin["posting"])) == ("Backend Engineer", "Globex", 100)
    selected = guess({"title": "Careers", "selection": "Only this part", "text": "everything"})
    assert selected["posting"] == "Only this part" and selected["fromSelection"]
    assert guess({"title": "Product Manager - Stark Industries", "h1": "Stark Industries"})["title"] == "Product Manager"
    page.close()


def test_service_refuses_other_origins_in_the_browser(browser, service):
    """A page that is not the extension nor a localhost page (a data: URL has origin 'null') cannot use it."""
    page = browser.new_page()
    page.goto("data:text/html,<title>x</title>")
    status = page.evaluate("""url => fetch(url + '/v1/letters', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({job: {title: 'a', company: 'b'}, resume: {name: 'c'}})}).then(r => r.status, e => 'blocked')""",
                           service)
    assert status == "blocked"  # preflight refused: the browser never sends the POST
    page.close()


# ---------------------------------------------------------------------------- 600 px, the side panel, /docs offline


def test_popup_fits_chromes_600_px(browser, service):
    """Chrome cuts a popup at 600 px: the form scrolls between a fixed header and the actions, so Write (and,
    once there is a letter, Copy) stays in view whatever is open."""
    popup = browser.new_page()
    popup.set_viewport_size({"width": 440, "height": 600})
    popup.goto(f"chrome-extension://{EXTENSION_ID}/popup.html?view=popup")
    popup.evaluate("url => chrome.storage.local.clear().then(() => chrome.storage.local.set({serviceUrl: url}))", service)
    popup.reload()
    expect(popup.locator("#service-status")).to_have_text(re.compile("^model:"))
    assert popup.evaluate("document.body.getBoundingClientRect().height") <= 600
    assert popup.get_attribute("#resume-box", "open") == ""  # first use: the resume is open to be filled
    assert in_view(popup, "#write"), "Write is below the fold"
    assert popup.locator(".missing, form.submitted").count() == 0  # no red fields before a submit
    popup.fill("#job-title", "Data Analyst")
    popup.fill("#job-company", "Acme Corp")
    popup.fill("#job-posting", "3+ years of SQL and Tableau. " * 20)
    fill_resume(popup)
    assert in_view(popup, "#write")
    shown = wait_for_letter(popup)
    assert shown["letter"].strip() and shown["error"] == ""
    assert popup.get_attribute("#resume-box", "open") is None  # folded away while the letter is written
    assert in_view(popup, "#write") and in_view(popup, "#copy") and popup.locator("#letter").is_visible()
    assert popup.evaluate("document.body.getBoundingClientRect().height") <= 600
    popup.evaluate("document.getElementById('scroller').scrollTop = 0")
    popup.evaluate("document.getElementById('result').scrollIntoView()")
    screenshot(popup, "popup-600.png")
    popup.close()


def test_side_panel_writes_and_keeps_the_letter(browser, service):
    """The same form as Chrome's side panel (manifest side_panel): full height, no 'keep the popup open' note."""
    save_service_url(browser, service)
    panel = browser.new_page()
    panel.set_viewport_size({"width": 400, "height": 860})
    panel.goto(f"chrome-extension://{EXTENSION_ID}/popup.html")  # a tab is not the toolbar popup: panel mode
    assert panel.evaluate("document.body.dataset.mode") == "panel"
    assert not panel.locator("#open-panel").is_visible()
    panel.fill("#job-title", "Data Analyst")
    panel.fill("#job-company", "Acme Corp")
    panel.fill("#job-preferred_qualifications", "3+ years of SQL and Tableau; stakeholder reporting.")
    fill_resume(panel)
    shown = wait_for_letter(panel)
    assert shown["letter"].strip()
    assert in_view(panel, "#write") and in_view(panel, "#copy")
    panel.evaluate("document.getElementById('result').scrollIntoView()")
    screenshot(panel, "side-panel.png")
    panel.reload()  # the last letter comes back
    expect(panel.locator("#letter")).to_contain_text(shown["letter"].split()[0])
    panel.close()


def test_the_popup_opens_the_side_panel(browser, service):
    save_service_url(browser, service)
    popup = browser.new_page()
    popup.goto(f"chrome-extension://{EXTENSION_ID}/popup.html?view=popup")
    expect(popup.locator("#open-panel")).to_be_visible()
    called = popup.evaluate("""() => new Promise(resolve => {
        chrome.sidePanel.open = (options) => { resolve(options); return Promise.resolve(); };
        window.close = () => {};
        document.getElementById('open-panel').click();
    })""")
    assert isinstance(called["windowId"], int)
    popup.close()


def test_letter_view_highlights_flagged_claims(browser, service):
    """The highlight layer for the per-sentence claim labels the service will send: flagged sentences get a
    data-label and the evidence as a title; the text is kept character for character."""
    page = browser.new_page()
    page.goto(service + "/")
    letter = "Dear team,\n\nI led 12 teams at NASA. I know SQL! I am excited.\nBest,\nAna"
    claims = [{"sentence": "I led 12 teams at NASA.", "label": "unsupported", "evidence": "NASA is in neither input"},
              {"sentence": "I know SQL!", "label": "supported", "evidence": "skills: SQL"},
              {"sentence": "I am excited.", "label": "borrowed", "evidence": "seen in 40 training letters"}]
    found = page.evaluate("""([letter, claims]) => {
        document.getElementById('result').hidden = false;  // as the popup shows a letter (innerText needs it)
        const el = document.getElementById('letter');
        const flagged = CoverloraLetter.render(el, letter, claims);
        const spans = [...el.querySelectorAll('.sentence')].map(s => [s.textContent, s.dataset.label, s.title]);
        return {flagged, spans, text: CoverloraLetter.text(el)};
    }""", [letter, claims])
    assert found["flagged"] == 2 and found["text"] == letter
    labels = {text.strip(): (label, title) for text, label, title in found["spans"]}
    assert labels["I led 12 teams at NASA."][0] == "unsupported" and "NASA is in neither" in labels["I led 12 teams at NASA."][1]
    assert labels["I know SQL!"] == ("supported", "") and labels["Dear team,"][0] == "unchecked"
    banner = page.evaluate("""() => { const el = document.createElement('p');
        CoverloraLetter.banner(el, {warnings: []}, 0); return el.textContent; }""")
    assert banner.startswith("No problems found by these checks") and "passed" not in banner
    # Each problem once: 2 highlighted sentences (whose two claim warnings restate them) and one other warning.
    warnings = [{"code": "unsupported_claims"}, {"code": "borrowed_claims"}, {"code": "title_missing"}]
    banner = page.evaluate("""(warnings) => { const el = document.createElement('p');
        CoverloraLetter.banner(el, {warnings}, 2); return el.textContent; }""", warnings)
    assert banner == "3 things to check before sending: 2 highlighted sentences and 1 warning below.", banner
    # The evidence is reachable by keyboard: Tab from the letter box focuses its first flagged sentence, which
    # shows and announces the evidence.
    page.focus("#letter")
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => { const el = document.activeElement;
        return [el.textContent, el.getAttribute('aria-description'), getComputedStyle(el, '::after').content]; }""")
    assert focused[0].strip() == "I led 12 teams at NASA." and "NASA is in neither" in focused[1], focused
    assert "NASA is in neither" in focused[2], focused
    page.close()


def test_docs_render_with_no_network(browser, service):
    """Swagger UI at /docs loads its script and styles from the service itself: with every other host blocked,
    it still renders the API."""
    context_requests = []
    page = browser.new_page()

    def only_localhost(route):
        context_requests.append(route.request.url)
        if route.request.url.startswith(service):
            return route.continue_()
        return route.abort()

    page.route("**/*", only_localhost)
    page.goto(service + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("coverlora letter service", timeout=30_000)
    expect(page.locator(".opblock-summary-path", has_text="/v1/letters/stream")).to_be_visible()
    outside = [url for url in context_requests if not url.startswith(service)]
    assert outside == [], f"/docs asked the network for {outside}"
    page.close()
