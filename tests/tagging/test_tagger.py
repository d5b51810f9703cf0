import json
import math

import pytest
import torch

from tagging.grid import chunk_starts
from tagging.keys import KEY_PROFILES
from tagging.models.layers import HarmonicFeatures, RhythmBranch, RhythmFeatures
from tagging.models.tagger import AudioTagger

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


def test_rhythm_features_peak_at_the_onset_period_and_read_it_relative_to_the_beat():
    spec = torch.full((1, 8, 600), -80.0)
    spec[:, :, ::25] = -40.0  # an onset every 25 frames (0.5 s at 50 frames/s) in every band
    spec[:, :, ::75] = 0.0  # accents every third beat: a bar of 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = RhythmFeatures(frame_rate=50.0, bands=2)(spec)
    assert features.dtype == torch.float32 and features.shape == (1, 3 * 48 + 1)
    by_beat = features[0, :144].view(3, 48)  # two onset bands, then the self-similarity, every 1/6 beat
    assert features[0, -1] == pytest.approx(0.5)  # seconds per beat
    assert (by_beat[:2, 5] > 0.5).all() and (by_beat[:2, 2] < 0.1).all()  # a peak at the beat, none between
    beats = by_beat[:, 5::6]  # at 1, 2, ... 8 beats
    onsets = beats[:2]  # the self-similarity of spectra this flat is degenerate; see the next test
    assert (onsets[:, 2] > onsets[:, 1]).all() and (onsets[:, 2] > onsets[:, 3]).all()  # the bar of 3 stands out
    three_quarter_time = beats[0].clone()
    spec[:, :, ::75] = -40.0
    spec[:, :, ::100] = 0.0  # the same beat with a bar of 4
    four = RhythmFeatures(frame_rate=50.0, bands=2)(spec)[0, :144].view(3, 48)[0, 5::6]
    assert four[3] > four[2] and three_quarter_time[2] > three_quarter_time[3]


def test_rhythm_self_similarity_finds_a_bar_that_onsets_do_not_mark():
    # Equal onsets on every beat; only the timbre of the beats repeats, every 5 beats (a chord per bar of 5/4).
    torch.manual_seed(0)
    colours = torch.randn(5, 16) * 10.0  # one spectral shape per beat of the bar
    spec = torch.full((1, 16, 1000), -80.0)
    for beat, frame in enumerate(range(0, 1000, 25)):
        spec[0, :, frame:frame + 20] = -30.0 + colours[beat % 5].unsqueeze(1)
    features = RhythmFeatures(frame_rate=50.0, bands=2)(spec)
    assert features[0, -1] == pytest.approx(0.5)
    beats = features[0, :144].view(3, 48)[:, 5::6]  # (onset bands + similarity, 8 beats)
    similarity = beats[2]
    assert similarity[4] == similarity[:7].max() and similarity[4] > similarity[3] + 0.3  # 5 beats, not 4
    assert similarity[4] - similarity[3] > 5 * (beats[:2, 4] - beats[:2, 3]).abs().max()  # onsets barely see it


def test_rhythm_finds_a_beat_between_frames_and_keeps_its_bar_in_phase():
    # 113 BPM at 50 frames/s: a beat every 26.55 frames, so onsets land on frames 0, 27, 53, 80, ...
    # A whole-frame period (26 or 27) drifts off the onset peaks a few beats out; the bar of 4 must show.
    period = 50.0 * 60 / 113
    spec = torch.full((1, 8, 1200), -80.0)
    for beat in range(round(1200 / period)):
        frame = round(beat * period)
        if frame < 1200:
            spec[:, :, frame] = 0.0 if beat % 4 == 0 else -40.0
    features = RhythmFeatures(frame_rate=50.0, bands=2)(spec)
    assert features[0, -1] == pytest.approx(period / 50.0, rel=0.01)
    onsets = features[0, :96].view(2, 48)[:, 5::6]  # at 1, 2, ... 8 beats
    assert (onsets[:, 3] > onsets[:, 2] + 0.2).all() and (onsets[:, 3] > onsets[:, 4] + 0.2).all()


