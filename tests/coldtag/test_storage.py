"""Packages that say what made them, and saving that never destroys a file it did not write."""

import json
import shutil

import numpy as np
import pytest

from coldtag.storage import (
    PACKAGE_FILE,
    ProvenanceError,
    atomic_write,
    input_package,
    read_package,
    reference,
    replace_directory,
    write_json,
)
from tagging.audio import load_audio
from tagging.labels import LabelSpace, read_manifest
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger


@pytest.fixture(scope="module")
def raw_file(tiny_catalog):
    return read_manifest(tiny_catalog / "manifest.parquet")["audio_path"].iloc[0]


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "table.md"
    atomic_write(target, "old")
    with pytest.raises(TypeError):
        write_json(target, {"value": object()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]  # no partial file left behind
    write_json(target, {"auc": np.float32(0.5), "n": np.int64(3)})
    assert json.loads(target.read_text()) == {"auc": 0.5, "n": 3}


def test_a_package_copied_elsewhere_loads_and_tags_a_raw_file_as_the_original(tiny_tagger, raw_file, tmp_path):
    original = AudioTagger.from_pretrained(tiny_tagger.export)
    copy = tmp_path / "somewhere" / "else"
    shutil.copytree(tiny_tagger.export, copy)
    moved = AudioTagger.from_pretrained(copy)
    wave = load_audio(raw_file, moved.sample_rate)
    assert moved.annotate(wave) == original.annotate(wave)
    record = read_package(copy, "AudioTagger")
    assert record["sha256"] == original.package["sha256"]
    assert set(record["files"]) == {"model.safetensors", "config.json", "vocab.json", "thresholds.json"}
    assert {"torch", "torchaudio", "pytorch-lightning", "implicit"} <= set(record["software"])
    assert json.loads((copy / "config.json").read_text())["timbre_dropout"] == 0.3


def test_missing_or_mismatched_provenance_is_a_clear_error(tiny_tagger, tmp_path):
    no_record = tmp_path / "no-record"
    shutil.copytree(tiny_tagger.export, no_record)
    (no_record / PACKAGE_FILE).unlink()
    with pytest.raises(ProvenanceError, match=r"no package\.json"):
        AudioTagger.from_pretrained(no_record)
    changed = tmp_path / "changed"
    shutil.copytree(tiny_tagger.export, changed)
    thresholds = json.loads((changed / "thresholds.json").read_text())
    thresholds["genre"] = dict.fromkeys(thresholds["genre"], 0.01)
    (changed / "thresholds.json").write_text(json.dumps(thresholds))
    with pytest.raises(ProvenanceError, match=r"thresholds\.json: differs from the file that was saved"):
        AudioTagger.from_pretrained(changed)
    with pytest.raises(ProvenanceError, match="is a AudioTagger package, not a MultimodalTagger"):
        MultimodalTagger.from_pretrained(tiny_tagger.export)


def test_saving_into_a_folder_with_a_foreign_file_leaves_that_file(tiny_tagger, tmp_path):
    model = AudioTagger.from_pretrained(tiny_tagger.export)
    target = tmp_path / "models"
    target.mkdir()
    (target / "notes.txt").write_text("do not lose me")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        model.save_pretrained(target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    model.save_pretrained(target, overwrite=True)  # written beside it
    assert (target / "notes.txt").read_text() == "do not lose me"
    assert AudioTagger.from_pretrained(target).package["sha256"] == model.package["sha256"]


def test_saving_over_an_older_save_replaces_it_and_keeps_what_made_the_model(tiny_tagger, tmp_path):
    model = AudioTagger.from_pretrained(tiny_tagger.export)
    made = {key: model.package[key] for key in ("created", "software", "git")}
    model.save_pretrained(tmp_path / "model")
    model.set_thresholds("genre", model.thresholds("genre") * 0 + 0.25)
    record = model.save_pretrained(tmp_path / "model")  # same layout: replaced without a question
    assert json.loads((tmp_path / "model" / "thresholds.json").read_text())["genre"] == dict.fromkeys(
        model.labels.groups["genre"].labels, 0.25)
    assert record["sha256"] != read_package(tiny_tagger.export)["sha256"]  # the content changed
    again = AudioTagger.from_pretrained(tmp_path / "model")
    again.save_pretrained(tmp_path / "copy")  # unchanged content: same hash, the same record of its making
    assert read_package(tmp_path / "copy")["sha256"] == record["sha256"]
    assert {key: read_package(tmp_path / "copy")[key] for key in made} == {key: record[key] for key in made}


def test_replace_directory_refuses_to_destroy(tmp_path):
    staging = tmp_path / "staging"
    (staging / "sub").mkdir(parents=True)
    (staging / "sub" / "a.json").write_text("new")
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "a.json").write_text("old")
    (target / "sub" / "b.json").write_text("theirs")
    with pytest.raises(FileExistsError, match=r"sub/b\.json"):
        replace_directory(staging, target)
    assert (target / "sub" / "a.json").read_text() == "old"
    replace_directory(staging, target, overwrite=True)
    assert (target / "sub" / "a.json").read_text() == "new" and (target / "sub" / "b.json").read_text() == "theirs"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    (tmp_path / "again").mkdir()
    with pytest.raises(NotADirectoryError):
        replace_directory(tmp_path / "again", a_file)


def test_a_multimodal_package_carries_the_tagger_that_made_its_audio_input(tiny_tagger, tiny_catalog, tmp_path):
    tagger_dir = tmp_path / "tagger"
    shutil.copytree(tiny_tagger.export, tagger_dir)
    vocab = LabelSpace.from_json(tiny_catalog / "vocab.json").to_dict()
    model = MultimodalTagger(vocab, {"audio": 16, "lyrics": 384}, hidden=8)
    model.save_pretrained(tmp_path / "bundled", inputs={"audio": reference(tagger_dir, bundle=True)})
    model.save_pretrained(tmp_path / "referenced", inputs={"audio": reference(tagger_dir)})
    shutil.copytree(tmp_path / "bundled", tmp_path / "moved")
    shutil.rmtree(tagger_dir)  # the original tagger is gone
    moved = MultimodalTagger.from_pretrained(tmp_path / "moved")
    found = input_package(tmp_path / "moved", moved.package, "audio")
    assert found == tmp_path / "moved" / "inputs" / "audio"
    assert AudioTagger.from_pretrained(found).package["sha256"] == read_package(tiny_tagger.export)["sha256"]
    referenced = MultimodalTagger.from_pretrained(tmp_path / "referenced")
    with pytest.raises(ProvenanceError, match=r"neither bundled in it nor at .*tagger"):
        input_package(tmp_path / "referenced", referenced.package, "audio")
    with pytest.raises(ProvenanceError, match="records no package for its 'lyrics' input"):
        input_package(tmp_path / "moved", moved.package, "lyrics")
    # Saved again elsewhere, the bundled tagger comes along.
    moved.save_pretrained(tmp_path / "resaved")
    assert input_package(tmp_path / "resaved", read_package(tmp_path / "resaved"), "audio").is_dir()
