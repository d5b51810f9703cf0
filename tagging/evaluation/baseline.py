"""The floor a tagger must clear: logistic regression on clip-level log-mel features.

Two feature sets (``--features``):

- ``mean_logmel`` (the default): each track's mean log-mel spectrum, 96 bands. It keeps timbre (which
  instruments, how bright, how noisy) and throws away time, so traits that live in time (meter, swing,
  tempo) should be near chance for it and well above for a CNN.
- ``logmel_stats``: the mean and the standard deviation over time of each of the 96 log-mel bands, plus a
  summary of the onset-strength autocorrelation (its maximum in each of `ONSET_LAG_BINS` log-spaced lag
  bins from 0.1 to 4 s), which hears periodicities such as the beat and the bar: ``(tracks, 2 * 96 + 24)``.
  The stronger yardstick of issue 15 (on realistic recordings it beat the CNN tagger on instruments).

    python -m tagging baseline --manifest data/demo/manifest.parquet --out runs/demo/baseline.json
    python -m tagging baseline --manifest DIR/manifest.parquet --features logmel_stats --out FILE.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tagging.audio import AudioDecodeError, load_audio
from tagging.frontend import Frontend
from tagging.labels import MULTILABEL, LabelSpace, nanmean, read_manifest

FEATURES = ("mean_logmel", "logmel_stats")
# Onset-autocorrelation lags summarised by logmel_stats: from a fast sixteenth note to a slow 4/4 bar.
ONSET_LAG_RANGE = (0.1, 4.0)  # seconds
ONSET_LAG_BINS = 24


def _per_clip(paths: list[str], width: int, summarise, sample_rate: int, n_mels: int) -> np.ndarray:
    """``(tracks, width)``: `summarise` of each clip's ``(n_mels, frames)`` log-mel spectrogram; NaN rows
    for files that cannot be decoded."""
    frontend = Frontend(sample_rate=sample_rate, n_mels=n_mels)
    features = np.full((len(paths), width), np.nan, dtype=np.float32)
    with torch.inference_mode():
        for row, path in enumerate(paths):
            try:
                wave = load_audio(path, sample_rate)
            except AudioDecodeError:
                continue
            features[row] = summarise(frontend(wave.unsqueeze(0))[0].numpy())
    return features


def mean_logmel(paths: list[str], sample_rate: int = 16000, n_mels: int = 96) -> np.ndarray:
    """``(tracks, n_mels)`` time-averaged log-mel spectra; NaN rows for files that cannot be decoded."""
    return _per_clip(paths, n_mels, lambda spec: spec.mean(axis=1), sample_rate, n_mels)


def logmel_stats(paths: list[str], sample_rate: int = 16000, n_mels: int = 96) -> np.ndarray:
    """``(tracks, 2 * n_mels + ONSET_LAG_BINS)``: per band the mean then the standard deviation over time
    of the log-mel spectrum, then `onset_autocorrelation`; NaN rows for files that cannot be decoded."""
    frame_rate = sample_rate / Frontend(sample_rate=sample_rate, n_mels=n_mels).hop_length

    def summarise(spec: np.ndarray) -> np.ndarray:
        return np.concatenate([spec.mean(axis=1), spec.std(axis=1), onset_autocorrelation(spec, frame_rate)])

    return _per_clip(paths, 2 * n_mels + ONSET_LAG_BINS, summarise, sample_rate, n_mels)


def onset_autocorrelation(spec: np.ndarray, frame_rate: float) -> np.ndarray:
    """``(n_mels, frames)`` log-mel in dB -> ``(ONSET_LAG_BINS,)``: the autocorrelation of the onset strength
    (the band-averaged rise of the log-mel from one frame to the next), normalised to 1 at lag 0 and
    unbiased (each lag divided by its overlap), its maximum within each log-spaced lag bin over
    `ONSET_LAG_RANGE` (a maximum, because a sharp beat peaks in one or two lags of a bin).

    A clip with beats every T seconds peaks in the bins holding T and its multiples. Bins with no lag
    shorter than half the clip are 0: longer lags rest on too few frames to mean anything.
    """
    onset = np.maximum(np.diff(spec, axis=1), 0.0).mean(axis=0)  # (frames - 1,)
    onset = onset - onset.mean()
    n = onset.size
    out = np.zeros(ONSET_LAG_BINS, dtype=np.float32)
    if n < 4 or not np.any(onset):
        return out
    spectrum = np.fft.rfft(onset, 2 * n)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:n] / (n - np.arange(n))  # unbiased
    acf = acf / acf[0]
    edges = np.geomspace(*ONSET_LAG_RANGE, ONSET_LAG_BINS + 1) * frame_rate  # in frames
    lags = np.arange(n // 2)
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        if lo >= lags.size:
            break
        inside = (lags >= lo) & (lags < hi)
        # The shortest bins can fall between two whole lags: read the autocorrelation at their centre.
        out[i] = acf[lags[inside]].max() if inside.any() else np.interp(math.sqrt(lo * hi), lags, acf[: lags.size])
    return out


def clip_features(paths: list[str], features: str = "mean_logmel") -> np.ndarray:
    """The named feature set (one of FEATURES) for each file, NaN rows for files that cannot be decoded."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    return (mean_logmel if features == "mean_logmel" else logmel_stats)(paths)


