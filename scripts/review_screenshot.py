"""The screenshot of the review page's track view that the README shows, taken over a finished ``make demo``
run: the review app over ``RUN/annotate`` (``coldtag annotate`` records of ``RUN/uploads`` made with the
packaged pipeline ``RUN/pipeline``), Debian's Chromium through Playwright on the page of the first upload
annotated without error, once its waveform over mel spectrogram and its tags are drawn.

Run it from the repository root with a relative ``--run``: the page shows the paths as the app was given
them, so the picture shows ``runs/demo/...`` and nothing of this machine. Corrections go to a temporary
store, so the page is the machine's own record whatever the run's ``review.sqlite`` holds.

docs/review.png was made with (in a clone where ``make demo`` had finished):

    python scripts/review_screenshot.py --run runs/demo --out docs/review.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.review.app import create_app
from annotation.review.cli import serving
from annotation.review.run import Run, RunError
from annotation.review.store import DB_FILE, Store

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a finished make demo run (its annotate/ and pipeline/)")
    parser.add_argument("--out", required=True, help="the PNG to write (128 colours)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium Playwright drives")
    parser.add_argument("--who", default="reviewer", help="the reviewer name shown on the page")
    parser.add_argument("--width", type=int, default=1100, help="viewport width in pixels")
    parser.add_argument("--height", type=int, default=1320,
                        help="viewport height in pixels (1320: down to the mood tags)")
    options = parser.parse_args(args)
    if Path(options.run).is_absolute():
        parser.error(f"--run {options.run}: give it relative to the repository root, the page shows it as given")
    if not Path(options.chromium).is_file():
        parser.error(f"--chromium {options.chromium}: no such file (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    try:
        run = Run(Path(options.run) / "annotate", Path(options.run) / "pipeline")
    except RunError as error:
        parser.error(str(error))
    annotated = sorted(track for track, failed in zip(run.ids, run.failed, strict=True) if not failed)
    if not annotated:
        parser.error(f"{run.out}: no upload was annotated without error")
    track = annotated[0]
    with tempfile.TemporaryDirectory(prefix="review-screenshot-") as scratch:
        store = Store(Path(scratch) / DB_FILE, run.ids, run.labels)
        with serving(create_app(run, store, who=options.who)) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=options.chromium, args=ARGS)
            page = browser.new_page(viewport={"width": options.width, "height": options.height})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}/track?id={quote(track)}")
            page.wait_for_selector("#groups tr")
            page.wait_for_function("document.querySelector('#picture').complete"
                                   " && document.querySelector('#picture').naturalWidth > 0", timeout=60_000)
            page.wait_for_function("document.querySelector('#player').readyState >= 1", timeout=20_000)
            page.wait_for_load_state("networkidle")  # the cover and the lyrics
            png = Path(scratch) / "review.png"
            page.screenshot(path=str(png))
            browser.close()
        if errors:
            print(f"review_screenshot: the page reported errors: {errors}", file=sys.stderr)
            return 1
        # 128 colours: a third of the bytes, no visible change.
        Image.open(png).quantize(128).save(options.out, optimize=True)
    print(f"review_screenshot: {track} of {run.out} -> {options.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
