"""The chain and ``coldtag coldstart`` with a packaged tagger as the attribute source, on a catalog with audio and
plays but no tags: nothing is trained but the fusion rows, no label is read, and the pipeline explains its
similar tracks in the tagger's own words."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from annotation.cli import cli_main as annotate_main
from annotation.cli import main as coldtag_main
from annotation.records import read_annotations
from coldtag.storage import read_package
from fusion.chain import ablation_vocabulary, attribute_groups, write_tagger_config
from fusion.cli import main
from fusion.data import catalog_sources
from fusion.pipeline import ColdStartPipeline
from recsys import ColdStartSplit
from tagging.data.features import TrackFeatures
from tagging.labels import LabelSpace, read_manifest
from tagging.models.tagger import AudioTagger
from train import cli_main as train_main

pytestmark = pytest.mark.usefixtures("one_thread")

# The tagger's vocabulary is none of the catalog's: the rows and explanations must come from it. Genre is
# listed last, so the ablation's genre row is found by name, not by place.
VOCAB = {"groups": {"instrument": {"type": "multilabel", "labels": ["banjo", "synth", "kazoo"]},
                    "voice": {"type": "multilabel", "labels": ["sung", "spoken"]},
                    "genre": {"type": "multilabel", "labels": ["polka", "drone"]}}}
POISON = "§ a label column, read, would fail §"


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """An untrained tiny tagger whose thresholds make its tags known: every track is banjo and polka, none is
    synth or drone; the other labels fall as its random weights give them."""
    torch.manual_seed(0)
    model = AudioTagger(VOCAB, backbone="tiny", width=4, embedding_dim=8, sample_rate=8000, n_fft=256,
                        hop_length=128, n_mels=32, chunk_seconds=1.0, eval_chunks=2).eval()
    model.set_thresholds("instrument", torch.tensor([0.0, 1.01, 0.5]))
    model.set_thresholds("genre", torch.tensor([0.0, 1.01]))
    path = tmp_path_factory.mktemp("pretrained") / "tagger"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def catalog(tiny_catalog, tmp_path_factory):
    """The tiny catalog as audio and plays only: a CSV manifest without a vocabulary, whose columns named after
    the tagger's groups hold what no vocabulary can read; and random reference features of its tracks."""
    root = tmp_path_factory.mktemp("untagged")
    toy = pd.read_parquet(tiny_catalog / "manifest.parquet")
    manifest = pd.DataFrame({"track_id": toy["track_id"],
                             "audio_path": [str(tiny_catalog / p) for p in toy["audio_path"]]})
    for group in VOCAB["groups"]:
        manifest[group] = POISON
    manifest.to_csv(root / "manifest.csv", index=False)
    pd.read_parquet(tiny_catalog / "plays.parquet").to_csv(root / "plays.csv", index=False)
    assert main(["references", "--manifest", str(root / "manifest.csv"), "--random", "4", "--out",
                 str(root / "references.npz")]) == 0
    return root


def chain_args(catalog, tagger, out) -> list[str]:
    return ["--manifest", str(catalog / "manifest.csv"), "--plays", str(catalog / "plays.csv"), "--user-col",
            "user_id", "--item-col", "track_id", "--count-col", "plays", "--cold-fraction", "0.3", "--tagger",
            str(tagger), "--no-lyrics", "--no-cover", "--skip-audio", "--set", "trainer.max_epochs=2",
            "--resamples", "20", "--references", str(catalog / "references.npz"), "--out", str(out)]


def refuse_labels(*args, **kwargs):
    raise AssertionError("a label was read")


@pytest.fixture(scope="module")
def run(catalog, tagger, tmp_path_factory):
    """``python -m fusion chain --tagger`` with reading labels made to fail."""
    out = tmp_path_factory.mktemp("chain") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LabelSpace, "encode", refuse_labels)
        assert main(["chain", *chain_args(catalog, tagger, out)]) == 0
    return out


