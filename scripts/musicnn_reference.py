"""Tag probabilities of the musicnn wheel's own TensorFlow graph on a synthesized clip, for
tests/tagging/test_pretrained.py's equality test (which needs no TensorFlow: it reads the numbers this writes).

Runs in a throwaway environment with TensorFlow, never in CI:

    python3.11 -m venv /tmp/tfvenv
    uv pip install --python /tmp/tfvenv/bin/python tensorflow-cpu==2.15.1 librosa==0.10.2.post1 soundfile "numpy<2"
    uv pip install --python /tmp/tfvenv/bin/python --no-deps musicnn==0.1.0
    /tmp/tfvenv/bin/python scripts/musicnn_reference.py --out tests/reference/musicnn_reference.json

It calls ``musicnn.extractor.extractor`` unchanged but for one librosa default: librosa 0.10 pads the
first and last STFT frames with zeros where the librosa of 2019 (0.6 and 0.7, which the wheel was made with)
reflected the signal; the script asks for ``pad_mode="reflect"``, the behaviour the models were trained on.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
SECONDS = 15.0
SEED = 24
MODELS = ("MTT_musicnn", "MTT_vgg", "MSD_musicnn", "MSD_vgg")


def reference_signal(seconds: float = SECONDS, seed: int = SEED) -> np.ndarray:
    """A deterministic clip at 16 kHz, float32 in [-1, 1]: a bass line and decaying chords of harmonic
    tones, a noise snare and a kick on a 120 BPM grid, and a little hiss, so that every band has energy."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = 0.002 * rng.standard_normal(n)
    beat = SAMPLE_RATE // 2
    for index, start in enumerate(range(0, n, beat)):
        length = min(beat, n - start)
        local = np.arange(length) / SAMPLE_RATE
        root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1.0, 1.25, 1.5):
            for harmonic in range(1, 6):
                f = root * 2 * ratio * harmonic
                if f < SAMPLE_RATE / 2:
                    out[start:start + length] += (0.06 / harmonic) * np.sin(2 * np.pi * f * local) * np.exp(-3 * local)
        out[start:start + length] += 0.15 * np.sin(2 * np.pi * root / 2 * local)
        if index % 2:
            out[start:start + length] += 0.2 * rng.standard_normal(length) * np.exp(-25 * local)
        else:
            out[start:start + length] += 0.4 * np.sin(2 * np.pi * 55 * local * np.exp(-8 * local)) * np.exp(-12 * local)
    out += 0.02 * np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * 0.25 * t) > 0)
    return (out / np.abs(out).max() * 0.8).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()

    import librosa
    import musicnn
    import soundfile
    import tensorflow as tf
    from musicnn import extractor

    librosa.feature.melspectrogram = functools.partial(librosa.feature.melspectrogram, pad_mode="reflect")
    wave = reference_signal()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.wav"
        soundfile.write(path, wave, SAMPLE_RATE, subtype="FLOAT")  # float32 WAV: librosa reads the exact samples
        for model in MODELS:
            taggram, labels = extractor.extractor(str(path), model=model, extract_features=False)
            results[model] = {"labels": list(labels), "patch_probabilities": taggram.astype(float).tolist(),
                              "track_probabilities": taggram.mean(axis=0).astype(float).tolist()}
    from importlib import metadata
    record = {
        "what": "musicnn 0.1.0's TensorFlow graph on scripts/musicnn_reference.py's reference_signal()",
        "signal": {"seconds": SECONDS, "seed": SEED, "sample_rate": SAMPLE_RATE},
        "pad_mode": "reflect",
        "versions": {"musicnn": metadata.version("musicnn"), "tensorflow": tf.__version__,
                     "librosa": librosa.__version__, "numpy": np.__version__},
        "musicnn_path": str(Path(musicnn.__file__).parent),
        "models": results,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
