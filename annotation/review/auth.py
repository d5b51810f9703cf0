"""Sign-in for a review page shared by a team: reviewers listed in a file, sessions held by the server.

The reviewers file has one reviewer a line, ``NAME:scrypt$N$r$p$SALT$HASH`` (salt and hash in base64; blank
lines and lines starting with ``#`` are skipped). Secrets are hashed with the standard library's scrypt and a
salt per reviewer; ``coldtag review add-reviewer FILE NAME`` writes the line (`add_reviewer`).

A session is a random id (`secrets.token_urlsafe`) in an HttpOnly, SameSite=Lax cookie; the server keeps
which reviewer it belongs to and when it expires, in memory: a restarted server asks everyone to sign in
again. `RequireSignIn` is an ASGI middleware that refuses every request without a valid session except the
sign-in page and the static files (401 for the API and files, a redirect to the sign-in page for a page), so
a route added later is covered without a word about it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from coldtag.storage import atomic_write

COOKIE = "coldtag_review_session"
SIGN_IN_PATH = "/signin"
SCHEME = "scrypt"
# scrypt's cost: 32 MiB and about 0.15 s a hash on a laptop core; stored in each line, so it can grow later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_BYTES = 16
SESSION_HOURS = 12.0
# Paths that answer with JSON or a file: refused with 401 rather than sent to the sign-in page.
API_PREFIXES = ("/api/", "/audio", "/cover", "/picture")


class ReviewersError(ValueError):
    """A reviewers file that cannot be used, or a name or secret that cannot go in one."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def hash_secret(secret: str) -> str:
    """``scrypt$N$r$p$SALT$HASH`` of ``secret`` with a fresh random salt."""
    if not secret:
        raise ReviewersError("the secret is empty")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join([SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, entry: str) -> bool:
    """Whether ``secret`` hashes to ``entry`` (`hash_secret`'s form), compared in constant time."""
    scheme, n, r, p, salt, digest = entry.split("$")
    if scheme != SCHEME:
        raise ReviewersError(f"unknown hash scheme {scheme!r}; expected {SCHEME!r}")
    expected = base64.b64decode(digest)
    return hmac.compare_digest(_scrypt(secret, base64.b64decode(salt), int(n), int(r), int(p)), expected)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * n * r + 2**20, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_name(name: str) -> str:
    """``name`` stripped, or a `ReviewersError` saying why it cannot be a reviewer's name."""
    stripped = name.strip()
    if not stripped or len(stripped) > 100 or ":" in stripped or any(c in stripped for c in "\r\n"):
        raise ReviewersError(f"a reviewer's name must be 1 to 100 characters without ':' or a line break, "
                             f"got {name!r}")
    return stripped


def load_reviewers(path: str | Path) -> dict[str, str]:
    """Reviewer name -> hashed secret, from a reviewers file; a line that cannot be read is an error naming
    the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ReviewersError(f"{path}: cannot read the reviewers file ({error.strerror or error})") from None
    reviewers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, entry = line.partition(":")
        fields = entry.split("$")
        try:
            name = check_name(name)
            if len(fields) != 6 or fields[0] != SCHEME or not all(fields[1:]):
                raise ReviewersError(f"expected NAME:{SCHEME}$N$r$p$SALT$HASH (coldtag review add-reviewer "
                                     "writes it)")
            n, r, p = (int(field) for field in fields[1:4])
            if n < 2 or n & (n - 1) or r < 1 or p < 1:
                raise ReviewersError(f"scrypt's N must be a power of 2 above 1, r and p at least 1; got {n}, {r}, {p}")
            base64.b64decode(fields[4], validate=True), base64.b64decode(fields[5], validate=True)
        except (ReviewersError, ValueError) as error:
            raise ReviewersError(f"{path}:{number}: {error}") from None
        if name in reviewers:
            raise ReviewersError(f"{path}:{number}: {name!r} is listed twice")
        reviewers[name] = entry
    if not reviewers:
        raise ReviewersError(f"{path}: lists no reviewer (coldtag review add-reviewer {path} NAME adds one)")
    return reviewers


def add_reviewer(path: str | Path, name: str, secret: str) -> bool:
    """Write ``name`` with its hashed ``secret`` to the reviewers file at ``path`` (created if missing, readable
    by its owner only); replaces the name's line if it is there. Returns whether the name was new."""
    path = Path(path)
    name = check_name(name)
    line = f"{name}:{hash_secret(secret)}"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else [
        "# coldtag review reviewers: NAME:scrypt$N$r$p$SALT$HASH, written by coldtag review add-reviewer"]
    kept = [old for old in lines if old.partition(":")[0].strip() != name or old.lstrip().startswith("#")]
    atomic_write(path, "\n".join([*kept, line]) + "\n")  # atomic_path's temporary file is the owner's only
    return len(kept) == len(lines)


class SignIn:
    """The reviewers and their sessions. ``session_hours``: how long a session lasts from its sign-in;
    ``clock``: seconds, monotonic (a test's own clock moves sessions past their expiry)."""

    def __init__(self, reviewers: dict[str, str], session_hours: float = SESSION_HOURS,
                 clock: Callable[[], float] = time.monotonic):
        if session_hours <= 0:
            raise ValueError(f"session_hours must be > 0, got {session_hours}")
        self.reviewers = dict(reviewers)
        self.session_seconds = session_hours * 3600
        self.clock = clock
        self._sessions: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        # An unknown name is checked against a hash all the same, so that the time taken does not tell names apart.
        self._decoy = hash_secret(secrets.token_urlsafe())

    @classmethod
    def from_file(cls, path: str | Path, session_hours: float = SESSION_HOURS) -> SignIn:
        return cls(load_reviewers(path), session_hours)

    def sign_in(self, name: str, secret: str) -> str | None:
        """A new session id if ``secret`` is ``name``'s, else None."""
        entry = self.reviewers.get(name)
        right = verify_secret(secret, entry or self._decoy)
        if entry is None or not right:
            return None
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._sessions = {key: value for key, value in self._sessions.items() if value[1] > now}
            self._sessions[token] = (name, now + self.session_seconds)
        return token

    def reviewer(self, token: str | None) -> str | None:
        """The name signed in with session ``token``; None for a missing, unknown or expired one."""
        if not token:
            return None
        with self._lock:
            name, expires = self._sessions.get(token, (None, 0.0))
            if name is not None and expires <= self.clock():
                del self._sessions[token]
                return None
        return name

    def sign_out(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)


class RequireSignIn:
    """ASGI middleware: a request passes with a valid session cookie (its reviewer's name in
    ``request.state.reviewer``), or to the sign-in page and static files; any other is refused, with 401 and a
    JSON error for the API and files, a redirect to the sign-in page for a page."""

    def __init__(self, app, sign_in: SignIn):
        self.app = app
        self.sign_in = sign_in

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        connection = HTTPConnection(scope)
        path = scope["path"]
        name = self.sign_in.reviewer(connection.cookies.get(COOKIE))
        if name is not None:
            scope.setdefault("state", {})["reviewer"] = name
            return await self.app(scope, receive, send)
        if path == SIGN_IN_PATH or path.startswith("/static/"):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        if scope["method"] == "GET" and not path.startswith(API_PREFIXES) \
                and "text/html" in connection.headers.get("accept", ""):
            target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else "")
            response = RedirectResponse(f"{SIGN_IN_PATH}?next={quote(target, safe='')}", status_code=303)
        else:
            response = JSONResponse({"error": f"sign in first: no session, or it expired (POST {SIGN_IN_PATH} "
                                              "with name and secret)"}, status_code=401)
        await response(scope, receive, send)


