"""Sign-in for a shared review page: reviewers in a file with hashed secrets, a session cookie, every route refused
without it, corrections recorded under the signed-in name whatever the request says, and a server that will
not listen beyond this machine without a reviewers file."""

import io
import stat

import httpx
import pytest
from fastapi.testclient import TestClient

from annotation.review.app import create_app
from annotation.review.auth import COOKIE, SignIn, is_loopback, load_reviewers, verify_secret
from annotation.review.cli import cli_main
from annotation.review.store import Store
from tests.helpers.review_runs import make_package, review_run, serving

SECRETS = {"ana": "correct horse battery", "ben": "staple"}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "tagger"
    make_package(directory)
    return directory


@pytest.fixture(scope="module")
def run(package, tmp_path_factory):
    return review_run(tmp_path_factory.mktemp("review-auth"), package)


@pytest.fixture(scope="module")
def reviewers(tmp_path_factory, monkeypatch_module):
    """A reviewers file written by ``coldtag review add-reviewer``, the secrets read from stdin."""
    path = tmp_path_factory.mktemp("reviewers") / "reviewers.txt"
    for name, secret in SECRETS.items():
        monkeypatch_module.setattr("sys.stdin", io.StringIO(secret + "\n"))
        assert cli_main(["add-reviewer", str(path), name]) == 0
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