def evaluate(manifest: str | Path, vocab: str | Path | None = None, features: str = "mean_logmel") -> dict:
    """Fit on the ``train`` split, score the ``test`` split: macro and per-tag ROC-AUC / PR-AUC,
    Spearman correlation for regression labels. ``features`` names the clip features (FEATURES)."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    manifest = Path(manifest)
    labels = LabelSpace.from_json(vocab or manifest.parent / "vocab.json")
    frame = read_manifest(manifest)
    targets = labels.encode(frame, source=str(manifest))
    x = clip_features(frame["audio_path"].tolist(), features)
    usable = ~np.isnan(x).any(axis=1)
    train = usable & (frame["split"] == "train").to_numpy()
    test = usable & (frame["split"] == "test").to_numpy()
    results = {}
    for name, group in labels.groups.items():
        y = targets[name]
        per_label = {}
        for i, label in enumerate(group.labels):
            fit_rows = train & ~np.isnan(y[:, i])
            score_rows = test & ~np.isnan(y[:, i])
            if group.type == MULTILABEL:
                per_label[label] = _classify(x, y[:, i], fit_rows, score_rows)
            else:
                per_label[label] = _regress(x, y[:, i], fit_rows, score_rows)
        keys = ("roc_auc", "pr_auc") if group.type == MULTILABEL else ("spearman",)
        results[name] = {"per_label": per_label,
                         **{k: nanmean([v[k] for v in per_label.values()]) for k in keys}}
    return results


def predict(x: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, score_rows: np.ndarray, multilabel: bool) -> np.ndarray:
    """The baseline's scores for ``score_rows`` of one label, fitted on ``fit_rows``: the probability of
    a logistic regression (``multilabel``) or the value of a ridge regression, on standardised features."""
    if multilabel:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        return model.fit(x[fit_rows], y[fit_rows]).predict_proba(x[score_rows])[:, 1]
    return make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[fit_rows], y[fit_rows]).predict(x[score_rows])


def _classify(x: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, score_rows: np.ndarray) -> dict:
    nan = {"roc_auc": math.nan, "pr_auc": math.nan}
    if len(np.unique(y[fit_rows])) < 2 or len(np.unique(y[score_rows])) < 2:
        return nan
    p = predict(x, y, fit_rows, score_rows, multilabel=True)
    return {"roc_auc": float(roc_auc_score(y[score_rows], p)),
            "pr_auc": float(average_precision_score(y[score_rows], p))}


def _regress(x: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, score_rows: np.ndarray) -> dict:
    if fit_rows.sum() < 3 or score_rows.sum() < 3:
        return {"spearman": math.nan}
    prediction = predict(x, y, fit_rows, score_rows, multilabel=False)
    return {"spearman": float(spearmanr(prediction, y[score_rows]).statistic)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tagging baseline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--vocab", default=None)
    parser.add_argument("--features", choices=FEATURES, default="mean_logmel",
                        help="clip features: the mean log-mel spectrum (default), or its mean and standard "
                             "deviation with an onset-autocorrelation summary")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = evaluate(args.manifest, args.vocab, args.features)
    for name, result in results.items():
        summary = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k != "per_label")
        print(f"{name}: {summary}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
