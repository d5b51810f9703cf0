"""The review web app: a JSON API over a `Run` and its `Store`, and two plain HTML pages that use it.

    GET  /                          the track list (static/list.html)
    GET  /track?id=ID               a track's page (static/track.html); 404 with a message for an unknown id
    GET  /api/tracks                one page of the list: q, tag=group/label, p_min, p_max, errors=only|hide,
                                    reviewed=yes|no, sort=id|certainty|probability|priority, page, per_page
    GET  /api/track?id=ID           a record with its corrections, lyrics and queue reason
    GET  /api/queue?limit=N         review next: unreviewed tracks, least certain or most disagreeing first
    GET  /api/stats                 corrections per tag, and per-tag precision against threshold
    GET  /api/verify?tag=G/L&n=N    verify a sample: N random tracks given the tag, their precision and interval
    GET  /api/search?q=TEXT&n=N     the N best tracks for a sentence, each with its reasons (`annotation.search`);
                                    400 with the reason for a query that names nothing in the vocabulary
    POST /api/corrections           {track_id, group, tag, action, value, who}; 400 with the reason if refused
    POST /api/undo                  {who, track_id?}: retract that reviewer's latest correction
    GET  /api/me                    {reviewer, sign_in}: the signed-in reviewer's name (null without sign-in)
    GET  /audio?id=ID, /cover?id=ID the files themselves (HTTP range requests, so the player can seek)
    GET  /picture?id=ID             PNG: waveform over mel spectrogram (`review.listen`)
    GET  /api/chunks?id=ID          the audio tagger's probabilities per chunk, to loop the one behind a tag

Audio paths are the records' own, as ``coldtag annotate`` wrote them (relative ones from the folder the
server runs in).

With a `SignIn` (``coldtag review --reviewers FILE``) every route but the sign-in page (``/signin``) and the
static files needs a session (`review.auth.RequireSignIn`), and a correction or undo is the signed-in
reviewer's whatever ``who`` its body names.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from annotation.review.auth import RequireSignIn, SignIn, sign_in_routes
from annotation.review.listen import Listening
from annotation.review.metrics import precision_curves, sample
from annotation.review.run import Run
from annotation.review.store import DB_FILE, Store
from annotation.search.query import NoMatch, WordList
from annotation.search.rank import SearchIndex
from tagging.labels import MULTILABEL

MAX_PER_PAGE = 200
LYRICS_CHARS = 20_000
SORTS = ("id", "certainty", "probability", "priority")


class CorrectionIn(BaseModel):
    track_id: str
    group: str
    tag: str
    action: str
    who: str = ""  # ignored when reviewers sign in
    value: float | str | None = None


class UndoIn(BaseModel):
    who: str = ""
    track_id: str | None = None


def create_app(run: Run, store: Store | None = None, who: str = "reviewer",
               sign_in: SignIn | None = None, words: WordList | None = None) -> FastAPI:
    """The app over ``run``; corrections go to ``store`` (default ``review.sqlite`` in the run folder).
    ``who``: the reviewer name the pages start with; ``sign_in``: the reviewers who may sign in (None: the page
    is open, and each correction names the reviewer its request gives); ``words``: the vocabulary's word list
    for the search box (`annotation.search.query.WordList`)."""
    store = store or Store(run.out / DB_FILE, run.ids, run.labels)
    app = FastAPI(title="coldtag review", docs_url=None, redoc_url=None)
    static = resources.files("annotation.review") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    page = {name: (static / name).read_text() for name in ("list.html", "track.html")}
    app.state.run, app.state.store = run, store
    listening = Listening(run.model)
    if sign_in is not None:
        app.add_middleware(RequireSignIn, sign_in=sign_in)
        app.include_router(sign_in_routes(sign_in, (static / "signin.html").read_text()))

    def reviewer(request: Request, named: str) -> str:
        # Signed in, the session's name is the one recorded: a body cannot speak for another reviewer.
        return named if sign_in is None else request.state.reviewer

    def page_response(name: str, status: int = 200, message: str = "") -> HTMLResponse:
        text = page[name].replace("{{who}}", _escape(who)).replace("{{run}}", _escape(str(run.out)))
        return HTMLResponse(text.replace("{{message}}", _escape(message)), status_code=status)

    def known(track_id: str) -> int:
        if track_id not in run:
            raise HTTPException(404, f"unknown track id {track_id!r}: the run {run.out} has no record of it")
        return run.index[track_id]

    @app.exception_handler(HTTPException)
    async def _errors(request: Request, error: HTTPException):
        if request.url.path.startswith(("/api/", "/audio", "/cover", "/picture")):
            return JSONResponse({"error": error.detail}, status_code=error.status_code)
        return page_response("track.html", error.status_code, str(error.detail))

    @app.get("/", response_class=HTMLResponse)
    def list_page():
        return page_response("list.html")

    @app.get("/track", response_class=HTMLResponse)
    def track_page(id: str = ""):
        if id not in run:
            return page_response("track.html", 404, f"unknown track id {id!r}: the run {run.out} has no record of it")
        return page_response("track.html")

    @app.get("/api/tracks")
    def tracks(q: str = "", tag: str = "", p_min: float | None = None, p_max: float | None = None,
               errors: str = "", reviewed: str = "", sort: str = "id", desc: bool = False,
               page: int = Query(1, ge=1), per_page: int = Query(50, ge=1, le=MAX_PER_PAGE)):
        state = store.effective()
        mask = np.ones(len(run.ids), dtype=bool)
        if q:
            needle = q.lower()
            mask &= np.fromiter((needle in text for text in run.search_text), bool, len(run.ids))
        if errors == "only":
            mask &= run.failed | run.flagged
        elif errors == "hide":
            mask &= ~run.failed
        elif errors:
            raise HTTPException(400, f"errors must be 'only' or 'hide', got {errors!r}")
        reviewed_ids = store.reviewed_tracks()
        if reviewed in ("yes", "no"):
            done = np.fromiter((i in reviewed_ids for i in run.ids), bool, len(run.ids))
            mask &= done if reviewed == "yes" else ~done
        elif reviewed:
            raise HTTPException(400, f"reviewed must be 'yes' or 'no', got {reviewed!r}")
        probability = None
        if tag:
            group, label = _tag(run, tag)
            j = run.labels.groups[group].labels.index(label)
            probability = run.probabilities[group][:, j]
            mask &= _tagged(run, state, group, label)
        if p_min is not None or p_max is not None:
            low = -math.inf if p_min is None else p_min
            high = math.inf if p_max is None else p_max
            if probability is not None:
                mask &= (probability >= low) & (probability <= high)
            else:
                inside = np.zeros(len(run.ids), dtype=bool)
                for probs in run.probabilities.values():
                    inside |= ((probs >= low) & (probs <= high)).any(axis=1)
                mask &= inside
        rows = np.flatnonzero(mask)
        if sort not in SORTS:
            raise HTTPException(400, f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        if sort == "probability" and probability is None:
            raise HTTPException(400, "sort=probability needs a tag (tag=group/label)")
        key = {"id": run.id_rank, "certainty": run.certainty, "priority": -run.priority,
               "probability": None if probability is None else -probability}.get(sort)
        if key is not None:
            values = np.where(np.isnan(key[rows]), np.inf, key[rows])  # records without numbers last
            rows = rows[np.lexsort((run.id_rank[rows], values))]
        if desc:
            rows = rows[::-1]
        start = (page - 1) * per_page
        per_track = Counter(track for track, _, _ in state)
        return {"total": len(rows), "page": page, "per_page": per_page,
                "items": [_summary(run, int(i), state, per_track, probability) for i in rows[start:start + per_page]]}

    @app.get("/api/track")
    def track(id: str):
        i = known(id)
        record = run.record(id)
        state = store.effective(id)
        groups = []
        for name, group in run.labels.groups.items():
            entry = {"name": name, "type": group.type, "labels": []}
            for j, label in enumerate(group.labels):
                correction = state.get((id, name, label))
                item = {"label": label,
                        "correction": None if correction is None else
                        {"action": correction.action, "value": correction.value, "who": correction.who,
                         "at": correction.at}}
                if group.type == MULTILABEL:
                    item.update(probability=_number(run.probabilities[name][i, j]),
                                threshold=float(run.model.thresholds[name][j]),
                                decided=bool(run.decided[name][i, j]))
                else:
                    item.update(value=_number(run.values[name][i, j]), range=list(group.ranges[j]))
                entry["labels"].append(item)
            groups.append(entry)
        lyrics_path, cover_path = run.sidecar(id, "lyrics"), run.sidecar(id, "cover")
        lyrics = None
        if lyrics_path is not None:
            try:
                lyrics = lyrics_path.read_text(errors="replace")[:LYRICS_CHARS]
            except OSError as error:
                lyrics = f"(the lyrics file cannot be read: {error})"
        return {"id": id, "path": record["path"], "duration": record.get("duration"),
                "sample_rate": record.get("sample_rate"), "channels": record.get("channels"),
                "warnings": record.get("warnings") or [], "sidecar_errors": record.get("sidecar_errors") or [],
                "error": record.get("error"), "model_sha256": record.get("model_sha256"),
                "audio": Path(record["path"] or "").is_file(), "cover": cover_path is not None, "lyrics": lyrics,
                "certainty": _number(run.certainty[i]), "priority": float(run.priority[i]),
                "reason": run.reason(i), "groups": groups,
                "history": [row._asdict() for row in store.history(id)]}

    @app.get("/api/queue")
    def queue(limit: int = Query(20, ge=1, le=MAX_PER_PAGE), after: str = ""):
        reviewed_ids = store.reviewed_tracks()
        order = np.lexsort((run.id_rank, -run.priority))  # ties in id order
        items = []
        for i in order:
            track_id = run.ids[i]
            if run.failed[i] or track_id in reviewed_ids or track_id == after:
                continue
            items.append({"id": track_id, "priority": float(run.priority[i]), "reason": run.reason(int(i))})
            if len(items) == limit:
                break
        return {"remaining": int((~run.failed).sum()) - len(reviewed_ids & set(run.ids)), "items": items}

    stats_cache: dict = {}

    @app.get("/api/stats")
    def stats():
        version = store.version()
        if stats_cache.get("version") != version:  # recomputed only when a correction was added
            value = {"counts": store.counts_per_tag(), "precision": precision_curves(run, store),
                     "corrections": store.count(), "tracks": len(run.ids), "reviewed": len(store.reviewed_tracks())}
            stats_cache.update(version=version, body=json.dumps(value).encode())
        return Response(stats_cache["body"], media_type="application/json")

    @app.get("/api/verify")
    def verify(tag: str, n: int = Query(20, ge=1, le=MAX_PER_PAGE)):
        group, label = _tag(run, tag)
        return sample(run, store, group, label, n)

    @app.get("/api/me")
    def me(request: Request):
        return {"reviewer": None if sign_in is None else request.state.reviewer, "sign_in": sign_in is not None}

    searching: list[SearchIndex] = []  # built on the first search: the text encoder loads in seconds

    @app.get("/api/search")
    def search(q: str = "", n: int = Query(20, ge=1, le=MAX_PER_PAGE)):
        try:
            if not searching:
                searching.append(SearchIndex.from_annotations(run.out, words=words))
            query = searching[0].parse(q)
        except (NoMatch, ValueError) as error:  # what is wrong with q, or records without tags to search
            raise HTTPException(400, str(error)) from None
        return {"query": q, "read_as": query.describe(),
                "hits": [hit.to_json() for hit in searching[0].search(query, n)]}

    @app.post("/api/corrections", status_code=201)
    def correct(body: CorrectionIn, request: Request):
        try:
            machine = None
            if body.track_id in run and body.group in run.labels.groups \
                    and body.tag in run.labels.groups[body.group].labels:
                machine = run.machine_value(body.track_id, body.group, body.tag)
            row = store.add(body.track_id, body.group, body.tag, body.action, reviewer(request, body.who),
                            value=None if body.value in (None, "") else body.value,
                            machine=machine, model=run.record(body.track_id)["model_sha256"]
                            if body.track_id in run else None)
        except ValueError as error:
            raise HTTPException(404 if body.track_id not in run else 400, str(error)) from None
        return row._asdict()

    @app.post("/api/undo")
    def undo(body: UndoIn, request: Request):
        name = reviewer(request, body.who)
        try:
            row = store.undo(name, body.track_id)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        if row is None:
            raise HTTPException(404, f"{name} has no correction left to undo")
        return row._asdict()

    @app.get("/audio")
    def audio(id: str):
        known(id)
        return FileResponse(_audio_file(run, id))

    @app.get("/picture")
    def picture(id: str):
        known(id)
        path = _audio_file(run, id)
        try:
            png = listening.picture(path)
        except Exception as error:  # an undecodable file: say so on the page, serve the rest
            raise HTTPException(422, f"{id!r}: no picture ({error})") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/chunks")
    def chunks(id: str):
        known(id)
        if run.model.audio_tagger is None:
            raise HTTPException(404, f"{run.model.path}: no audio tagger to find the chunks of a track with")
        path = _audio_file(run, id)
        try:
            return listening.chunks(path, run.labels)
        except Exception as error:
            raise HTTPException(422, f"{id!r}: no chunk probabilities ({error})") from None

    @app.get("/cover")
    def cover(id: str):
        known(id)
        path = run.sidecar(id, "cover")
        if path is None:
            raise HTTPException(404, f"{id!r} has no cover")
        return FileResponse(path)

    return app


def _audio_file(run: Run, track_id: str) -> Path:
    path = run.audio_path(track_id)
    if not path.is_file():
        raise HTTPException(404, f"{path}: the audio file of {track_id!r} is not there (paths are the records' own, "
                                 "relative ones from the folder the server runs in)")
    return path


def _tag(run: Run, tag: str) -> tuple[str, str]:
    group, _, label = tag.partition("/")
    spec = run.labels.groups.get(group)
    if spec is None or spec.type != MULTILABEL or label not in spec.labels:
        raise HTTPException(400, f"tag {tag!r} is not group/label of a tag group in the vocabulary")
    return group, label


def _tagged(run: Run, state: dict, group: str, label: str) -> np.ndarray:
    """Tracks carrying ``group/label`` with the reviewers' corrections applied to the machine's decisions."""
    j = run.labels.groups[group].labels.index(label)
    tagged = run.decided[group][:, j].copy()
    for (track, g, t), row in state.items():
        if g == group and t == label and track in run:
            if row.action == "add":
                tagged[run.index[track]] = True
            elif row.action == "remove":
                tagged[run.index[track]] = False
    return tagged


def current_tags(run: Run, state: dict, i: int, group: str) -> list[str]:
    """Track ``i``'s tags of ``group``: the machine's, with additions and removals applied."""
    track = run.ids[i]
    tags = []
    for j, label in enumerate(run.labels.groups[group].labels):
        row = state.get((track, group, label))
        on = bool(run.decided[group][i, j])
        if row is not None and row.action in ("add", "remove"):
            on = row.action == "add"
        if on:
            tags.append(label)
    return tags


def _summary(run: Run, i: int, state: dict, per_track: Counter, probability: np.ndarray | None) -> dict:
    record = run.records[i]
    track = run.ids[i]
    return {"id": track, "path": record["path"], "duration": record.get("duration"),
            "error": record.get("error"), "warnings": record.get("warnings") or [],
            "tags": {name: current_tags(run, state, i, name) for name in run.decided},
            "certainty": _number(run.certainty[i]), "priority": float(run.priority[i]),
            "probability": None if probability is None else _number(probability[i]),
            "corrections": per_track[track]}


def _number(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
