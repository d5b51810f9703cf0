"""Reference rows of the ablation: ``python -m fusion references`` writes log-mel statistics, random features and
another tagger's tags of a catalog's tracks; ``python -m fusion ablation --references`` adds a row per source, which
the packaged pipeline never picks."""

import numpy as np
import pandas as pd
import pytest

from fusion.cli import main
from fusion.references import random_features
from tagging.baseline import logmel_stats
from tagging.features import TrackFeatures, extract_features
from tagging.labels import read_manifest
from tagging.models import AudioTagger

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_manifest(tiny_catalog, tmp_path_factory):
    """Five tracks of the tiny catalog and a sixth whose audio file is not audio, as a CSV of absolute paths."""
    root = tmp_path_factory.mktemp("references")
    toy = read_manifest(tiny_catalog / "manifest.parquet").iloc[:5]
    broken = root / "broken.wav"
    broken.write_bytes(b"not a wave file" * 100)
    frame = pd.DataFrame({"track_id": [*toy["track_id"], "broken"], "audio_path": [*toy["audio_path"], str(broken)]})
    frame.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_the_command_writes_each_source_with_its_mask_and_description(small_manifest, tiny_inputs, tmp_path, capsys):
    out = tmp_path / "references.npz"
    tagger = tiny_inputs / "tagger"
    assert main(["references", "--manifest", str(small_manifest), "--logmel-stats", "--random", "8", "--tagger",
                 f"tiny={tagger}", "--tagger", "musicnn-distil-s", "--seed", "3", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    features = TrackFeatures.load(out)
    assert features.track_ids.tolist()[-1] == "broken"
    names = ["reference/logmel-stats", "reference/random", "reference/tiny", "reference/musicnn-distil-s"]
    assert list(features.arrays) == list(features.present) == names
    assert {n: s["description"] for n, s in features.sources.items()} == {
        "reference/logmel-stats": "Log-mel statistics", "reference/random": "Random features (8)",
        "reference/tiny": "tiny tags", "reference/musicnn-distil-s": "musicnn-distil-s tags"}

    # The decodable tracks have their values, the broken one zeros and is absent, except for the random features.
    paths = read_manifest(small_manifest)["audio_path"].tolist()
    np.testing.assert_allclose(features.arrays["reference/logmel-stats"][:5], logmel_stats(paths[:5]), rtol=1e-6)
    for name in names:
        expected = [True] * 5 + [name == "reference/random"]
        assert features.present[name].tolist() == expected, name
        assert not features.arrays[name][~features.present[name]].any()
    np.testing.assert_array_equal(features.arrays["reference/random"],
                                  random_features(features.track_ids, 8, seed=3))
    own = extract_features(small_manifest, AudioTagger.from_pretrained(tagger))
    groups = AudioTagger.from_pretrained(tagger).labels.groups
    np.testing.assert_allclose(features.arrays["reference/tiny"],
                               np.concatenate([own.arrays[f"scores/{g}"] for g in groups], axis=1), atol=1e-6)
    assert features.arrays["reference/musicnn-distil-s"].shape == (6, 100)  # its 50 MTT and 50 MSD tags
    assert features.sources["reference/tiny"]["groups"] == {g: len(spec) for g, spec in groups.items()}
    assert "broken.wav" in features.errors[-1] and features.errors[:5].tolist() == [""] * 5


def test_random_features_of_a_track_are_the_same_whatever_the_manifest_order(small_manifest, tmp_path):
    frame = pd.read_csv(small_manifest)
    frame.iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    for name in ("manifest.csv", "reversed.csv"):
        source = small_manifest if name == "manifest.csv" else tmp_path / name
        assert main(["references", "--manifest", str(source), "--random", "4", "--out",
                     str(tmp_path / f"{name}.npz")]) == 0
    forward, backward = (TrackFeatures.load(tmp_path / f"{name}.npz") for name in ("manifest.csv", "reversed.csv"))
    assert backward.track_ids.tolist() == forward.track_ids.tolist()[::-1]
    np.testing.assert_array_equal(backward.arrays["reference/random"], forward.arrays["reference/random"][::-1])
    # Another seed, another draw; two tracks, two vectors.
    values = forward.arrays["reference/random"]
    assert not np.allclose(values, random_features(forward.track_ids, 4, seed=1))
    assert not np.allclose(values[0], values[1])


def test_a_bad_argument_is_named_in_one_line(small_manifest, tiny_inputs, tmp_path, capsys):
    out = ["--out", str(tmp_path / "references.npz")]
    cases = [(["--manifest", str(tmp_path / "nope.csv"), "--random", "4"], "--manifest"),
             (["--manifest", str(small_manifest), "--tagger", "no-such-tagger"], "--tagger no-such-tagger"),
             (["--manifest", str(small_manifest), "--tagger", f"random={tiny_inputs / 'tagger'}"],
              "the name 'random'"),
             (["--manifest", str(small_manifest)], "no reference source chosen"),
             (["--manifest", str(small_manifest), "--random", "0"], "--random 0")]
    for args, message in cases:
        assert main(["references", *args, *out]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("python -m fusion references: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "references.npz").exists()
