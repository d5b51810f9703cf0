"""Search and theme playlists over annotate records written with the project's own record writer, whose
probabilities, graded values and tempos are chosen, so every reading and ordering has a known answer."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from annotation.annotators import group_fields
from annotation.cli import main
from annotation.records import AnnotationRecord, Records, record_schema
from annotation.search.cli import playlist_main, search_main
from annotation.search.playlist import ThemeError, load_themes
from annotation.search.query import (
    TEMPO_TOLERANCE,
    THRESHOLD,
    NoMatch,
    Tag,
    TextMatcher,
    Vocabulary,
    WordList,
    WordListError,
    parse_query,
)
from annotation.search.rank import SearchIndex, for_listener
from tagging.labels import LabelSpace
from tagging.tempo_key import Tempo

VOCAB = {"groups": {"genre": {"type": "multilabel", "labels": ["rock", "jazz"]},
                    "instrument": {"type": "multilabel", "labels": ["vocals", "drums", "acoustic_guitar"]},
                    "graded": {"type": "regression", "labels": ["energy"], "ranges": [[0, 1]]}}}
# id -> (artist folder, rock, jazz, vocals, drums, acoustic guitar, energy, bpm)
TRACKS = {
    "slow_jazz": ("ann", 0.1, 0.9, 0.1, 0.2, 0.8, 0.2, 70.0),
    "slow_sung_jazz": ("ann", 0.1, 0.9, 0.9, 0.2, 0.8, 0.3, 71.0),
    "fast_rock": ("bob", 0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 140.0),
    "fast_rock_2": ("bob", 0.8, 0.1, 0.8, 0.9, 0.1, 0.8, 150.0),
    "fast_rock_3": ("bob", 0.85, 0.1, 0.2, 0.9, 0.1, 0.85, 145.0),
    "mid_rock": ("cid", 0.7, 0.2, 0.6, 0.7, 0.3, 0.5, 120.0),
}


def write_annotations(out: Path) -> Path:
    """Records of `TRACKS` and one failed file, committed as `coldtag annotate` commits them."""
    labels = LabelSpace.from_dict(VOCAB)
    records = Records(out, record_schema(group_fields(SimpleNamespace(labels=labels))))
    for track, (artist, rock, jazz, vocals, drums, guitar, energy, bpm) in TRACKS.items():
        genre, instrument = {"rock": rock, "jazz": jazz}, {"vocals": vocals, "drums": drums, "acoustic_guitar": guitar}
        records.add(AnnotationRecord(
            id=track, path=f"music/{artist}/album/{track}.wav", duration=10.0,
            model_columns={"genre": {"probabilities": genre, "tags": [k for k, p in genre.items() if p >= 0.5]},
                           "instrument": {"probabilities": instrument,
                                          "tags": [k for k, p in instrument.items() if p >= 0.5]},
                           "graded": {"energy": energy}},
            tempo=Tempo(bpm, 0.9), model_kind="AudioTagger", model_sha256="0" * 64))
    records.add(AnnotationRecord(id="broken", path="music/broken.wav",
                                 error={"type": "AudioDecodeError", "message": "not audio"}))
    records.commit()
    return out


@pytest.fixture(scope="module")
def annotations(tmp_path_factory) -> Path:
    return write_annotations(tmp_path_factory.mktemp("search") / "annotations")


@pytest.fixture(scope="module")
def index(annotations) -> SearchIndex:
    return SearchIndex.from_annotations(annotations)


def test_the_vocabulary_is_the_one_of_the_records(index):
    assert [t.name for t in index.vocabulary.tags] == ["genre/rock", "genre/jazz", "instrument/vocals",
                                                       "instrument/drums", "instrument/acoustic_guitar",
                                                       "graded/energy"]
    assert "broken" not in index.ids and len(index) == len(TRACKS)  # a failed record is not searched


def test_around_70_bpm_is_a_tempo_range_that_puts_a_70_bpm_track_above_a_140_bpm_one(index):
    query = index.parse("around 70 bpm")
    (rule,) = query.tempo
    assert (rule.low, rule.high) == pytest.approx((70 * (1 - TEMPO_TOLERANCE), 70 * (1 + TEMPO_TOLERANCE)))
    hits = index.search(query, n=len(TRACKS))
    order = [hit.id for hit in hits]
    assert order.index("slow_jazz") < order.index("fast_rock")
    assert set(order[:2]) == {"slow_jazz", "slow_sung_jazz"}
    reason = hits[0].reasons[0]
    assert reason.what.startswith("tempo ") and reason.counted == pytest.approx(1.0)
    assert index.parse("faster than 120 bpm").tempo[0].low == 120 and index.parse("under 90 bpm").tempo[0].high == 90
    assert (lambda r: (r.low, r.high))(index.parse("between 100 and 130 bpm").tempo[0]) == (100, 130)


def test_no_vocals_makes_vocals_unwanted_and_demotes_the_sung_track(index):
    (term,) = index.parse("jazz, no vocals").terms[1:]
    assert term.tag.name == "instrument/vocals" and not term.wanted
    order = [hit.id for hit in index.search("jazz, no vocals", n=len(TRACKS))]
    assert order[0] == "slow_jazz" and order.index("slow_sung_jazz") > order.index("slow_jazz")
    # Without the negation the sung track comes first.
    assert index.search("jazz with vocals", n=1)[0].id == "slow_sung_jazz"
    hit = index.search("jazz, no vocals", n=1)[0]
    assert {r.what: r.counted for r in hit.reasons} == pytest.approx({"genre/jazz": 0.9, "not instrument/vocals": -0.1})


def test_high_energy_is_a_graded_value_ranked_within_the_records(index):
    (term,) = index.parse("high energy").terms
    assert term.tag.name == "graded/energy" and term.direction == "high"
    assert index.search("high energy", n=1)[0].id == "fast_rock"
    assert index.search("low energy", n=1)[0].id == "slow_jazz"


def test_a_query_naming_nothing_in_the_vocabulary_is_refused(index):
    with pytest.raises(NoMatch, match=rf"'zxqv flarb' names nothing in the vocabulary.*similarity {THRESHOLD:g}"):
        index.search("zxqv flarb")
    with pytest.raises(ValueError, match="query: empty"):
        index.parse("   ")


def test_coldtag_search_prints_hits_with_reasons_and_fails_on_an_unmatched_query(annotations, capsys):
    assert search_main(["acoustic guitar without drums", str(annotations), "-n", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [hit["id"] for hit in printed["hits"]] == ["slow_jazz", "slow_sung_jazz"]
    assert "not instrument/drums" in printed["read_as"]
    assert printed["hits"][0]["why"] == "instrument/acoustic_guitar = 0.8: +0.80; not instrument/drums = 0.2: -0.20"
    with pytest.raises(SystemExit) as exit_:
        main(["search", "zxqv flarb", str(annotations)])
    assert exit_.value.code == 1 and "names nothing" in capsys.readouterr().err
    assert search_main(["rock", str(annotations), "-n", "0"]) == 2
    assert "-n must be >= 1, got 0" in capsys.readouterr().err


def test_coldtag_playlist_writes_m3u_and_json_and_keeps_the_artist_cap(annotations, tmp_path, capsys):
    themes = tmp_path / "themes.yaml"
    themes.write_text("themes:\n  - name: Loud rock\n    query: rock with drums\n    length: 3\n    per_artist: 1\n"
                      "  - name: slow\n    query: around 70 bpm\n    length: 2\n")
    out = tmp_path / "playlists"
    assert playlist_main([str(themes), str(annotations), "--out", str(out)]) == 0
    rock = json.loads((out / "loud-rock.json").read_text())
    # bob has the three best rock tracks; one per artist leaves bob's best, cid's, and then ann's.
    assert [t["id"] for t in rock["tracks"]] == ["fast_rock", "mid_rock", "slow_jazz"]
    assert [t["artist"] for t in rock["tracks"]] == ["bob", "cid", "ann"] and rock["shortfall"] == 0
    m3u = (out / "loud-rock.m3u").read_text().splitlines()
    assert m3u[:2] == ["#EXTM3U", "#PLAYLIST:Loud rock"] and m3u[3] == "music/bob/album/fast_rock.wav"
    assert [t["id"] for t in json.loads((out / "slow.json").read_text())["tracks"]] == ["slow_jazz", "slow_sung_jazz"]


def test_coldtag_playlist_reads_the_themes_with_the_word_list(annotations, tmp_path):
    themes = tmp_path / "themes.yaml"
    themes.write_text("themes:\n  - name: focus\n    query: instrumental jazz\n    length: 1\n")
    words = tmp_path / "words.yaml"
    words.write_text("tags:\n  vocals:\n    not: [instrumental]\n")
    assert playlist_main([str(themes), str(annotations), "--out", str(tmp_path / "plain")]) == 0
    assert playlist_main([str(themes), str(annotations), "--out", str(tmp_path / "worded"), "--words", str(words)]) == 0
    # Without the list "instrumental" names nothing and jazz alone is read (slow_jazz and slow_sung_jazz tie, id
    # order); with it the sung one is pushed down either way, and the playlist says how the query was read.
    worded = json.loads((tmp_path / "worded" / "focus.json").read_text())
    assert [t["id"] for t in worded["tracks"]] == ["slow_jazz"]
    plain = json.loads((tmp_path / "plain" / "focus.json").read_text())
    assert "not instrument/vocals" in json.dumps(worded) and "not instrument/vocals" not in json.dumps(plain)


def test_a_bad_theme_is_named_with_its_key(annotations, tmp_path, capsys):
    themes = tmp_path / "themes.yaml"
    themes.write_text("themes:\n  - name: fine\n    query: rock\n  - name: broken\n    query: jazz\n    length: -3\n")
    with pytest.raises(ThemeError, match=r"theme 'broken': key 'length' must be a positive integer, got -3"):
        load_themes(themes)
    themes.write_text("themes:\n  - name: odd\n    query: jazz\n    per_artst: 1\n")
    with pytest.raises(ThemeError, match=r"theme 'odd': unknown key 'per_artst'"):
        load_themes(themes)
    themes.write_text("themes:\n  - name: nonsense\n    query: zxqv flarb\n")
    assert playlist_main([str(themes), str(annotations), "--out", str(tmp_path / "p")]) == 2
    assert "theme 'nonsense': key 'query': query 'zxqv flarb' names nothing" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_the_review_server_searches(tmp_path):
    from fastapi.testclient import TestClient

    from annotation.review.app import create_app
    from annotation.review.run import Run
    from tests.helpers.review_runs import make_package, write_run

    model = make_package(tmp_path / "tagger")
    run = Run(write_run(tmp_path / "annotations", model, tmp_path / "audio"), tmp_path / "tagger")
    client = TestClient(create_app(run))
    # odd.wav is the one rock track the model finds calm rather than loud.
    body = client.get("/api/search", params={"q": "rock, not loud", "n": 2}).json()
    assert body["hits"][0]["id"] == "odd.wav" and "not mood/loud" in body["read_as"]
    assert body["hits"][0]["reasons"] == [{"what": "genre/rock", "value": 0.9, "counted": 0.9},
                                          {"what": "not mood/loud", "value": 0.1, "counted": -0.1}]
    refused = client.get("/api/search", params={"q": "zxqv flarb"})
    assert refused.status_code == 400 and "names nothing" in refused.json()["error"]
    assert client.get("/api/search", params={"q": "rock", "n": 0}).status_code == 422
    # With the catalog's word list, the box reads its words: "mellow" names no tag alone, the list makes it calm.
    assert client.get("/api/search", params={"q": "mellow"}).status_code == 400
    worded = TestClient(create_app(run, words=WordList.from_dict({"calm": {"words": ["mellow"]}})))
    assert worded.get("/api/search", params={"q": "mellow"}).json()["read_as"].startswith("mood/calm")


WORDS = WordList.from_dict({"vocals": {"words": ["singer"], "not": ["instrumental"]},
                            "graded/energy": {"high": ["intense"], "low": ["sleepy"]}})


def test_a_word_list_makes_instrumental_mean_no_vocals_and_not_instrumental_mean_vocals(annotations):
    index = SearchIndex.from_annotations(annotations, words=WORDS)
    (vocals, jazz) = index.parse("instrumental jazz").terms
    assert jazz.tag.name == "genre/jazz" and vocals.tag.name == "instrument/vocals" and not vocals.wanted
    assert index.search("instrumental jazz", n=1)[0].id == "slow_jazz"
    (_, sung) = index.parse("jazz, not instrumental").terms
    assert sung.wanted and index.search("jazz, not instrumental", n=1)[0].id == "slow_sung_jazz"
    assert index.parse("jazz with a singer").terms[1].wanted


def test_a_word_list_names_the_ends_of_a_graded_value(annotations):
    index = SearchIndex.from_annotations(annotations, words=WORDS)
    (term,) = index.parse("sleepy").terms
    assert term.tag.name == "graded/energy" and term.direction == "low"
    assert index.search("sleepy", n=1)[0].id == "slow_jazz" and index.search("intense", n=1)[0].id == "fast_rock"
    assert index.parse("not sleepy").terms[0].direction == "high"


def _bag_of_words(texts: list[str]) -> np.ndarray:
    """A stand-in encoder: counts of a few words, so "heavy" is 0.71 similar to "heavy reverb"."""
    known = ["heavy", "reverb", "metal", "guitar"]
    return np.array([[t.split().count(w) for w in known] + [0.01] for t in texts], dtype=float)


def test_heavy_does_not_name_heavy_reverb_on_the_shared_word_alone():
    vocabulary = Vocabulary((Tag("attribute", "heavy_reverb"), Tag("genre", "metal")))
    matcher = TextMatcher(vocabulary, embed=_bag_of_words)
    assert matcher.similarities(["heavy"])[0, 0] > THRESHOLD  # close by the shared word, and still refused:
    with pytest.raises(NoMatch):
        parse_query("heavy", matcher)
    assert [t.tag.name for t in parse_query("heavy metal", matcher).terms] == ["genre/metal"]
    assert [t.tag.name for t in parse_query("heavy reverb", matcher).terms] == ["attribute/heavy_reverb"]
    words = WordList.from_dict({"heavy_reverb": {"words": ["drenched in reverb"]}})
    matcher = TextMatcher(vocabulary, embed=_bag_of_words, words=words)
    assert [t.tag.name for t in parse_query("guitar drenched in reverb", matcher).terms] == ["attribute/heavy_reverb"]


def test_a_bad_word_list_is_named_with_its_entry(annotations, tmp_path, capsys):
    bad = tmp_path / "words.yaml"
    bad.write_text("tags:\n  vocals: {nope: [x]}\n")
    with pytest.raises(WordListError, match=r"words.yaml: tags.vocals: expected a mapping of words, not, high, low"):
        WordList.load(bad)
    assert search_main(["jazz", str(annotations), "--words", str(bad)]) == 2
    assert "tags.vocals" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["toycatalog/search_words.yaml", "annotation/search/words_pretrained.yaml"])
def test_the_shipped_word_lists_load_and_name_no_phrase_twice_for_one_tag(path):
    words = WordList.load(Path(__file__).parents[2] / path)
    for tag, entry in words.entries.items():
        phrases = [p for kind in entry.values() for p in kind]
        assert len(phrases) == len(set(phrases)), tag


def test_more_like_a_track_and_for_a_listener_rank_by_the_factors_too(annotations, tmp_path, capsys):
    """With a cold-start pipeline's factors, the query and the closeness of the tracks' factors to a seed
    track's (or a listener's) both count, each in the reasons; the seed is not its own hit."""
    factors = {"slow_jazz": [1.0, 0.0], "slow_sung_jazz": [0.0, 1.0], "fast_rock": [0.0, 1.0],
               "fast_rock_2": [1.0, 0.0], "fast_rock_3": [1.0, 0.1], "mid_rock": [-1.0, 0.0]}
    plain = SearchIndex.from_annotations(annotations)
    assert plain.factors is None
    with pytest.raises(ValueError, match="no factors"):
        plain.like_track("slow_jazz")
    ids = plain.ids
    index = SearchIndex(ids, plain.paths, plain.vocabulary, plain.values, plain.tempo, plain.matcher,
                        np.array([factors[t] for t in ids]))
    # "rock" alone ranks fast_rock first; toward slow_jazz's factors, the rock tracks that share them come first.
    assert index.search("rock", 1)[0].id == "fast_rock"
    hits = index.search("rock", 6, index.like_track("slow_jazz"))
    # fast_rock_3: 0.85 + cos([1, 0.1], [1, 0]) = 0.85 + 0.995; fast_rock_2: 0.8 + 1.
    assert [h.id for h in hits][:2] == ["fast_rock_3", "fast_rock_2"] and "slow_jazz" not in [h.id for h in hits]
    assert hits[0].score == pytest.approx(0.85 + 1 / np.sqrt(1.01))
    assert "like slow_jazz = 1: +1.00" in hits[1].explain() and "genre/rock = 0.8: +0.80" in hits[1].explain()
    assert hits[-1].id == "mid_rock"  # its factors point away: -1
    with pytest.raises(ValueError, match="no such track"):
        index.like_track("nobody")

    from recsys import Recommender
    Recommender(np.array([[0.0, 2.0], [3.0, 0.0]]), np.zeros((1, 2)), user_ids=np.array(["u1", "u2"]),
                item_ids=np.array(["x"])).save(tmp_path / "recommender.npz")
    for_u1 = [h.id for h in index.search("rock", 3, for_listener(tmp_path / "recommender.npz", "u1", 2.0))]
    assert for_u1[0] == "fast_rock" and "slow_sung_jazz" in for_u1  # u1 leans on the second factor
    with pytest.raises(ValueError, match="no such listener"):
        for_listener(tmp_path / "recommender.npz", "u9")
    # On the command line, annotations without factors are refused with the reason.
    assert search_main(["rock", str(annotations), "--like", "slow_jazz"]) == 2
    assert "no factors" in capsys.readouterr().err
    assert search_main(["rock", str(annotations), "--listener", "u1"]) == 2
    assert "--listener needs --recommender" in capsys.readouterr().err


def test_a_break_word_right_after_a_negation_keeps_it_and_a_tag_named_twice_counts_once(annotations):
    words = WordList.from_dict({"drums": {"words": ["percussion", "percussions"]},
                                "acoustic_guitar": {"words": ["strummed"]}})
    index = SearchIndex.from_annotations(annotations, words=words)
    (jazz, drums) = index.parse("jazz, nothing with drums").terms
    assert jazz.wanted and drums.tag.name == "instrument/drums" and not drums.wanted
    assert [(t.tag.name, t.wanted) for t in index.parse("no drums and jazz").terms] == [
        ("instrument/drums", False), ("genre/jazz", True)]
    # "percussions" and "percussion" are one phrase of the list, and the tag they name is read once.
    (drums,) = index.parse("percussion, drums, percussions").terms
    assert drums.tag.name == "instrument/drums" and drums.weight == 1.0
    assert index.parse("very drums, drums").terms[0].weight == 2.0
    # A word of the named tag's name beside the phrase goes with it rather than naming something else.
    query = index.parse("strummed guitar")
    assert [(t.tag.name, t.phrase) for t in query.terms] == [("instrument/acoustic_guitar", "strummed guitar")]
    assert query.ignored == ()


def test_words_for_a_recording_name_no_tag(annotations):
    index = SearchIndex.from_annotations(annotations)
    query = index.parse("jazz recordings with syncopated rhythms")
    assert [t.tag.name for t in query.terms] == ["genre/jazz"] and "recordings" not in query.ignored