def test_the_chain_reads_no_label_and_its_rows_are_the_taggers_groups(run, catalog, tagger, monkeypatch):
    table = (run / "fusion" / "table.md").read_text()
    for row in ("Audio (tagger embedding)", "MLG (predicted instrument, voice)", "Audio + MLG",
                "Audio + MLG + genre", "Random features (4)", "oracle"):
        assert f"| {row} |" in table
    assert "MGP" not in table  # nothing annotated: no annotated row
    rows = json.loads((run / "fusion" / "rows.json").read_text())
    assert not any(name.startswith("annotated/") for row in rows for name in row["inputs"])
    # The tagger heard none of the catalog: every warm track with plays is the fusion stage's.
    split = ColdStartSplit.load(run / "recsys" / "coldstart.npz")
    assert {row["training_items"] for row in rows} == {int((np.linalg.norm(
        split.item_factors[split.items("warm")], axis=1) > 0).sum())}
    assert not (run / "tagger").exists() and not (run / "tagger.yaml").exists()
    dealt = pd.read_parquet(run / "manifest.parquet")
    assert list(dealt.columns) == ["track_id", "audio_path", "fusion_split"]
    assert list(json.loads((run / "vocab.json").read_text())["groups"]) == ["instrument", "voice", "genre"]
    features = TrackFeatures.load(run / "features.npz")
    assert features.sources["audio"]["sha256"] == read_package(tagger)["sha256"]

    # The check can fail: the original manifest under the tagger's vocabulary is read as labels.
    monkeypatch.setattr(LabelSpace, "encode", refuse_labels)
    with pytest.raises(AssertionError, match="a label was read"):
        catalog_sources(features, read_manifest(catalog / "manifest.csv"), LabelSpace.from_dict(VOCAB),
                        features.track_ids)


@pytest.fixture(scope="module")
def packaged(run, catalog, tagger):
    """``coldtag coldstart`` on the same catalog and folder: the chain's stages are done, so it only packages."""
    made = (run / "features.npz").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exit_code:
        coldtag_main(["coldstart", *chain_args(catalog, tagger, run)])
    assert exit_code.value.code == 0
    assert (run / "features.npz").stat().st_mtime_ns == made
    return run / "pipeline"


def test_coldtag_coldstart_packages_a_pipeline_that_explains_in_the_taggers_tags(packaged, run, catalog, tagger):
    pipeline = ColdStartPipeline.from_pretrained(packaged)
    assert pipeline.tagger.package["sha256"] == read_package(tagger)["sha256"]
    assert "reference/random" not in pipeline.fusion.inputs  # the chain's reference row is never packaged
    split = ColdStartSplit.load(run / "recsys" / "coldstart.npz")
    cold = split.item_ids[split.items("cold_test")][0]
    audio = read_manifest(catalog / "manifest.csv").set_index("track_id").loc[cold, "audio_path"]
    record = pipeline(audio=audio)
    assert set(record["tags"]) == {"instrument", "voice", "genre"}
    mine = [t for group in ("instrument", "voice", "genre") for t in record["tags"][group]["tags"]]
    assert {"banjo", "polka"} <= set(mine) and not {"synth", "drone"} & set(mine)

    features = TrackFeatures.load(run / "features.npz")
    rows = dict(zip(features.track_ids.tolist(), range(len(features)), strict=True))
    thresholds = {g: pipeline.tagger.thresholds(g).numpy() for g in VOCAB["groups"]}
    assert record["similar_tracks"]
    for similar in record["similar_tracks"]:
        row = rows[similar["track_id"]]
        theirs = {label for g, spec in VOCAB["groups"].items() for label, p, t in
                  zip(spec["labels"], features.arrays[f"scores/{g}"][row], thresholds[g], strict=True) if p >= t}
        assert similar["shared_tags"] == [t for t in mine if t in theirs]
        assert similar["why"] == f"both tagged {', '.join(similar['shared_tags'])}"
        assert {"banjo", "polka"} <= set(similar["shared_tags"])  # every track has them: always shared


