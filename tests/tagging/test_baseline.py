"""The log-mel baselines: the shape of their features and known answers on tones, clicks and pulses."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.io import wavfile

from tagging.evaluation.baseline import (
    FEATURES,
    ONSET_LAG_BINS,
    ONSET_LAG_RANGE,
    clip_features,
    evaluate,
    logmel_stats,
    main,
    mean_logmel,
    onset_autocorrelation,
)
from tagging.frontend import Frontend

SR = 16000
FRAME_RATE = SR / Frontend().hop_length


def _write(path, y: np.ndarray) -> str:
    wavfile.write(path, SR, (np.clip(y, -1, 1) * 32767).astype(np.int16))
    return str(path)


def _tone(hz: float, seconds: float = 4.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)


def _clicks(bpm: float, seconds: float = 8.0, rng=None) -> np.ndarray:
    """Short noise bursts every beat of `bpm`, over a faint noise floor."""
    rng = rng or np.random.default_rng(0)
    y = 0.001 * rng.normal(size=int(seconds * SR))
    burst = int(0.02 * SR)
    for start in np.arange(0.0, seconds, 60.0 / bpm):
        i = int(start * SR)
        y[i : i + burst] += 0.5 * rng.normal(size=min(burst, y.size - i))
    return y


def _lag_bin(seconds: float) -> int:
    edges = np.geomspace(*ONSET_LAG_RANGE, ONSET_LAG_BINS + 1)
    return int(np.searchsorted(edges, seconds) - 1)


def test_logmel_stats_shape_and_undecodable_rows(tmp_path):
    paths = [_write(tmp_path / "a.wav", _tone(440.0)), str(tmp_path / "missing.wav"),
             _write(tmp_path / "b.wav", _clicks(120.0, 4.0))]
    x = logmel_stats(paths)
    assert x.shape == (3, 2 * 96 + ONSET_LAG_BINS) and x.dtype == np.float32
    assert np.isnan(x[1]).all() and not np.isnan(x[[0, 2]]).any()
    # The mean half is the default baseline's feature, which stays what it was.
    np.testing.assert_allclose(x[[0, 2], :96], mean_logmel(paths)[[0, 2]], rtol=1e-5)
    np.testing.assert_array_equal(clip_features(paths[:1]), mean_logmel(paths[:1]))


def test_steady_tone_has_its_band_high_and_still(tmp_path):
    low, high = logmel_stats([_write(tmp_path / "low.wav", _tone(250.0)), _write(tmp_path / "high.wav", _tone(2000.0))])
    assert np.argmax(high[:96]) > np.argmax(low[:96]) + 10
    # A steady tone barely moves in its own band; a tone switched on and off twice a second does.
    gated = _tone(2000.0) * (np.arange(4 * SR) % (SR // 2) < SR // 4)
    (pulsing,) = logmel_stats([_write(tmp_path / "gated.wav", gated)])
    band = np.argmax(high[:96])
    assert high[96 + band] < 1.0 < 10.0 < pulsing[96 + band]


@pytest.mark.parametrize("bpm", [100.0, 120.0])
def test_onset_autocorrelation_peaks_at_the_beat(bpm):
    spec = Frontend()(torch.from_numpy(_clicks(bpm).astype(np.float32))[None])[0].numpy()  # (96, frames)
    acf = onset_autocorrelation(spec, FRAME_RATE)
    assert acf.shape == (ONSET_LAG_BINS,)
    beat, off_beat = _lag_bin(60.0 / bpm), _lag_bin(0.7 * 60.0 / bpm)
    assert acf[beat] > 0.5 and acf[off_beat] < 0.1
    assert np.argmax(acf[: _lag_bin(1.5 * 60.0 / bpm)]) == beat


def test_onset_autocorrelation_of_silence_is_zero():
    assert not onset_autocorrelation(np.full((96, 500), -100.0), FRAME_RATE).any()


def test_logmel_stats_hear_a_pulse_the_mean_spectrum_cannot(tmp_path):
    """Bursts every beat against the same noise at the same loudness, always on: the mean spectrum barely
    tells them apart, the onset autocorrelation and the spread over time do. Tempo is graded."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        bpm = float(rng.uniform(80.0, 160.0))
        pulsed = i % 2 == 0
        y = _clicks(bpm, 4.0, rng) if pulsed else rng.normal(size=4 * SR)
        y *= 0.05 / np.sqrt(np.mean(y**2))
        rows.append({"track_id": f"t{i}", "audio_path": _write(tmp_path / f"t{i}.wav", y),
                     "split": "test" if i % 4 in (0, 1) and i >= 24 else "train",
                     "texture": "pulsed" if pulsed else "steady", "tempo": bpm if pulsed else np.nan})
    pd.DataFrame(rows).to_parquet(tmp_path / "manifest.parquet")
    (tmp_path / "vocab.json").write_text(json.dumps({"groups": {
        "texture": {"type": "multilabel", "labels": ["pulsed", "steady"]},
        "graded": {"type": "regression", "labels": ["tempo"], "ranges": [[60.0, 200.0]]}}}))
    main(["--manifest", str(tmp_path / "manifest.parquet"), "--features", "logmel_stats",
          "--out", str(tmp_path / "out.json")])
    stats = json.loads((tmp_path / "out.json").read_text())
    assert stats["texture"]["per_label"]["pulsed"]["roc_auc"] == 1.0
    assert set(stats["graded"]["per_label"]) == {"tempo"}  # graded labels go through the ridge, as before
    assert evaluate(tmp_path / "manifest.parquet")["texture"]["roc_auc"] <= stats["texture"]["roc_auc"]


def test_unknown_features_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"features must be one of \('mean_logmel', 'logmel_stats'\), got 'mfcc'"):
        evaluate(tmp_path / "manifest.parquet", features="mfcc")
    assert FEATURES == ("mean_logmel", "logmel_stats")