def safe_next(target: str) -> str:
    """Where to go after signing in: a path of this server, never another site (``//host`` or ``https:``)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def sign_in_routes(sign_in: SignIn, page: str) -> APIRouter:
    """``GET /signin`` (the form, ``page`` with ``{{message}}`` and ``{{next}}`` filled in), ``POST /signin``
    (name, secret and next, form-encoded: a session cookie and a redirect to next; 401 and the form again for a
    wrong name or secret) and ``POST /signout``."""
    router = APIRouter()

    def form(message: str = "", target: str = "/", status: int = 200) -> HTMLResponse:
        text = page.replace("{{message}}", html.escape(message)).replace("{{next}}", html.escape(safe_next(target)))
        return HTMLResponse(text, status_code=status)

    @router.get(SIGN_IN_PATH, response_class=HTMLResponse)
    def sign_in_page(next: str = "/"):
        return form(target=next)

    @router.post(SIGN_IN_PATH)
    async def sign_in_post(request: Request):
        # Parsed here rather than with FastAPI's Form, which needs python-multipart for plain form posts too.
        fields = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        name, secret, target = (fields.get(key, [""])[0] for key in ("name", "secret", "next"))
        if not name.strip() or not secret:
            return form("Give your name and your secret.", target, 400)
        token = sign_in.sign_in(name.strip(), secret)
        if token is None:
            return form("Wrong name or secret.", target, 401)
        response = RedirectResponse(safe_next(target), status_code=303)
        response.set_cookie(COOKIE, token, max_age=int(sign_in.session_seconds), httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
        return response

    @router.post("/signout")
    def sign_out(request: Request):
        sign_in.sign_out(request.cookies.get(COOKIE))
        response: Response = RedirectResponse(SIGN_IN_PATH, status_code=303)
        response.delete_cookie(COOKIE, httponly=True, samesite="lax")
        return response

    return router
