"""The cold-start pipeline: any subset of audio / lyrics / cover in, a JSON-ready record out."""

import copy
import itertools
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torchcodec.encoders import AudioEncoder

from coldtag.storage import ProvenanceError, reference
from fusion.data import assemble
from fusion.model import LateFusionRegressor
from fusion.pipeline import ColdStartPipeline
from recsys import Recommender
from tagging.data.features import extract_features
from tagging.labels import LabelSpace, read_manifest
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger
from tagging.tracks import encode_tracks

MODALITIES = ("audio", "lyrics", "cover")
N_FACTORS = 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts(tiny_catalog):
    """A small untrained tagger, a fusion model over audio-derived inputs, lyrics and cover, random factors."""
    torch.manual_seed(0)
    vocab = LabelSpace.from_json(tiny_catalog / "vocab.json").to_dict()
    tagger = AudioTagger(vocab, backbone="tiny", width=4, embedding_dim=8, sample_rate=8000, n_fft=256,
                         hop_length=128, n_mels=32, chunk_seconds=1.0, eval_chunks=2).eval()
    sizes = {name: len(group["labels"]) for name, group in vocab["groups"].items()}
    fusion = LateFusionRegressor({"audio": 8, "scores/attribute": sizes["attribute"],
                                  "scores/graded": sizes["graded"], "scores/genre": sizes["genre"],
                                  "lyrics": 384, "cover": 1280}, N_FACTORS, hidden=16).eval()
    rng = np.random.default_rng(0)
    recommender = Recommender(rng.normal(size=(20, N_FACTORS)).astype(np.float32),
                              rng.normal(size=(30, N_FACTORS)).astype(np.float32),
                              np.array([f"u{i}" for i in range(20)]), np.array([f"t{i}" for i in range(30)]))
    multimodal = MultimodalTagger(vocab, {"audio": 8, "lyrics": 384, "cover": 1280}, hidden=16).eval()
    return tagger, fusion, recommender, multimodal


@pytest.fixture(scope="module")
def pipeline(parts):
    tagger, fusion, recommender, multimodal = parts
    return ColdStartPipeline(tagger, fusion, recommender, multimodal=multimodal, n_users=5, n_tracks=4)


@pytest.fixture(scope="module")
def files(tiny_catalog):
    """One catalog track that has all three modalities."""
    frame = read_manifest(tiny_catalog / "manifest.parquet")
    row = frame[frame["lyrics_path"].notna() & frame["cover_path"].notna()].iloc[0]
    return {"audio": row["audio_path"], "lyrics": row["lyrics_path"], "cover": row["cover_path"]}


