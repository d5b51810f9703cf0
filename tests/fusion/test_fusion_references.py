"""Reference rows of the ablation: ``python -m fusion references`` writes log-mel statistics, random features and
another tagger's tags of a catalog's tracks; ``python -m fusion ablation --references`` adds a row per source, which
the packaged pipeline never picks."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fusion.cli import main
from fusion.data import with_references
from fusion.references import random_features
from fusion.stages import best_content_row
from recsys import ColdStartSplit
from tagging.data.features import TrackFeatures, extract_features
from tagging.evaluation.baseline import logmel_stats
from tagging.labels import read_manifest
from tagging.models.tagger import AudioTagger

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


def test_references_join_the_features_row_for_row_by_track_id():
    """Track b is in the features but not the split, and the references lack it: it has them absent."""
    features = TrackFeatures(np.array(["a", "b", "c"]), {"audio": np.ones((3, 2), dtype=np.float32)},
                             {"audio": np.ones(3, dtype=bool)})
    references = TrackFeatures(np.array(["c", "a"]), {"reference/random": np.array([[3.0], [1.0]], dtype=np.float32)},
                               {"reference/random": np.array([True, False])},
                               sources={"reference/random": {"description": "Random features (1)"}})
    merged = with_references(features, references, "r.npz", ["a", "c"])
    assert merged.arrays["reference/random"].ravel().tolist() == [1.0, 0.0, 3.0]
    assert merged.present["reference/random"].tolist() == [False, False, True]
    assert merged.arrays["audio"] is features.arrays["audio"] and set(merged.sources) == {"reference/random"}
    with pytest.raises(ValueError, match=r"r.npz: no reference features for 1 track\(s\).*\['b'\]"):
        with_references(features, references, "r.npz", ["a", "b"])
    renamed = TrackFeatures(references.track_ids, {"random": references.arrays["reference/random"]},
                            {"random": references.present["reference/random"]},
                            sources={"random": {"description": "x"}})
    with pytest.raises(ValueError, match=r"r.npz: not reference features .*\['random'\]"):
        with_references(features, renamed, "r.npz", ["a"])


@pytest.fixture(scope="module")
def catalog_references(tiny_catalog, tmp_path_factory):
    """Log-mel statistics and 8 random features of every track of the tiny catalog."""
    out = tmp_path_factory.mktemp("catalog-references") / "references.npz"
    assert main(["references", "--manifest", str(tiny_catalog / "manifest.parquet"), "--logmel-stats", "--random", "8",
                 "--out", str(out)]) == 0
    return out


def ablation(tiny_catalog, tiny_inputs, out: Path, *extra: str) -> list[str]:
    """The ablation command line on the tiny catalog: late-fusion rows only, tiny and short."""
    return ["ablation", "--catalog", str(tiny_catalog), "--features", str(tiny_inputs / "features.npz"), "--recsys",
            str(tiny_inputs / "recsys"), "--genome", "attribute", "graded", "--skip-audio", "--set",
            "model.init_args.model.init_args.hidden=16", "--set", "trainer.max_epochs=2", "--resamples", "20",
            *extra, "--out", str(out)]


def stamps(rows: list[dict]) -> dict[str, int]:
    return {row["dir"]: (Path(row["dir"]) / "result.json").stat().st_mtime_ns for row in rows}


def test_references_add_a_row_each_after_the_content_rows_which_are_reused(tiny_catalog, tiny_inputs,
                                                                           catalog_references, tmp_path):
    out = tmp_path / "fusion"
    assert main(ablation(tiny_catalog, tiny_inputs, out)) == 0
    content = json.loads((out / "rows.json").read_text())
    made = stamps(content)

    assert main(ablation(tiny_catalog, tiny_inputs, out, "--references", str(catalog_references))) == 0
    rows = json.loads((out / "rows.json").read_text())
    assert [row["name"] for row in rows] == [*(row["name"] for row in content), "Log-mel statistics",
                                             "Random features (8)"]
    assert [row["inputs"] for row in rows[len(content):]] == [["reference/logmel-stats"], ["reference/random"]]
    table = (out / "table.md").read_text()
    assert "| Log-mel statistics |" in table and "| Random features (8) |" in table
    differences = pd.read_csv(out / "differences.csv")
    assert set(differences.loc[differences["row"] == "Random features (8)", "versus"]) == {"Log-mel statistics",
                                                                                         "popularity"}
    # Adding references retrains no content row: they read the features file they always did.
    assert stamps(rows[:len(content)]) == made

    merged = TrackFeatures.load(out / "features+references.npz")
    features, references = (TrackFeatures.load(p) for p in (tiny_inputs / "features.npz", catalog_references))
    assert set(merged.arrays) == set(features.arrays) | set(references.arrays)
    order = references.rows(merged.track_ids.tolist())
    np.testing.assert_array_equal(merged.arrays["reference/random"], references.arrays["reference/random"][order])
    unit = yaml.safe_load((Path(rows[-1]["dir"]) / "config.yaml").read_text())["data"]["init_args"]
    assert unit["features"] == str(out / "features+references.npz") and unit["inputs"] == ["reference/random"]

    # Again: the merged file is not rewritten (its bytes are in the rows' keys), so every row is reused.
    written, trained = (out / "features+references.npz").stat().st_mtime_ns, stamps(rows)
    assert main(ablation(tiny_catalog, tiny_inputs, out, "--references", str(catalog_references))) == 0
    assert (out / "features+references.npz").stat().st_mtime_ns == written and stamps(rows) == trained

    chosen = best_content_row(out).parent
    assert str(chosen) in {row["dir"] for row in content}


def test_the_packaged_pipeline_never_takes_a_reference_row_even_the_best_one(tmp_path):
    """A reference row of the lowest validation distance, and an annotated one below the content rows: neither."""
    rows = [("Audio", ["audio"], 0.5), ("MGP", ["annotated/genre"], 0.2),
            ("Random features", ["reference/random"], 0.1), ("Audio + MLG", ["audio", "scores/genre"], 0.4),
            ("Log-mel statistics", ["reference/logmel-stats"], 0.3)]
    (tmp_path / "rows.json").write_text(json.dumps([{"name": name, "inputs": inputs, "dir": name,
                                                     "val": {"cosine_distance": distance}}
                                                    for name, inputs, distance in rows]))
    assert best_content_row(tmp_path) == Path("Audio + MLG") / "model"


def test_a_reference_file_without_a_track_of_the_split_is_named(tiny_catalog, tiny_inputs, catalog_references,
                                                                tmp_path, capsys):
    split = ColdStartSplit.load(tiny_inputs / "recsys" / "coldstart.npz")
    cold = str(split.item_ids[split.items("cold_test")][0])
    full = TrackFeatures.load(catalog_references)
    keep = full.track_ids != cold
    partial = tmp_path / "partial.npz"
    TrackFeatures(full.track_ids[keep], {n: a[keep] for n, a in full.arrays.items()},
                  {n: m[keep] for n, m in full.present.items()}, full.errors[keep], full.sources).save(partial)
    out = tmp_path / "fusion"
    assert main(ablation(tiny_catalog, tiny_inputs, out, "--references", str(partial))) == 2
    err = capsys.readouterr().err
    assert f"{partial}: no reference features for 1 track(s) of the cold-start split, e.g. ['{cold}']" in err
    assert not (out / "units").exists()  # refused before any row trained
