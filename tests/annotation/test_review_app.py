"""The review app's API and pages: the list filtered, searched, sorted and paged with known answers; the
review-next queue; corrections stored or refused with their reason; audio served with range requests;
the command's one-line refusals of a run it cannot use."""

import io

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from annotation.cli import cli_main as annotate
from annotation.review.app import create_app
from annotation.review.cli import cli_main
from annotation.review.run import Run, load_model_info
from annotation.review.store import Store
from tests.helpers.review_runs import FAILED, TRACKS, make_package, review_run, serving, write_tone


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "tagger"
    make_package(directory)
    return directory


@pytest.fixture(scope="module")
def run(package, tmp_path_factory):
    return review_run(tmp_path_factory.mktemp("review-run"), package)


@pytest.fixture
def client(run, tmp_path):
    store = Store(tmp_path / "review.sqlite", run.ids, run.labels)
    with TestClient(create_app(run, store, who="ana")) as client:
        client.store = store
        yield client


def _ids(client, **query) -> list[str]:
    response = client.get("/api/tracks", params={"per_page": 200, **query})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_the_list_is_searched_filtered_sorted_and_paged_on_the_server(client):
    assert len(_ids(client)) == len(TRACKS) + 1
    assert _ids(client, q="JAZZ") == [f"jazz{i}.wav" for i in range(5)]
    assert _ids(client, errors="only") == [FAILED, "quiet.wav"]  # an error record, and a silent track
    assert FAILED not in _ids(client, errors="hide")
    assert sorted(_ids(client, tag="genre/rock")) == sorted([f"rock{i}.wav" for i in range(5)] + ["odd.wav",
                                                                                               "unsure.wav"])
    assert _ids(client, tag="genre/rock", p_min=0.5, p_max=0.6) == ["unsure.wav"]
    assert _ids(client, p_min=0.5, p_max=0.6) == ["unsure.wav"]  # any tag's probability
    assert _ids(client, sort="certainty")[0] == "unsure.wav"
    assert _ids(client, sort="certainty")[-1] == FAILED  # no numbers: last
    page = client.get("/api/tracks", params={"per_page": 5, "page": 3}).json()
    assert page["total"] == 14
    assert [item["id"] for item in page["items"]] == ["rock2.wav", "rock3.wav", "rock4.wav", "unsure.wav"]
    odd = client.get("/api/tracks", params={"q": "odd"}).json()["items"][0]
    assert odd["tags"] == {"genre": ["rock"], "mood": ["calm"]}
    assert odd["certainty"] == pytest.approx(0.4)
    bad = client.get("/api/tracks", params={"tag": "genre/polka"})
    assert bad.status_code == 400 and "genre/polka" in bad.json()["error"]
    assert client.get("/api/tracks", params={"sort": "loudness"}).status_code == 400
    assert client.get("/api/tracks", params={"per_page": 10_000}).status_code == 422


def test_review_next_puts_the_least_certain_and_the_disagreeing_first(client, run):
    queue = client.get("/api/queue", params={"limit": 3}).json()
    assert [item["id"] for item in queue["items"]] == ["unsure.wav", "odd.wav", "jazz0.wav"]
    assert queue["items"][0]["reason"].startswith("genre/rock: p = 0.52, threshold 0.50")
    # rock with calm: once, where 7 rock and 6 calm tracks of 13 would meet 3.2 times by chance.
    assert "genre/rock with mood/calm: 0.31x as often as chance" in queue["items"][1]["reason"]
    assert queue["items"][1]["priority"] == pytest.approx(1 - 13 / 42)
    assert queue["remaining"] == 13
    response = client.post("/api/corrections", json={"track_id": "unsure.wav", "group": "genre", "tag": "rock",
                                                      "action": "remove", "who": "ana"})
    assert response.status_code == 201
    queue = client.get("/api/queue", params={"limit": 1, "after": "odd.wav"}).json()
    assert [item["id"] for item in queue["items"]] == ["jazz0.wav"] and queue["remaining"] == 12


