"""The review page in a real browser (Playwright driving Chromium, Debian's where Playwright's own build
is not installed): open the list, filter it, play a track, correct tags with the mouse and the keyboard,
undo, reload and see the correction, export it and find it in the manifest; with sign-in on, be sent to the
sign-in page, sign in there, and find the correction recorded under the signed-in name.

``COLDTAG_CHROMIUM`` names another Chromium than /usr/bin/chromium (the README's screenshot is
scripts/review_screenshot.py's)."""

import os
from pathlib import Path

import pandas as pd
import pytest

from annotation.review.cli import cli_main, serving
from annotation.review.run import Run
from annotation.review.store import DB_FILE, Store
from tests.helpers.review_runs import make_package, write_run

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("COLDTAG_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright is not installed (pip install -e '.[review]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set COLDTAG_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The review app over the test run, served by uvicorn on a free port of 127.0.0.1."""
    from annotation.review.app import create_app

    root = tmp_path_factory.mktemp("review-browser")
    model = make_package(root / "tagger")
    out = write_run(root / "annotations", model, root / "audio")
    (root / "audio" / "odd.txt").write_text("an odd little song\nin three lines\nof lyrics\n")
    run = Run(out, root / "tagger")
    store = Store(out / DB_FILE, run.ids, run.labels)
    with serving(create_app(run, store, who="ana")) as url:
        yield url, root, store


def test_review_a_track_in_the_browser_and_export_the_correction(browser, served, tmp_path):
    url, root, store = served
    page = browser.new_page(viewport={"width": 1100, "height": 820})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/")
    rows = page.locator("#tracks tbody tr")
    rows.first.wait_for()
    assert rows.count() == 14 and page.inner_text("#count") == "14 track(s)"

    page.select_option("#filters select[name=tag]", "genre/rock")
    page.click("#filters button[type=submit]")
    page.wait_for_function("document.querySelector('#count').textContent === '7 track(s)'")
    page.fill("#filters input[name=q]", "odd")
    page.press("#filters input[name=q]", "Enter")
    page.wait_for_function("document.querySelector('#count').textContent === '1 track(s)'")
    assert rows.count() == 1 and "genre/rock" in rows.first.inner_text()
    page.click("text=odd.wav")

    page.wait_for_selector("#groups tr")
    assert page.inner_text("#title") == "odd.wav"
    assert "an odd little song" in page.inner_text("#lyrics")
    assert "genre/rock with mood/calm" in page.inner_text("#reason")
    page.wait_for_function("document.querySelector('#player').readyState >= 1", timeout=10_000)
    assert page.evaluate("document.querySelector('#player').duration") == pytest.approx(2.0, abs=0.05)
    page.evaluate("document.querySelector('#player').play()")
    page.wait_for_function("document.querySelector('#player').currentTime > 0.2", timeout=10_000)
    page.wait_for_function("document.querySelector('#picture').naturalWidth === 1000", timeout=20_000)
    # Loop the chunk behind mood/calm: the tagger's grid over 2 s is two 1 s chunks; the player stays in one.
    page.locator("#groups tr[data-group=mood][data-tag=calm] button[data-action=loop]").click()
    page.wait_for_function("document.querySelector('#message').textContent.startsWith('looping mood/calm: chunk')")
    start = float(page.inner_text("#message").split(", ")[1].split(" s to ")[0])
    assert start in (0.0, 1.0) and page.is_visible("#segment")
    page.wait_for_timeout(1500)
    assert start <= page.evaluate("document.querySelector('#player').currentTime") <= start + 1.05
    page.locator("body").press("l")  # the focused row (genre/rock): loops that one instead
    page.wait_for_function("document.querySelector('#message').textContent.startsWith('looping genre/rock')")
    page.locator("body").press("l")  # again: stops
    assert not page.is_visible("#segment")
    page.evaluate("document.querySelector('#player').pause()")

    rock = page.locator("#groups tr[data-group=genre][data-tag=rock]")
    rock.locator("button[data-action=remove]").click()
    page.wait_for_function("document.querySelector('#groups tr[data-tag=rock] .state').textContent"
                           " === 'remove by ana'")
    # Keyboard: j j moves to folk (third row), a adds it; u takes it back.
    page.locator("body").press("j")
    page.locator("body").press("j")
    page.locator("body").press("a")
    page.wait_for_function("document.querySelector('#groups tr[data-tag=folk] .state').textContent === 'add by ana'")
    page.locator("body").press("u")
    page.wait_for_function("document.querySelector('#groups tr[data-tag=folk] .state').textContent === ''")
    bad = page.locator("#groups tr[data-tag=tempo]")
    bad.locator("input").fill("500")
    bad.locator("button[data-action=set]").click()
    page.wait_for_function("document.querySelector('#message').textContent.includes('outside its range')")

    page.reload()
    page.wait_for_selector("#groups tr")
    assert page.inner_text("#groups tr[data-tag=rock] .state") == "remove by ana"
    assert page.inner_text("#groups tr[data-tag=folk] .state") == ""
    assert [(row.action, row.tag) for row in store.history()] == [("remove", "rock"), ("add", "folk"),
                                                                  ("undo", "folk")]
    screenshot = tmp_path / "review.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.read_bytes()[:4] == b"\x89PNG"

    page.goto(url + "/")
    page.click("#verify-box summary")
    page.select_option("#verify select[name=tag]", "genre/rock")
    page.fill("#verify input[name=n]", "3")
    page.click("#verify button[type=submit]")
    page.wait_for_function("document.querySelector('#verify-result').textContent.includes('given to 7 track(s)')")
    assert page.locator("#verify-tracks li").count() == 3

    page.goto(url + "/track?id=nope.wav")
    assert "unknown track id 'nope.wav'" in page.inner_text("#message")
    assert errors == []

    export = tmp_path / "export"
    assert cli_main(["export", str(root / "annotations"), "--model", str(root / "tagger"), "--out", str(export)]) == 0
    manifest = pd.read_parquet(export / "manifest.parquet").set_index("track_id")
    assert list(manifest.index) == ["odd.wav"] and list(manifest.loc["odd.wav", "genre"]) == []


@pytest.fixture(scope="module")
def served_signed_in(tmp_path_factory):
    """The review app with sign-in on (one reviewer, cleo), served by uvicorn on a free port of 127.0.0.1."""
    from annotation.review.app import create_app
    from annotation.review.auth import SignIn, add_reviewer

    root = tmp_path_factory.mktemp("review-browser-sign-in")
    model = make_package(root / "tagger")
    out = write_run(root / "annotations", model, root / "audio")
    add_reviewer(root / "reviewers.txt", "cleo", "a long secret")
    run = Run(out, root / "tagger")
    store = Store(out / DB_FILE, run.ids, run.labels)
    with serving(create_app(run, store, who="ana", sign_in=SignIn.from_file(root / "reviewers.txt"))) as url:
        yield url, store


def test_sign_in_through_the_page_and_corrections_record_the_signed_in_name(browser, served_signed_in):
    url, store = served_signed_in
    context = browser.new_context(viewport={"width": 1100, "height": 820})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/track?id=odd.wav")
    assert page.url == url + "/signin?next=%2Ftrack%3Fid%3Dodd.wav"
    page.fill("input[name=name]", "cleo")
    page.fill("input[name=secret]", "not it")
    page.click("button[type=submit]")
    assert page.inner_text("#message") == "Wrong name or secret."
    page.fill("input[name=name]", "cleo")
    page.fill("input[name=secret]", "a long secret")
    page.click("button[type=submit]")
    page.wait_for_selector("#groups tr")
    assert page.url == url + "/track?id=odd.wav"
    assert page.inner_text("#reviewer") == "Signed in as cleo" and page.locator("#who").count() == 0
    cookie = next(c for c in context.cookies() if c["name"] == "coldtag_review_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.locator("#groups tr[data-group=genre][data-tag=rock] button[data-action=remove]").click()
    page.wait_for_function("document.querySelector('#groups tr[data-tag=rock] .state').textContent"
                           " === 'remove by cleo'")
    assert [(row.who, row.action, row.tag) for row in store.history()] == [("cleo", "remove", "rock")]

    page.click("#signout")
    page.wait_for_url(url + "/signin")
    page.goto(url + "/")
    assert page.url == url + "/signin?next=%2F"
    assert errors == []
    context.close()


def test_search_the_run_with_a_sentence_in_the_browser(browser, served):
    url, _, _ = served
    page = browser.new_page(viewport={"width": 1100, "height": 820})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/")
    page.locator("#tracks tbody tr").first.wait_for()
    page.fill("#search input[name=q]", "rock, not loud")
    page.fill("#search input[name=n]", "3")
    page.press("#search input[name=q]", "Enter")
    hits = page.locator("#search-hits li")
    hits.first.wait_for()
    # odd.wav is the one rock track the model finds calm rather than loud: first, and the reasons say why.
    assert hits.count() == 3 and hits.first.locator("a").inner_text() == "odd.wav"
    assert "genre/rock = 0.9: +0.90; not mood/loud = 0.1: -0.10" in hits.first.inner_text()
    assert "not mood/loud" in page.inner_text("#search-read")
    page.fill("#search input[name=q]", "zxqv flarb")
    page.press("#search input[name=q]", "Enter")
    page.wait_for_function("document.querySelector('#message').textContent.includes('names nothing')")
    assert hits.count() == 0 and errors == []