def test_rhythm_branch_hides_timbre_only_in_training():
    torch.manual_seed(0)
    branch = RhythmBranch(frame_rate=50.0, dim=8, timbre_dropout=0.3)
    pooled, spec = torch.rand(2000, 4) + 1.0, torch.randn(2000, 8, 200)
    hidden = (branch.train()(pooled, spec)[:, :4] == 0).all(dim=1).float().mean()
    assert 0.25 < hidden < 0.35
    joined = branch.eval()(pooled, spec)
    assert joined.shape == (2000, 12) and torch.equal(joined[:, :4], pooled)


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
        make_model(backbone="vgg16")
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


def test_weight_decay_falls_on_weight_matrices_and_kernels_only():
    from tagging.lightning import TaggerModule, decay_groups

    module = TaggerModule(make_model(backbone="short_chunk_resnet", width=4, embedding_dim=8, rhythm=True))
    decay, no_decay = decay_groups(module, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    named = dict(module.named_parameters())
    decayed = {name for name, p in named.items() if any(p is q for q in decay["params"])}
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)
    assert "model.heads.genre.weight" in decayed and "model.backbone.blocks.0.conv1.weight" in decayed
    assert not any(name.endswith("bias") or ".bn" in name or "norm" in name for name in decayed)


def test_timbre_dropout_is_a_model_argument_kept_in_its_package(tmp_path):
    model = make_model(rhythm=True, timbre_dropout=0.6)
    assert model.backbone.rhythm.timbre_dropout == 0.6
    model.save_pretrained(tmp_path / "model")
    assert AudioTagger.from_pretrained(tmp_path / "model").backbone.rhythm.timbre_dropout == 0.6


def _progression(tonic: int, minor: bool, sample_rate: int) -> torch.Tensor:
    """i-iv-V-i (I-IV-V-I in major), a second a chord: triads over the root an octave down, three
    harmonics a note, the dominant major in minor as common-practice harmony writes it."""
    t = torch.arange(sample_rate) / sample_rate

    def note(midi: int) -> torch.Tensor:
        hz = 440.0 * 2 ** ((midi - 69) / 12)
        return sum(0.5 ** h * torch.sin(2 * math.pi * hz * (h + 1) * t) for h in range(3))

    def triad(root: int, third: int) -> torch.Tensor:
        return note(root - 12) + note(root) + note(root + third) + note(root + 7)

    third = 3 if minor else 4
    chords = [triad(60 + tonic, third), triad(65 + tonic, third), triad(67 + tonic, 4), triad(60 + tonic, third)]
    return 0.05 * torch.cat(chords)


@pytest.mark.parametrize("minor", [False, True])
def test_harmonic_branch_finds_the_tonic_of_a_chord_progression(minor):
    model = make_model(harmony=True)  # 8 kHz: the chroma of 4,096-sample frames
    waves = torch.stack([_progression(tonic, minor, model.sample_rate) for tonic in range(12)])
    tonic, mode = model.backbone.harmony.encode[0].key(model.chroma(waves))
    assert tonic.tolist() == list(range(12)) and mode.tolist() == [int(minor)] * 12


def test_harmonic_features_read_the_scale_relative_to_the_tonic():
    """The same profile in every key gives the same features: a minor piece looks minor in a key the
    training set lacked. (From a profile itself, so only the transposition changes.)"""
    features = HarmonicFeatures()
    profile = torch.tensor(KEY_PROFILES["minor"])
    chroma = torch.stack([20 * torch.log10(profile.roll(k)) for k in range(12)]).unsqueeze(2).expand(-1, -1, 5)
    out = features(chroma)
    assert out.shape == (12, HarmonicFeatures.dim)
    torch.testing.assert_close(out, out[:1].expand(12, -1))
    assert out[0, 12 + 12] == pytest.approx(1.0)  # the minor profile on its own tonic fits perfectly
    tonic, mode = features.key(chroma)
    assert tonic.tolist() == list(range(12)) and mode.tolist() == [1] * 12