def test_a_correction_is_stored_shown_and_counted_and_undo_takes_it_back(client):
    body = {"track_id": "odd.wav", "group": "genre", "tag": "rock", "action": "remove", "who": "ana"}
    stored = client.post("/api/corrections", json=body).json()
    assert (stored["who"], stored["machine"]) == ("ana", pytest.approx(0.9))
    assert "odd.wav" not in _ids(client, tag="genre/rock")
    assert _ids(client, reviewed="yes") == ["odd.wav"]
    client.post("/api/corrections", json={**body, "tag": "folk", "action": "add"})
    client.post("/api/corrections", json={**body, "group": "graded", "tag": "tempo", "action": "set",
                                          "value": "96.5"})
    track = client.get("/api/track", params={"id": "odd.wav"}).json()
    genre = {item["label"]: item for item in track["groups"][0]["labels"]}
    assert genre["rock"]["decided"] and genre["rock"]["correction"]["action"] == "remove"
    assert genre["folk"]["correction"]["action"] == "add" and genre["folk"]["probability"] == pytest.approx(0.1)
    assert track["groups"][2]["labels"][0]["correction"]["value"] == 96.5
    assert client.get("/api/tracks", params={"q": "odd"}).json()["items"][0]["tags"]["genre"] == ["folk"]
    counts = client.get("/api/stats").json()["counts"]
    assert counts["genre"]["rock"] == {"confirm": 0, "add": 0, "remove": 1}
    assert counts["graded"]["tempo"] == {"confirm": 0, "set": 1}
    undone = client.post("/api/undo", json={"who": "ana", "track_id": "odd.wav"}).json()
    assert (undone["tag"], undone["undoes"]) == ("tempo", 3)
    assert client.get("/api/stats").json()["counts"]["graded"]["tempo"]["set"] == 0
    assert client.post("/api/undo", json={"who": "ben"}).status_code == 404


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"track_id": "nope.wav"}, 404, "unknown track id 'nope.wav'"),
    ({"tag": "polka"}, 400, "tag 'polka' is not in the vocabulary's 'genre' group"),
    ({"group": "graded", "tag": "tempo", "action": "set", "value": 500}, 400,
     "graded value 500.0 for graded/tempo is outside its range [40, 220]"),
    ({"group": "graded", "tag": "tempo", "action": "set", "value": "fast"}, 400, "'fast' for graded/tempo is not a"),
    ({"who": ""}, 400, "reviewer's name"),
])
def test_a_bad_correction_gets_its_reason_and_nothing_is_stored(client, change, status, message):
    body = {"track_id": "odd.wav", "group": "genre", "tag": "rock", "action": "add", "who": "ana", **change}
    response = client.post("/api/corrections", json=body)
    assert response.status_code == status and message in response.json()["error"]
    assert client.store.count() == 0