@pytest.mark.parametrize("subset", [s for r in (1, 2, 3) for s in itertools.combinations(MODALITIES, r)])
def test_every_subset_of_modalities_gets_factors_users_and_similar_tracks(pipeline, files, subset):
    record = pipeline(**{m: files[m] for m in subset})
    assert record["modalities"] == list(subset) and record["errors"] == {}
    assert np.linalg.norm(record["factors"]) == pytest.approx(1.0, abs=1e-5)
    scores = [u["score"] for u in record["users"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert all(isinstance(u["user_id"], str) for u in record["users"])
    # The users' scores are the inner products with the predicted factors.
    users = pipeline.recommender.user_index([u["user_id"] for u in record["users"]])
    np.testing.assert_allclose(scores, pipeline.recommender.user_factors[users] @ record["factors"], rtol=1e-4)
    assert len(record["similar_tracks"]) == 4
    assert record["tags_from"] == "multimodal"  # tags from whatever is given
    assert set(record["tags"]) == {"genre", "mood", "attribute", "graded"}
    json.dumps(record)  # JSON-ready as it is


def test_without_a_multimodal_tagger_tags_come_from_the_audio(parts, files):
    tagger, fusion, recommender, _ = parts
    pipeline = ColdStartPipeline(tagger, fusion, recommender)
    record = pipeline(audio=files["audio"])
    assert record["tags_from"] == "audio" and "tempo" in record["tags"]["graded"]
    assert pipeline._lyrics is None and pipeline._cover is None  # encoders load only when needed
    assert pipeline(cover=__file__)["tags"] is None


def test_a_new_track_gets_the_inputs_the_model_was_trained_on(pipeline, files, tiny_catalog, tmp_path):
    frame = read_manifest(tiny_catalog / "manifest.parquet")
    frame[frame["audio_path"] == files["audio"]].to_parquet(tmp_path / "one.parquet")  # absolute paths
    cached = extract_features(tmp_path / "one.parquet", pipeline.tagger, pipeline.lyrics_encoder,
                              pipeline.cover_encoder)
    inputs, present = assemble(cached.arrays, cached.present, pipeline.fusion.inputs)
    with torch.no_grad():
        expected = pipeline.fusion({n: torch.from_numpy(x) for n, x in inputs.items()},
                                   {n: torch.from_numpy(m) for n, m in present.items()})[0]
    np.testing.assert_allclose(pipeline(**files)["factors"], expected.numpy(), atol=1e-5)


def test_round_trip_through_save_and_load_gives_identical_records(pipeline, files, tmp_path):
    pipeline.save_pretrained(tmp_path / "pipeline")
    # Saved through a staging folder that took the package's place: each part is where it now lies.
    assert pipeline.tagger.package_path == (tmp_path / "pipeline" / "tagger").resolve()
    assert pipeline.fusion.package_path == (tmp_path / "pipeline" / "fusion").resolve()
    loaded = ColdStartPipeline.from_pretrained(tmp_path / "pipeline")
    assert loaded(**files) == pipeline(**files)
    assert sorted(p.name for p in (tmp_path / "pipeline").iterdir()) == [
        "fusion", "multimodal", "package.json", "pipeline.json", "recommender.npz", "tagger"]


def test_a_bad_file_is_an_error_entry_and_the_rest_goes_on(pipeline, files, tmp_path):
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(b"not a JPEG at all")
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_bytes(bytes(range(256)) * 4)
    record = pipeline(audio=files["audio"], lyrics=lyrics, cover=cover)
    assert set(record["errors"]) == {"lyrics", "cover"}
    assert str(cover) in record["errors"]["cover"] and "not an image" in record["errors"]["cover"]
    assert "not text" in record["errors"]["lyrics"]
    assert record["modalities"] == ["audio"]
    # An unreadable modality is an absent one: the same factors as from the audio alone.
    assert record["factors"] == pipeline(audio=files["audio"])["factors"]

    missing = pipeline(audio=tmp_path / "nothing.mp3")
    assert "missing" in missing["errors"]["audio"]
    assert missing["factors"] is None and missing["users"] == [] and missing["modalities"] == []


def test_factors_need_an_input_the_fusion_model_takes(parts, files):
    tagger, _, recommender, _ = parts
    audio_only = LateFusionRegressor({"audio": 8}, N_FACTORS, hidden=4).eval()
    record = ColdStartPipeline(tagger, audio_only, recommender)(lyrics=files["lyrics"])
    assert record["modalities"] == ["lyrics"] and record["factors"] is None
    assert "audio" in record["errors"]["factors"]
    with pytest.raises(ValueError, match="at least one"):
        ColdStartPipeline(tagger, audio_only, recommender)()


def test_the_pipeline_refuses_inputs_a_new_track_cannot_have(parts):
    tagger, _, recommender, _ = parts
    with pytest.raises(ValueError, match="annotated/attribute"):
        ColdStartPipeline(tagger, LateFusionRegressor({"annotated/attribute": 29}, N_FACTORS), recommender)
    with pytest.raises(ValueError, match="reference/random"):
        ColdStartPipeline(tagger, LateFusionRegressor({"audio": 8, "reference/random": 4}, N_FACTORS), recommender)
    with pytest.raises(ValueError, match="input sizes"):
        ColdStartPipeline(tagger, LateFusionRegressor({"audio": 9}, N_FACTORS), recommender)


# Lightning made unimportable, as on a catalog service that does not install it.
NO_LIGHTNING = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytorch_lightning", "lightning"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Blocker())
from fusion.pipeline import ColdStartPipeline
record = ColdStartPipeline.from_pretrained(sys.argv[1])(audio=sys.argv[2])
assert record["factors"] is not None
"""


@pytest.mark.slow  # a fresh interpreter imports torch, torchcodec and torchmetrics
def test_a_saved_pipeline_runs_without_lightning(parts, files, tmp_path):
    tagger, fusion, recommender, _ = parts
    ColdStartPipeline(tagger, fusion, recommender).save_pretrained(tmp_path / "pipeline")
    subprocess.run([sys.executable, "-c", NO_LIGHTNING, str(tmp_path / "pipeline"), files["audio"]], check=True,
                   timeout=300)


def test_a_copied_pipeline_runs_alone_and_models_made_from_another_tagger_are_refused(parts, files, tmp_path):
    tagger, fusion, recommender, multimodal = (copy.deepcopy(part) for part in parts)
    tagger.save_pretrained(tmp_path / "tagger")
    other = copy.deepcopy(tagger)
    other.set_thresholds("genre", other.thresholds("genre") * 0 + 0.3)  # another package, another hash
    other.save_pretrained(tmp_path / "other")
    fusion.save_pretrained(tmp_path / "fusion", inputs={"audio": reference(tmp_path / "other")})
    with pytest.raises(ProvenanceError, match=r"fusion model .* trained on features of the audio tagger"):
        ColdStartPipeline(tagger, LateFusionRegressor.from_pretrained(tmp_path / "fusion"), recommender)
    multimodal.save_pretrained(tmp_path / "multimodal", inputs={"audio": reference(tmp_path / "other")})
    fusion.save_pretrained(tmp_path / "fusion", inputs={"audio": reference(tmp_path / "tagger"),
                                                        "factors": {"kind": "ColdStartSplit", "sha256": "a" * 64}})
    with pytest.raises(ProvenanceError, match=r"multimodal tagger .* trained on features of the audio tagger"):
        ColdStartPipeline(tagger, fusion, recommender, multimodal=MultimodalTagger.from_pretrained(
            tmp_path / "multimodal"))
    with pytest.raises(ProvenanceError, match="learnt the factors of cold-start split sha256:aaaa"):
        ColdStartPipeline(tagger, fusion, recommender, factors_sha256="b" * 64)

    multimodal.save_pretrained(tmp_path / "multimodal", inputs={"audio": reference(tmp_path / "tagger")})
    pipeline = ColdStartPipeline(tagger, fusion, recommender, multimodal=multimodal, n_users=5, n_tracks=4,
                                 factors_sha256="a" * 64)
    pipeline.save_pretrained(tmp_path / "pipeline")
    shutil.copytree(tmp_path / "pipeline", tmp_path / "moved")
    for folder in ("pipeline", "tagger", "other", "fusion", "multimodal"):
        shutil.rmtree(tmp_path / folder)
    assert ColdStartPipeline.from_pretrained(tmp_path / "moved")(**files) == pipeline(**files)
    (tmp_path / "moved" / "recommender.npz").write_bytes(b"tampered")
    with pytest.raises(ProvenanceError, match=r"recommender\.npz: differs"):
        ColdStartPipeline.from_pretrained(tmp_path / "moved")


def test_training_features_are_what_the_pipeline_computes_for_the_same_files(pipeline, files, tmp_path):
    """Fusion learns from `extract_features`; a new track is served through `ColdStartPipeline`: both read
    and encode through `tagging.tracks`, so one file gives one set of inputs, and audio the pipeline would
    not use (silent) is left out of training too."""
    silent = tmp_path / "silent.wav"
    AudioEncoder(torch.zeros(1, 8000 * 3), sample_rate=8000).to_file(str(silent))
    rows = [files, {**files, "audio": str(silent)}]
    frame = pd.DataFrame([{"track_id": f"t{i}", **{f"{m}_path": row[m] for m in MODALITIES}}
                          for i, row in enumerate(rows)])
    frame.to_parquet(tmp_path / "two.parquet")
    cached = extract_features(tmp_path / "two.parquet", pipeline.tagger, pipeline.lyrics_encoder,
                              pipeline.cover_encoder)
    for index, row in enumerate(rows):
        track = pipeline.read(**row)
        served = encode_tracks([track], pipeline.tagger, pipeline.lyrics_encoder, pipeline.cover_encoder)
        known = served.known(0)
        assert sorted(m for m in MODALITIES if cached.present[m][index]) == sorted(known)
        for modality, embedding in known.items():
            scale = max(1.0, float(embedding.abs().max()))
            np.testing.assert_allclose(cached.arrays[modality][index], embedding.numpy(), atol=1e-5 * scale,
                                       rtol=0, err_msg=modality)
        if "audio" in known:
            for group, scores in served.audio_scores[0].items():  # probabilities, and graded values on [0, 1]
                np.testing.assert_allclose(cached.arrays[f"scores/{group}"][index], scores.numpy(), atol=1e-5,
                                           rtol=0, err_msg=group)
    assert list(cached.present["audio"]) == [True, False]  # silence is no training input
    assert "silent" in cached.errors[1]
