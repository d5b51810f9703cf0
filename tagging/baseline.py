"""The floor a tagger must clear: logistic regression on each track's mean log-mel spectrum.

A mean spectrum keeps timbre (which instruments, how bright, how noisy) and throws away time, so
traits that live in time (meter, swing, tempo) should be near chance for it and well above for a CNN.

    python -m tagging.baseline --manifest data/demo/manifest.parquet --out runs/demo/baseline.json
"""

from __future__ import annotations

import argparse
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


def mean_logmel(paths: list[str], sample_rate: int = 16000, n_mels: int = 96) -> np.ndarray:
    """``(tracks, n_mels)`` time-averaged log-mel spectra; NaN rows for files that cannot be decoded."""
    frontend = Frontend(sample_rate=sample_rate, n_mels=n_mels)
    features = np.full((len(paths), n_mels), np.nan, dtype=np.float32)
    with torch.inference_mode():
        for row, path in enumerate(paths):
            try:
                wave = load_audio(path, sample_rate)
            except AudioDecodeError:
                continue
            features[row] = frontend(wave.unsqueeze(0))[0].mean(dim=1).numpy()
    return features


def evaluate(manifest: str | Path, vocab: str | Path | None = None) -> dict:
    """Fit on the ``train`` split, score the ``test`` split: macro and per-tag ROC-AUC / PR-AUC,
    Spearman correlation for regression labels."""
    manifest = Path(manifest)
    labels = LabelSpace.from_json(vocab or manifest.parent / "vocab.json")
    frame = read_manifest(manifest)
    targets = labels.encode(frame, source=str(manifest))
    features = mean_logmel(frame["audio_path"].tolist())
    usable = ~np.isnan(features).any(axis=1)
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
                per_label[label] = _classify(features, y[:, i], fit_rows, score_rows)
            else:
                per_label[label] = _regress(features, y[:, i], fit_rows, score_rows)
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--vocab", default=None)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = evaluate(args.manifest, args.vocab)
    for name, result in results.items():
        summary = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k != "per_label")
        print(f"{name}: {summary}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