class Clock:
    """Seconds that a test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def app(run, reviewers, tmp_path):
    clock = Clock()
    sign_in = SignIn(load_reviewers(reviewers), session_hours=1, clock=clock)
    app = create_app(run, Store(tmp_path / "review.sqlite", run.ids, run.labels), who="nobody", sign_in=sign_in)
    app.state.clock = clock
    return app


def _signed_in(app, name: str) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    response = client.post("/signin", data={"name": name, "secret": SECRETS[name], "next": "/"})
    assert response.status_code == 303, response.text
    return client


def test_add_reviewer_stores_a_salted_hash_readable_by_its_owner_only(reviewers, monkeypatch):
    text = reviewers.read_text()
    assert not any(secret in text for secret in SECRETS.values())
    assert stat.S_IMODE(reviewers.stat().st_mode) == 0o600
    entries = load_reviewers(reviewers)
    assert list(entries) == ["ana", "ben"]
    assert verify_secret(SECRETS["ana"], entries["ana"]) and not verify_secret(SECRETS["ben"], entries["ana"])
    salts = {entry.split("$")[4] for entry in entries.values()}
    assert len(salts) == 2
    # A new secret for a listed name replaces its line.
    copy = reviewers.with_name("copy.txt")
    copy.write_text(text)
    monkeypatch.setattr("sys.stdin", io.StringIO("new secret\n"))
    assert cli_main(["add-reviewer", str(copy), "ben"]) == 0
    again = load_reviewers(copy)
    assert list(again) == ["ana", "ben"] and verify_secret("new secret", again["ben"])


def test_a_wrong_secret_or_name_is_refused_and_the_right_one_gets_a_session_cookie(app):
    client = TestClient(app, follow_redirects=False)
    form = client.get("/signin", params={"next": "/track?id=odd.wav"})
    assert form.status_code == 200 and 'name="secret" type="password"' in form.text
    assert 'value="/track?id=odd.wav"' in form.text
    for name, secret in (("ana", SECRETS["ben"]), ("zoe", SECRETS["ana"]), ("ana", "")):
        refused = client.post("/signin", data={"name": name, "secret": secret})
        assert refused.status_code in (400, 401) and "set-cookie" not in refused.headers
        assert client.get("/api/tracks").status_code == 401
    assert "Wrong name or secret." in client.post("/signin", data={"name": "zoe", "secret": "x"}).text
    response = client.post("/signin", data={"name": "ana", "secret": SECRETS["ana"], "next": "/track?id=odd.wav"})
    assert response.status_code == 303 and response.headers["location"] == "/track?id=odd.wav"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "Max-Age=3600" in cookie and "Secure" not in cookie  # served over http here
    assert client.get("/api/me").json() == {"reviewer": "ana", "sign_in": True}
    assert client.get("/api/tracks").json()["total"] == 14
    # Only a path of this server is a place to go after signing in.
    elsewhere = client.post("/signin", data={"name": "ana", "secret": SECRETS["ana"], "next": "//evil.example/"})
    assert elsewhere.headers["location"] == "/"


def test_without_a_session_every_route_is_refused_even_one_added_later(app):
    @app.get("/api/later")
    def later():
        return {"secret": "data"}

    client = TestClient(app, follow_redirects=False)
    for path in ("/api/tracks", "/api/track?id=odd.wav", "/api/stats", "/api/me", "/api/later", "/audio?id=rock0.wav",
                 "/cover?id=rock0.wav", "/picture?id=rock0.wav", "/api/chunks?id=rock0.wav"):
        response = client.get(path, headers={"accept": "text/html"})
        assert response.status_code == 401 and "sign in first" in response.json()["error"], path
    body = {"track_id": "odd.wav", "group": "genre", "tag": "rock", "action": "remove", "who": "ana"}
    assert client.post("/api/corrections", json=body).status_code == 401
    assert client.post("/api/undo", json={"who": "ana"}).status_code == 401
    assert app.state.store.count() == 0
    page = client.get("/track", params={"id": "odd.wav"}, headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=%2Ftrack%3Fid%3Dodd.wav"
    assert client.get("/", headers={"accept": "text/html"}).headers["location"] == "/signin?next=%2F"
    assert client.get("/static/review.css").status_code == 200  # the sign-in page's own style


def test_a_forged_who_is_recorded_as_the_signed_in_name(app):
    ana, ben = _signed_in(app, "ana"), _signed_in(app, "ben")
    body = {"track_id": "odd.wav", "group": "genre", "tag": "rock", "action": "remove", "who": "ben"}
    stored = ana.post("/api/corrections", json=body)
    assert stored.status_code == 201 and stored.json()["who"] == "ana"
    assert ana.post("/api/corrections", json={**body, "tag": "folk", "action": "add", "who": ""}).status_code == 201
    assert [row.who for row in app.state.store.history()] == ["ana", "ana"]
    # Ben cannot take back Ana's correction by naming her; Ana's own undo names her whatever the body says.
    assert ben.post("/api/undo", json={"who": "ana", "track_id": "odd.wav"}).status_code == 404
    undone = ana.post("/api/undo", json={"who": "ben", "track_id": "odd.wav"})
    assert undone.status_code == 200 and (undone.json()["who"], undone.json()["tag"]) == ("ana", "folk")
    assert [(row.who, row.action) for row in app.state.store.history()] == [("ana", "remove"), ("ana", "add"),
                                                                            ("ana", "undo")]


def test_an_expired_unknown_or_signed_out_session_is_refused(app):
    client = _signed_in(app, "ana")
    app.state.clock.now += 3599
    assert client.get("/api/tracks").status_code == 200
    app.state.clock.now += 2
    assert client.get("/api/tracks").status_code == 401
    stranger = TestClient(app, follow_redirects=False, cookies={COOKIE: "not-a-session"})
    assert stranger.get("/api/tracks").status_code == 401
    client = _signed_in(app, "ana")
    token = client.cookies[COOKIE]
    signed_out = client.post("/signout")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/signin"
    replayed = TestClient(app, cookies={COOKIE: token})
    assert replayed.get("/api/tracks").status_code == 401


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("192.168.1.20", False), ("review.lan", False)])
def test_only_this_machines_addresses_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_the_command_will_not_serve_beyond_this_machine_without_reviewers(run, package, tmp_path, capsys):
    assert cli_main([str(run.out), "--model", str(package), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0" in err and "give --reviewers FILE" in err
    bad = tmp_path / "reviewers.txt"
    bad.write_text("ana:plain-text-secret\n")
    assert cli_main([str(run.out), "--model", str(package), "--host", "0.0.0.0", "--reviewers", str(bad)]) == 2
    assert f"{bad}:1: expected NAME:scrypt$N$r$p$SALT$HASH" in capsys.readouterr().err
    bad.write_text("# a comment\n\nana:scrypt$1000$8$1$AAAA$AAAA\n")
    assert cli_main([str(run.out), "--model", str(package), "--reviewers", str(bad)]) == 2
    assert f"{bad}:3: scrypt's N must be a power of 2" in capsys.readouterr().err


def test_the_command_with_reviewers_serves_signed_in_reviewers_only(run, package, reviewers, monkeypatch, capsys):
    argv = [str(run.out), "--model", str(package), "--reviewers", str(reviewers)]
    with serving(cli_main, argv, monkeypatch, probe="/api/tracks") as served:
        response = served.first
        assert response is not None and response.status_code == 401
        with httpx.Client(base_url=served.url, timeout=10) as client:
            assert client.post("/signin", data={"name": "ben", "secret": "wrong"}).status_code == 401
            signed_in = client.post("/signin", data={"name": "ben", "secret": SECRETS["ben"]})
            assert signed_in.status_code == 303 and "HttpOnly" in signed_in.headers["set-cookie"]
            assert client.get("/api/tracks").json()["total"] == 14
            assert client.post("/api/corrections", json={"track_id": "jazz0.wav", "group": "genre", "tag": "jazz",
                                                          "action": "confirm", "who": "ana"}).json()["who"] == "ben"
    assert served.codes == [0]
    assert "2 reviewer(s) may sign in" in capsys.readouterr().err
