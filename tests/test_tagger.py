import json

import pytest
import torch

from tagging.models import AudioTagger, RhythmFeatures, chunk_starts

VOCAB = {"groups": {
    "genre": {"type": "multilabel", "labels": ["rock", "jazz", "folk"]},
    "graded": {"type": "regression", "labels": ["tempo"], "ranges": [[40, 240]]},
}}
TINY = {"backbone": "tiny", "width": 4, "embedding_dim": 16, "sample_rate": 8000, "n_fft": 256,
        "hop_length": 128, "n_mels": 32, "chunk_seconds": 1.0}


def make_model(**overrides) -> AudioTagger:
    torch.manual_seed(0)
    return AudioTagger(VOCAB, **{**TINY, **overrides}).eval()


def test_chunk_grid_covers_the_track_evenly():
    assert chunk_starts(500, 1000) == [0]  # shorter than a chunk: one padded chunk
    assert chunk_starts(1000, 1000) == [0]
    assert chunk_starts(2500, 1000) == [0, 750, 1500]  # three chunks, the last ending at the end
    assert chunk_starts(10_000, 1000, max_chunks=4) == [0, 3000, 6000, 9000]


def test_rhythm_features_peak_at_the_onset_period():
    spec = torch.full((1, 8, 200), -80.0)
    spec[:, :, ::25] = 0.0  # an onset every 25 frames in every band
    spec[:, :4, 12::50] = -20.0  # and a weaker off-beat in the low bands only
    with torch.autocast("cpu", dtype=torch.bfloat16):
        acf = RhythmFeatures(lags=60, bands=2)(spec)
    assert acf.dtype == torch.float32 and acf.shape == (1, 120)
    bands = acf.view(2, 60)
    assert int(bands[1].argmax()) + 1 == 25  # lag of the beat period (lags start at 1)
    assert bands[1, 24] > 0.8 and bands[1, 49] > 0.6  # beat and two beats
    assert bands[0, 11] > bands[1, 11]  # the off-beat shows in the band that has it


def test_shapes_and_heads():
    model = make_model()
    wave = torch.randn(3, 8000)
    embedding = model.forward_features(wave)
    assert embedding.shape == (3, 16)
    logits = model.forward_head(embedding)
    assert logits["genre"].shape == (3, 3) and logits["graded"].shape == (3, 1)


def test_track_outputs_match_a_single_pass_when_the_track_is_one_chunk():
    model = make_model()
    wave = torch.randn(2, 8000)
    with torch.no_grad():
        single = model.forward_features(wave)
        probs = torch.sigmoid(model.forward_head(single)["genre"])
        track = model.track_outputs(wave)
    torch.testing.assert_close(track.embedding, single)
    torch.testing.assert_close(track.scores["genre"], probs)


def test_chunked_inference_is_deterministic_and_independent_of_batching():
    model = make_model()
    waves = torch.randn(3, 8000 * 5)
    lengths = torch.tensor([8000 * 5, 8000 * 2 + 123, 4000])
    with torch.no_grad():
        first = model.track_outputs(waves, lengths, chunk_batch=64)
        second = model.track_outputs(waves, lengths, chunk_batch=2)
        alone = model.track_outputs(waves[1:2, :int(lengths[1])])
    torch.testing.assert_close(first.embedding, second.embedding)
    torch.testing.assert_close(first.scores["genre"], second.scores["genre"])
    torch.testing.assert_close(first.embedding[1:2], alone.embedding)  # padding of others does not leak


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path):
    model = make_model()
    model.set_thresholds("genre", torch.tensor([0.2, 0.5, 0.9]))
    model.save_pretrained(tmp_path / "tagger")
    assert json.loads((tmp_path / "tagger" / "thresholds.json").read_text())["genre"]["folk"] == pytest.approx(0.9)
    loaded = AudioTagger.from_pretrained(tmp_path / "tagger")
    wave = torch.randn(8000 * 3)
    assert model.annotate(wave) == loaded.annotate(wave)


def test_weights_load_whatever_the_frontend_backend(tmp_path):
    model = make_model(frontend_backend="torchaudio")
    model.save_pretrained(tmp_path / "tagger")
    other = AudioTagger.from_pretrained(tmp_path / "tagger", frontend_backend="nnaudio")
    wave = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(wave), other.forward_features(wave), atol=2e-3, rtol=1e-3)


def test_annotate_applies_thresholds_and_returns_units():
    model = make_model()
    model.set_thresholds("genre", torch.tensor([0.0, 1.01, 0.0]))
    wave = torch.randn(8000 * 2)
    record = model.annotate(wave)
    assert record["genre"]["tags"] == ["rock", "folk"]
    with torch.no_grad():
        scaled = model.track_outputs(wave.unsqueeze(0)).scores["graded"][0, 0]
    assert record["graded"]["tempo"] == pytest.approx(40 + 200 * float(scaled), rel=1e-5)  # back in BPM
    assert set(record["genre"]["probabilities"]) == {"rock", "jazz", "folk"}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="backbone must be one of"):
        make_model(backbone="vgg")
    with pytest.raises(ValueError, match="chunk_seconds must be > 0"):
        make_model(chunk_seconds=0)
    with pytest.raises(FileNotFoundError, match="not a saved AudioTagger"):
        AudioTagger.from_pretrained("/nonexistent")


@pytest.mark.gpu
def test_bf16_autocast_on_cuda_keeps_the_spectrogram_finite():
    model = make_model().cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.no_grad():
        out = model(torch.randn(2, 8000, device="cuda"))
    assert all(torch.isfinite(v).all() for v in out.values())