def test_coldtag_annotate_with_the_pipeline_records_why_each_similar_track_is_there(packaged, tiny_catalog,
                                                                                      tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for path in sorted((tiny_catalog / "audio").rglob("*.*"))[:2]:
        (uploads / path.name).write_bytes(path.read_bytes())
    assert annotate_main([str(uploads), "--model", str(packaged), "--out", str(tmp_path / "out"), "--workers", "0",
                          "--no-progress"]) == 0
    records = read_annotations(tmp_path / "out").to_pylist()
    assert len(records) == 2
    for record in records:
        assert "banjo" in record["instrument"]["tags"] and "synth" not in record["instrument"]["tags"]
        assert record["similar_tracks"]
        for similar in record["similar_tracks"]:
            assert {"banjo", "polka"} <= set(similar["shared_tags"]) and similar["why"].startswith("both tagged")


def test_fine_tune_trains_the_chains_tagger_from_the_package_on_the_catalogs_labels(tiny_catalog, tagger,
                                                                                    tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    read_manifest(tiny_catalog / "manifest.parquet").to_parquet(out / "manifest.parquet")  # absolute paths
    (out / "vocab.json").write_text((tiny_catalog / "vocab.json").read_text())
    config = write_tagger_config(Path("configs/tagger_test.yaml"), out, 1, pretrained=tagger)
    train_main(["fit", "--config", str(config)])
    made = AudioTagger.from_pretrained(out / "tagger" / "model")
    assert list(made.labels.groups) == list(json.loads((tiny_catalog / "vocab.json").read_text())["groups"])
    assert made.embedding_dim == 8  # the package's network, not the config's (16)
    assert read_package(out / "tagger" / "model")["inputs"]["pretrained"]["sha256"] == read_package(tagger)["sha256"]


def test_a_tagger_that_is_no_package_and_options_for_training_are_refused_by_name(catalog, tagger, tmp_path,
                                                                                    capsys):
    base = chain_args(catalog, tagger, tmp_path / "run")
    missing = [*base, "--tagger", str(tmp_path / "no-tagger")]  # the last --tagger wins
    assert main(["chain", *missing]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m fusion chain: --tagger ") and "no-tagger" in err and "\n" not in err

    assert main(["chain", *base, "--tagger-max-epochs", "3", "--tagger-share", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "--tagger-max-epochs, --tagger-share" in err and "--fine-tune" in err

    assert main(["chain", *[a for a in base if a not in ("--tagger", str(tagger))], "--fine-tune"]) == 2
    assert "--fine-tune" in capsys.readouterr().err

    assert main(["chain", *base, "--genome", "mood"]) == 2
    err = capsys.readouterr().err
    assert "--genome mood" in err and "['instrument', 'voice', 'genre']" in err
    assert not (tmp_path / "run" / "recsys").exists()  # refused before any stage ran

    (tmp_path / "run" / "tagger").mkdir(parents=True)  # a chain that trained its own tagger wrote here
    assert main(["chain", *base]) == 2
    assert "holds a chain that trained its own tagger" in capsys.readouterr().err


def test_a_pretrained_name_is_a_tagger_and_its_genre_is_the_genre_row(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLDTAG_HOME", str(tmp_path / "home"))
    # Refused for --tagger-config only once musicnn-mtt resolved to a package (converted from the wheel).
    assert main(["chain", "--manifest", "m.csv", "--plays", "p.csv", "--tagger", "musicnn-mtt", "--tagger-config",
                 "configs/tagger_test.yaml", "--cold-fraction", "0.3", "--out", str(tmp_path / "run")]) == 2
    assert "--tagger musicnn-mtt is used as it is, so --tagger-config" in capsys.readouterr().err
    package = tmp_path / "home" / "models" / "musicnn-mtt"
    vocab = AudioTagger.from_pretrained(package).labels.to_dict()
    genome = attribute_groups(vocab)
    assert genome == ["instrument", "mood", "voice", "other"]
    assert list(ablation_vocabulary(vocab, genome, "musicnn-mtt")["groups"]) == [*genome, "genre"]