def test_branches_run_under_bf16_autocast_with_float32_features():
    model = make_model(backbone="short_chunk_resnet", harmony=True, band_stats=True, rhythm=True)
    wave = _progression(2, True, model.sample_rate).unsqueeze(0)
    with torch.no_grad():
        reference = model.forward_features(wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = model.backbone.harmony.encode[0](model.chroma(wave))
            embedding = model.forward_features(wave)
    assert features.dtype == torch.float32
    assert torch.isfinite(embedding).all() and torch.nn.functional.cosine_similarity(
        embedding.float(), reference).item() > 0.99


@pytest.mark.parametrize("backbone", ["tiny", "short_chunk_resnet"])
def test_pooling_and_branches_are_model_arguments_kept_in_its_package(tmp_path, backbone):
    model = make_model(backbone=backbone, pooling="mean_max", harmony=True, band_stats=True, rhythm=True)
    model.save_pretrained(tmp_path / "model")
    loaded = AudioTagger.from_pretrained(tmp_path / "model")
    assert loaded.config["pooling"] == "mean_max" and loaded.config["harmony"] and loaded.config["band_stats"]
    wave = torch.randn(8000 * 2)
    assert model.annotate(wave) == loaded.annotate(wave)
    with pytest.raises(ValueError, match="pooling must be one of"):
        make_model(backbone=backbone, pooling="attention")


def test_band_statistics_are_timbre_that_the_rhythm_branch_hides():
    torch.manual_seed(0)
    model = make_model(backbone="tiny", band_stats=True, rhythm=True, timbre_dropout=0.5).train()
    joined = []
    model.backbone.project.register_forward_hook(lambda module, args, out: joined.append(args[0]))
    model.forward_features(torch.randn(400, 8000))
    timbre = joined[0][:, :4 * 4 + 4 * 4]  # mean-and-max pooled CNN vector, then the band statistics
    hidden = (timbre == 0).all(dim=1).float().mean()
    assert 0.4 < hidden < 0.6


def test_mixing_adds_a_partner_clip_and_unites_only_the_additive_labels():
    from tagging.lightning import TaggerModule, mix_clips

    torch.manual_seed(0)
    waves = torch.stack([torch.ones(100), 3 * torch.ones(100)])
    nan = float("nan")
    targets = {"instrument": torch.tensor([[1.0, 0.0, 0.0, nan], [0.0, 0.0, 1.0, 0.0]]),
               "genre": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    batch = {"wave": waves, "targets": targets, "track_id": ["a", "b"]}
    mixed = mix_clips(batch, 1.0, ["instrument"])  # two clips: each one's partner is the other
    gains = (mixed["wave"][:, 0] - waves[:, 0]) / waves.flip(0)[:, 0]
    assert ((gains >= 0.5) & (gains <= 1.0)).all()
    torch.testing.assert_close(mixed["wave"] - waves, gains[:, None] * waves.flip(0))
    union = torch.tensor([1.0, 0.0, 1.0, nan])  # present in either; absent in both; unknown and absent: unknown
    torch.testing.assert_close(mixed["targets"]["instrument"], torch.stack([union, union]), equal_nan=True)
    assert mixed["targets"]["genre"].isnan().all()
    assert torch.equal(batch["wave"], waves) and batch["targets"]["genre"][0, 0] == 1  # the input is left alone
    assert mix_clips(batch, 0.2, ["instrument"]) is batch  # no whole clip to mix
    with pytest.raises(ValueError, match="mix_groups"):
        TaggerModule(make_model(), mix_share=0.5, mix_groups=["graded"])
