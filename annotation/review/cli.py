"""``coldtag review``: serve the review page over an annotate run, or export its corrections.

    coldtag review annotations/ --model runs/demo/tagger/model [--port 8765] [--who ana]
    coldtag review annotations/ --model runs/demo/tagger/model --host 0.0.0.0 --reviewers reviewers.txt
    coldtag review add-reviewer reviewers.txt ana        # asks for ana's secret
    coldtag review export annotations/ --model runs/demo/tagger/model --out runs/review-export

``--model`` is the package that made the records (its vocabulary and thresholds say which tags and values
are valid); corrections go to ``review.sqlite`` in the run folder. A run folder or model that cannot be
used is said in one line, exit code 2.

On 127.0.0.1 (the default) the page is open to whoever uses this machine; on any other address it needs
``--reviewers``, a file of reviewers and their hashed secrets (`review.auth`), and each reviewer signs in.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from annotation.review.auth import SESSION_HOURS, ReviewersError, SignIn, add_reviewer, is_loopback
from annotation.review.run import Run, RunError
from annotation.review.store import DB_FILE, Store
from tagging.pretrained.convert import known_names


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldtag review", description=__doc__.split("\n")[0],
                                     epilog="coldtag review export RUN_DIR --model DIR --out DIR: write the "
                                            "corrections as a manifest and vocabulary for train.py. "
                                            "coldtag review add-reviewer FILE NAME: add a reviewer who may "
                                            "sign in (the secret is asked for, or read from stdin)")
    parser.add_argument("run", metavar="RUN_DIR", help="the --out folder of a coldtag annotate run")
    parser.add_argument("--model", required=True, help="the package (or pretrained name: "
                        f"{', '.join(known_names())}) that made the records")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    parser.add_argument("--who", default=None, help="the reviewer name the pages start with (default: your login)")
    parser.add_argument("--reviewers", default=None, metavar="FILE",
                        help="reviewers who must sign in, one 'NAME:hashed secret' a line (coldtag review "
                             "add-reviewer writes them); needed to serve on any address but this machine's")
    parser.add_argument("--words", default=None, metavar="FILE",
                        help="the vocabulary's word list for the search box, as coldtag search --words")
    parser.add_argument("--session-hours", type=float, default=SESSION_HOURS,
                        help=f"how long a sign-in lasts (default: {SESSION_HOURS:g})")
    return parser


def add_reviewer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldtag review add-reviewer",
                                     description="add a reviewer (or give one a new secret) in a reviewers file; "
                                                 "the secret is asked for twice on a terminal, else read from "
                                                 "the first line of stdin")
    parser.add_argument("file", metavar="FILE", help="the reviewers file (created, readable by you only, if missing)")
    parser.add_argument("name", metavar="NAME", help="the reviewer's name, as corrections will record it")
    return parser


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldtag review export",
                                     description="write the corrections as a manifest and vocabulary for train.py")
    parser.add_argument("run", metavar="RUN_DIR", help="the --out folder of a coldtag annotate run")
    parser.add_argument("--model", required=True, help="the package (or pretrained name: "
                        f"{', '.join(known_names())}) that made the records")
    parser.add_argument("--out", required=True, help="folder for manifest.parquet, vocab.json and export.json")
    parser.add_argument("--val-share", type=float, default=0.2, help="share of the tracks in the val split")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    return parser


def cli_main(args: list[str] | None = None) -> int:
    """``coldtag review`` without the ``review``; returns the exit code."""
    args = sys.argv[1:] if args is None else list(args)
    if args[:1] == ["add-reviewer"]:
        return add_reviewer_main(args[1:])
    exporting = args[:1] == ["export"]
    options = (export_parser() if exporting else serve_parser()).parse_args(args[1:] if exporting else args)
    name = "coldtag review export" if exporting else "coldtag review"
    if not exporting and options.reviewers is None and not is_loopback(options.host):
        print(f"{name}: error: --host {options.host} serves the page beyond this machine: give --reviewers FILE "
              "so that reviewers sign in (coldtag review add-reviewer FILE NAME writes it)", file=sys.stderr)
        return 2
    try:
        sign_in = None
        if not exporting and options.reviewers is not None:
            sign_in = SignIn.from_file(options.reviewers, options.session_hours)
        words = None
        if not exporting and options.words is not None:
            from annotation.search.query import WordList

            words = WordList.load(options.words)
        run = Run(options.run, options.model)
        store = Store(run.out / DB_FILE, run.ids, run.labels)
        if exporting:
            from annotation.review.export import export

            manifest = export(run, store, options.out, options.val_share, options.format)
            print(f"{name}: {len(manifest)} corrected track(s) -> {options.out}", file=sys.stderr)
            return 0
    except (RunError, ValueError, OSError) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    import uvicorn

    from annotation.review.app import create_app

    app = create_app(run, store, options.who or getpass.getuser(), sign_in, words)
    print(f"{name}: {len(run.ids)} records of {run.out} at http://{options.host}:{options.port}/"
          + ("" if sign_in is None else f", {len(sign_in.reviewers)} reviewer(s) may sign in"), file=sys.stderr)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning")
    return 0


def add_reviewer_main(args: list[str]) -> int:
    """``coldtag review add-reviewer FILE NAME``; returns the exit code."""
    options = add_reviewer_parser().parse_args(args)
    name = "coldtag review add-reviewer"
    if sys.stdin.isatty():
        secret = getpass.getpass(f"secret for {options.name}: ")
        if getpass.getpass("again: ") != secret:
            print(f"{name}: error: the two secrets differ; nothing written", file=sys.stderr)
            return 2
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    try:
        new = add_reviewer(options.file, options.name, secret)
    except (ReviewersError, OSError) as error:
        print(f"{name}: error: {options.file}: {error}", file=sys.stderr)
        return 2
    print(f"{name}: {'added' if new else 'new secret for'} {options.name.strip()} in {options.file}", file=sys.stderr)
    return 0


@contextmanager
def serving(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread (for a browser driven from this process: the browser
    tests, scripts/review_screenshot.py); yields its URL, ``http://host:port`` (port 0: the free one it got)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError(f"the review app did not start on {host}:{port} within {timeout:g} s")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    sys.exit(cli_main())