def test_track_pages_audio_with_ranges_and_sidecars(client, run):
    page = client.get("/track", params={"id": "rock0.wav"})
    assert page.status_code == 200 and '<audio id="player"' in page.text
    missing = client.get("/track", params={"id": "nope.wav"})
    assert missing.status_code == 404 and "unknown track id &#x27;nope.wav&#x27;" in missing.text
    assert client.get("/api/track", params={"id": "nope.wav"}).json()["error"].startswith("unknown track id")
    whole = client.get("/audio", params={"id": "rock0.wav"})
    assert whole.status_code == 200 and whole.content == run.audio_path("rock0.wav").read_bytes()
    part = client.get("/audio", params={"id": "rock0.wav"}, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    track = client.get("/api/track", params={"id": "rock0.wav"}).json()
    assert track["lyrics"] == "la la la\n" and track["cover"] and track["audio"]
    assert client.get("/cover", params={"id": "rock0.wav"}).content[:4] == b"\x89PNG"
    assert client.get("/cover", params={"id": "jazz0.wav"}).status_code == 404
    broken = client.get("/audio", params={"id": FAILED})
    assert broken.status_code == 404 and "is not there" in broken.json()["error"]


def test_precision_against_threshold_from_the_corrections(client):
    for track, action in (("rock0.wav", "confirm"), ("unsure.wav", "remove"), ("rock1.wav", "confirm"),
                          ("jazz0.wav", "add")):
        assert client.post("/api/corrections", json={"track_id": track, "group": "genre", "tag": "rock",
                                                     "action": action, "who": "ana"}).status_code == 201
    points = client.get("/api/stats").json()["precision"]["genre"]["rock"]
    # p 0.9 twice (both right), 0.52 (wrong), 0.1 (added: right).
    assert [(p["threshold"], p["precision"], p["n"]) for p in points] == [
        (0.9, 1.0, 2), (0.52, pytest.approx(2 / 3), 3), (0.1, 0.75, 4)]


def test_the_command_refuses_a_run_it_cannot_use_in_one_line(package, tmp_path, capsys):
    assert cli_main([str(tmp_path / "nothing"), "--model", str(package)]) == 2
    assert capsys.readouterr().err.strip() == f"coldtag review: error: {tmp_path / 'nothing'}: no such run folder " \
                                              "(the --out of a coldtag annotate run)"
    (tmp_path / "empty").mkdir()
    assert cli_main([str(tmp_path / "empty"), "--model", str(package)]) == 2
    assert "no committed records" in capsys.readouterr().err
    (tmp_path / "corrupt" / "parts").mkdir(parents=True)
    (tmp_path / "corrupt" / "parts" / "part-000000-000-000000.parquet").write_bytes(b"PAR1 not really")
    assert cli_main([str(tmp_path / "corrupt"), "--model", str(package)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "corrupt: its records cannot be read" in error[0]
    assert cli_main(["export", str(tmp_path / "corrupt"), "--model", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "not a usable tagger package" in capsys.readouterr().err


def test_records_of_another_model_are_refused(package, run, tmp_path, capsys):
    from tagging.models.tagger import AudioTagger

    vocab = {"groups": {"genre": {"type": "multilabel", "labels": ["a", "b", "c"]}}}
    AudioTagger.from_pretrained(package, vocab=vocab).save_pretrained(tmp_path / "other")
    assert cli_main([str(run.out), "--model", str(tmp_path / "other")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"coldtag review: error: {run.out}: the records' 'genre' labels ['rock', 'jazz', 'folk'] are not "
                     f"the model's ['a', 'b', 'c']; were they made by another model than {tmp_path / 'other'}?")


def test_a_real_annotate_run_is_reviewed(package, tmp_path):
    for k in range(3):
        write_tone(tmp_path / "uploads" / f"tone{k}.wav", pitch=300 + 100 * k)
    (tmp_path / "uploads" / "broken.mp3").write_text("not audio")
    assert annotate([str(tmp_path / "uploads"), "--model", str(package), "--out", str(tmp_path / "out"),
                     "--workers", "0", "--no-progress"]) == 0
    run = Run(tmp_path / "out", package)
    with TestClient(create_app(run)) as client:
        items = client.get("/api/tracks", params={"sort": "certainty"}).json()["items"]
        assert sorted(item["id"] for item in items) == ["broken.mp3", "tone0.wav", "tone1.wav", "tone2.wav"]
        assert items[-1]["id"] == "broken.mp3" and items[-1]["error"]["type"] == "AudioDecodeError"
        assert [item["certainty"] for item in items[:3]] == sorted(item["certainty"] for item in items[:3])
        queue = client.get("/api/queue").json()
        assert sorted(item["id"] for item in queue["items"]) == ["tone0.wav", "tone1.wav", "tone2.wav"]
        track = client.get("/api/track", params={"id": "tone1.wav"}).json()
        genre = track["groups"][0]["labels"]
        assert [item["label"] for item in genre] == ["rock", "jazz", "folk"]
        assert [item["decided"] for item in genre] == [item["probability"] >= 0.5 for item in genre]
        assert client.get("/audio", params={"id": "tone1.wav"}).content[:4] == b"RIFF"
        # The chunks the page loops are the tagger's grid, whose mean the record holds: 2 s in 1 s chunks.
        chunks = client.get("/api/chunks", params={"id": "tone1.wav"}).json()
        assert chunks["seconds"] == 1.0 and chunks["starts"] == [0.0, 1.0] and set(chunks["groups"]) == {"genre",
                                                                                                         "mood"}
        for item in genre:
            assert np.mean(chunks["groups"]["genre"][item["label"]]) == pytest.approx(item["probability"], abs=1e-5)
        picture = Image.open(io.BytesIO(client.get("/picture", params={"id": "tone1.wav"}).content))
        assert picture.size == (1000, 208)
        broken = client.get("/picture", params={"id": "broken.mp3"})  # there, but not audio
        assert broken.status_code == 422 and broken.json()["error"].startswith("'broken.mp3': no picture (")
        assert client.post("/api/corrections", json={"track_id": "tone1.wav", "group": "graded", "tag": "tempo",
                                                      "action": "set", "value": 100, "who": "ana"}).status_code == 201
    assert Store(tmp_path / "out" / "review.sqlite", run.ids, run.labels).count() == 1


def test_verify_a_sample_gives_the_precision_of_random_tracks_with_its_interval(client):
    first = client.get("/api/verify", params={"tag": "genre/rock", "n": 3}).json()
    sampled = [track["id"] for track in first["tracks"]]
    assert first["given"] == 7 and len(sampled) == 3 and first["judged"] == 0 and first["interval"] == [0, 1]
    assert set(sampled) <= {*(f"rock{i}.wav" for i in range(5)), "odd.wav", "unsure.wav"}
    for track, action in zip(sampled, ("confirm", "confirm", "remove"), strict=True):
        client.post("/api/corrections", json={"track_id": track, "group": "genre", "tag": "rock", "action": action,
                                              "who": "ana"})
    again = client.get("/api/verify", params={"tag": "genre/rock", "n": 10}).json()
    assert [track["id"] for track in again["tracks"]][:3] == sampled and len(again["tracks"]) == 7
    assert [track["right"] for track in again["tracks"]] == [True, True, False, None, None, None, None]
    assert (again["judged"], again["right"]) == (3, 2) and again["precision"] == pytest.approx(2 / 3)
    assert again["interval"] == pytest.approx([0.2077, 0.9385], abs=1e-4)  # Wilson, 95 %, 2 of 3
    assert client.get("/api/verify", params={"tag": "graded/tempo"}).status_code == 400


def test_the_command_serves_the_run_on_the_port_it_is_given(run, package, monkeypatch, capsys):
    with serving(cli_main, [str(run.out), "--model", str(package), "--who", "ben"], monkeypatch) as served:
        page = served.first
        assert page is not None and page.status_code == 200
        assert 'value="ben"' in page.text and str(run.out) in page.text
        assert httpx.get(f"{served.url}/api/tracks").json()["total"] == 14
    assert served.codes == [0]
    assert f"14 records of {run.out} at {served.url}/" in capsys.readouterr().err


def test_a_pipeline_package_is_read_through_its_tagging_model(package, run, tmp_path):
    from coldtag.storage import save_package
    from tagging.models.tagger import AudioTagger

    tagger = AudioTagger.from_pretrained(package)
    save_package(tmp_path / "pipeline", lambda folder: tagger.save_pretrained(folder / "tagger"), "ColdStartPipeline")
    info = load_model_info(tmp_path / "pipeline")
    assert (info.kind, info.audio_tagger, info.labels) == ("ColdStartPipeline", tmp_path / "pipeline" / "tagger",
                                                           run.labels)
    with TestClient(create_app(Run(run.out, info), Store(tmp_path / "review.sqlite", run.ids, run.labels))) as client:
        chunks = client.get("/api/chunks", params={"id": "rock0.wav"}).json()
        assert chunks["starts"] == [0.0, 1.0] and set(chunks["groups"]) == {"genre", "mood"}


def test_a_multimodal_taggers_run_is_reviewed_and_its_corrections_exported(package, tmp_path, capsys):
    """The records of a multimodal tagger (audio and lyrics, its audio tagger bundled): the page reads its
    vocabulary, shows the lyrics it used and loops the bundled tagger's chunks; a correction is exported."""
    import json

    import pandas as pd
    import torch

    from coldtag.storage import reference
    from tagging.data.features import encoder_sources
    from tagging.models.multimodal import MultimodalTagger
    from tagging.models.tagger import AudioTagger
    from tagging.models.text import LyricsEncoder

    torch.manual_seed(0)
    tagger, lyrics = AudioTagger.from_pretrained(package), LyricsEncoder().eval()
    multimodal = MultimodalTagger(tagger.labels.to_dict(), {"audio": tagger.embedding_dim, "lyrics": lyrics.dim},
                                  hidden=8).eval()
    sources = encoder_sources(tagger, lyrics, None, 224) | {"audio": reference(package, bundle=True)}
    multimodal.save_pretrained(tmp_path / "multimodal", inputs=sources)
    for k in range(2):
        write_tone(tmp_path / "uploads" / f"tone{k}.wav", pitch=300 + 100 * k)
    (tmp_path / "uploads" / "tone0.txt").write_text("a song about the sea\n")
    assert annotate([str(tmp_path / "uploads"), "--model", str(tmp_path / "multimodal"), "--out",
                     str(tmp_path / "out"), "--workers", "0", "--no-progress"]) == 0
    run = Run(tmp_path / "out", tmp_path / "multimodal")
    assert run.model.kind == "MultimodalTagger" and run.labels == tagger.labels
    with TestClient(create_app(run)) as client:
        track = client.get("/api/track", params={"id": "tone0.wav"}).json()
        assert "a song about the sea" in track["lyrics"]
        assert [group["name"] for group in track["groups"]] == list(tagger.labels.groups)
        chunks = client.get("/api/chunks", params={"id": "tone1.wav"}).json()
        assert chunks["starts"] == [0.0, 1.0]  # the bundled audio tagger's grid
        assert client.post("/api/corrections", json={"track_id": "tone1.wav", "group": "genre", "tag": "jazz",
                                                      "action": "add", "who": "ana"}).status_code == 201
    assert cli_main(["export", str(run.out), "--model", str(tmp_path / "multimodal"), "--out",
                     str(tmp_path / "export")]) == 0
    manifest = pd.read_parquet(tmp_path / "export" / "manifest.parquet").set_index("track_id")
    assert list(manifest.index) == ["tone1.wav"] and "jazz" in list(manifest.loc["tone1.wav", "genre"])
    assert json.loads((tmp_path / "export" / "vocab.json").read_text()) == tagger.labels.to_dict()
