"""`coldtag annotate` on a folder holding every kind of bad file, with each kind of package: an audio
tagger, a multimodal tagger reading the lyrics and cover sidecars, a cold-start pipeline."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from annotation.cli import cli_main
from annotation.records import read_annotations
from coldtag.storage import reference
from fusion.model import LateFusionRegressor
from fusion.pipeline import ColdStartPipeline
from recsys import Recommender
from tagging.data.features import encoder_sources
from tagging.labels import LabelSpace
from tagging.models.image import CoverEncoder
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger
from tagging.models.text import LyricsEncoder
from tests.helpers.annotate_corpus import EXPECTED_AUDIO, EXPECTED_SIDECARS, EXPECTED_WARNINGS, write_corpus
from tests.helpers.compare import raw_records

COVER_SIZE = 64
N_FACTORS = 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


@pytest.fixture(scope="module")
def packages(tiny_catalog, tmp_path_factory):
    """An untrained tiny audio tagger, a multimodal tagger over audio, lyrics and cover that bundles it, and
    a cold-start pipeline of the three with a fusion model and random factors, each saved as a package."""
    root = tmp_path_factory.mktemp("packages")
    torch.manual_seed(0)
    vocab = LabelSpace.from_json(tiny_catalog / "vocab.json").to_dict()
    tagger = AudioTagger(vocab, backbone="tiny", width=4, embedding_dim=8, sample_rate=8000, n_fft=256,
                         hop_length=128, n_mels=32, chunk_seconds=1.0, eval_chunks=3).eval()
    tagger.save_pretrained(root / "tagger")
    lyrics, cover = LyricsEncoder().eval(), CoverEncoder("efficientnet_lite0", pretrained=True).eval()
    multimodal = MultimodalTagger(vocab, {"audio": 8, "lyrics": lyrics.dim, "cover": cover.dim}, hidden=16).eval()
    sources = encoder_sources(tagger, lyrics, cover, COVER_SIZE)
    sources["audio"] = reference(root / "tagger", bundle=True)
    multimodal.save_pretrained(root / "multimodal", inputs=sources)
    sizes = {name: len(group["labels"]) for name, group in vocab["groups"].items()}
    fusion = LateFusionRegressor({"audio": 8, "scores/genre": sizes["genre"], "lyrics": lyrics.dim,
                                  "cover": cover.dim}, N_FACTORS, hidden=16).eval()
    rng = np.random.default_rng(0)
    recommender = Recommender(rng.normal(size=(20, N_FACTORS)).astype(np.float32),
                              rng.normal(size=(30, N_FACTORS)).astype(np.float32),
                              np.array([f"u{i}" for i in range(20)]), np.array([f"t{i}" for i in range(30)]))
    ColdStartPipeline(tagger, fusion, recommender, multimodal=multimodal, cover_size=COVER_SIZE, n_users=3,
                      n_tracks=2).save_pretrained(root / "pipeline")
    return root


def _annotate(corpus, model, out, *extra) -> pd.DataFrame:
    assert cli_main([str(corpus), "--model", str(model), "--out", str(out), "--workers", "2", "--batch-size", "4",
                     "--no-progress", *extra]) == 0
    return read_annotations(out).to_pandas().set_index("id")


@pytest.fixture(scope="module")
def pipeline_records(corpus, packages, tmp_path_factory):
    return _annotate(corpus, packages / "pipeline", tmp_path_factory.mktemp("pipeline-out"))


def test_exactly_the_good_files_are_annotated_and_each_bad_one_is_an_error_record_naming_why(
        corpus, tiny_tagger, tmp_path):
    records = _annotate(corpus, tiny_tagger.export, tmp_path / "out")
    assert sorted(records.index) == sorted(EXPECTED_AUDIO)
    assert len(raw_records(tmp_path / "out")) == len(EXPECTED_AUDIO)  # each once in the part files
    for track, reason in EXPECTED_AUDIO.items():
        error = records.loc[track, "error"]
        if reason is None:
            assert error is None, (track, error)
            assert list(records.loc[track, "warnings"]) == list(EXPECTED_WARNINGS.get(track, ())), track
        else:
            assert error is not None and error["message"].startswith(reason), (track, error)
            assert records.loc[track, "embedding"] is None
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    bad = [reason for reason in EXPECTED_AUDIO.values() if reason]
    assert summary["failed"] == len(bad) and summary["done"] == len(EXPECTED_AUDIO) - len(bad)


def test_the_multimodal_tagger_reads_the_sidecars_and_a_bad_sidecar_leaves_the_audio_annotated(
        corpus, packages, tmp_path):
    records = _annotate(corpus, packages / "multimodal", tmp_path / "out")
    for track, sidecars in EXPECTED_SIDECARS.items():
        errors = {e["modality"]: e["message"] for e in records.loc[track, "sidecar_errors"]}
        used = set(records.loc[track, "modalities"])
        assert records.loc[track, "error"] is None
        for sidecar, reason in sidecars.items():
            modality = "lyrics" if sidecar.endswith(".txt") else "cover"
            if reason is None:
                assert modality in used and modality not in errors, (track, sidecar)
            else:
                assert modality not in used and errors[modality].startswith(reason), (track, errors)
        assert "audio" in used
    assert list(records.loc["good/album/melody.ogg", "modalities"]) == ["audio"]  # no sidecars
    # Silent audio tells nothing, and the track has nothing else: no tags.
    assert list(records.loc["warn/silence.wav", "modalities"]) == []
    assert records.loc["warn/silence.wav", "genre"] is None


def test_the_pipeline_gives_the_factors_users_and_tracks_of_calling_it_on_the_files(corpus, packages,
                                                                                     pipeline_records):
    pipeline = ColdStartPipeline.from_pretrained(packages / "pipeline")
    for track in ("good/tone.wav", "good/chord.flac", "good/album/bass.m4a"):
        sidecars = {("lyrics" if s.endswith(".txt") else "cover"): corpus / s
                    for s, reason in EXPECTED_SIDECARS.get(track, {}).items() if reason is None}
        expected = pipeline(audio=corpus / track, **sidecars)
        record = pipeline_records.loc[track]
        assert list(record["modalities"]) == expected["modalities"]
        np.testing.assert_allclose(record["factors"], expected["factors"], atol=1e-5)
        assert [u["user_id"] for u in record["users"]] == [u["user_id"] for u in expected["users"]]
        assert [t["track_id"] for t in record["similar_tracks"]] == [t["track_id"] for t in expected["similar_tracks"]]
        assert record["tags_from"] == expected["tags_from"] == "multimodal"


def test_silent_or_too_short_audio_gets_no_factors_and_no_users(pipeline_records):
    for track in ("warn/silence.wav", "warn/blip.wav"):
        record = pipeline_records.loc[track]
        assert record["error"] is None and list(record["warnings"]) == list(EXPECTED_WARNINGS[track])
        assert record["factors"] is None and len(record["users"]) == 0 and record["genre"] is None
    assert len(pipeline_records.loc["good/tone.wav", "users"]) == 3


def test_a_multimodal_package_whose_audio_tagger_is_gone_is_refused_in_one_line(corpus, packages, tmp_path,
                                                                                 capsys):
    shutil.copytree(packages / "tagger", tmp_path / "tagger")
    multimodal = MultimodalTagger.from_pretrained(packages / "multimodal")
    inputs = json.loads((packages / "multimodal" / "package.json").read_text())["inputs"]
    inputs = {name: {k: v for k, v in ref.items() if k != "bundled"} for name, ref in inputs.items()}
    inputs["audio"] = reference(tmp_path / "tagger")  # referenced, not bundled...
    multimodal.save_pretrained(tmp_path / "multimodal", inputs=inputs)
    shutil.rmtree(tmp_path / "tagger")  # ...and gone
    assert cli_main([str(corpus), "--model", str(tmp_path / "multimodal"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither bundled in it nor at" in err, err


def test_links_out_of_the_input_root_are_refused_unless_allowed(corpus, packages, tmp_path):
    uploads, elsewhere = tmp_path / "uploads", tmp_path / "elsewhere"
    uploads.mkdir()
    elsewhere.mkdir()
    shutil.copy(corpus / "good/tone.wav", uploads / "inside.wav")
    shutil.copy(corpus / "good/tone.wav", elsewhere / "secret.wav")
    shutil.copy(corpus / "good/tone.txt", elsewhere / "secret.txt")
    (uploads / "linked.wav").symlink_to(elsewhere / "secret.wav")
    (uploads / "inside.txt").symlink_to(elsewhere / "secret.txt")
    records = _annotate(uploads, packages / "multimodal", tmp_path / "out")
    assert records.loc["linked.wav", "error"]["message"].startswith("outside:")
    assert records.loc["inside.wav", "error"] is None and "lyrics" not in records.loc["inside.wav", "modalities"]
    (error,) = records.loc["inside.wav", "sidecar_errors"]
    assert error["modality"] == "lyrics" and error["message"].startswith("outside:")
    allowed = _annotate(uploads, packages / "multimodal", tmp_path / "allowed", "--allow-outside")
    assert allowed["error"].isna().all() and "lyrics" in allowed.loc["inside.wav", "modalities"]


def test_a_pipeline_naming_an_encoder_outside_its_folder_is_refused_unless_allowed(corpus, packages, tmp_path,
                                                                                  capsys):
    from tagging.models.text import default_lyrics_model_path

    pipeline = ColdStartPipeline.from_pretrained(packages / "pipeline")
    pipeline.config["lyrics_model"] = str(default_lyrics_model_path())  # a path of the user's own machine
    pipeline.save_pretrained(tmp_path / "pipeline")
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(corpus / "good/tone.wav", one / "tone.wav")
    assert cli_main([str(one), "--model", str(tmp_path / "pipeline"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lyrics_model" in err and "leads out of the package folder" in err, err
    assert _annotate(one, tmp_path / "pipeline", tmp_path / "out", "--allow-outside")["error"].isna().all()
