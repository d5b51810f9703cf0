"""Students distilled from the pretrained taggers: the distillation itself, its augmentations, the agreement
and threshold rules, and the shipped students by name (needs the musicnn wheel, as tests/tagging/test_pretrained.py)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchcodec.encoders import AudioEncoder

from annotation.cli import cli_main
from annotation.cli import main as coldtag
from annotation.records import read_annotations
from annotation.review.run import load_model_info
from coldtag.storage import read_package
from scripts.musicnn_reference import SAMPLE_RATE, reference_signal
from tagging.models.musicnn import MusiCNN
from tagging.models.tagger import AudioTagger
from tagging.pretrained.agreement import (
    decided_auc,
    expected_share_thresholds,
    spearman_per_tag,
    top_k_overlap,
    varying_tags,
)
from tagging.pretrained.convert import CHUNK_SAMPLES, known_names, resolve_model, shipped_thresholds, student_names
from tagging.pretrained.distil import (
    Augment,
    DistilChunks,
    DistilModule,
    TeacherTrack,
    cached_logits,
    distil,
    pruned_student,
    reencode,
    student_vocab,
    taught_groups,
)
from tagging.pretrained.distil import main as distil_main
from tagging.pretrained.prune import kept_filters, prune_musicnn


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("COLDTAG_HOME", str(tmp_path_factory.getbasetemp() / "coldtag-home"))


def _write(path: Path, wave: torch.Tensor, rate: int) -> None:
    AudioEncoder(wave.unsqueeze(0), sample_rate=rate).to_file(str(path))


def _clips(folder: Path) -> dict[str, torch.Tensor]:
    """Eight unlabelled 3-s clips that musicnn tells apart, and a file that is not audio."""
    folder.mkdir()
    t = torch.arange(CHUNK_SAMPLES) / SAMPLE_RATE
    generator = torch.Generator().manual_seed(0)
    clips = {f"tone{f}.wav": 0.5 * torch.sin(2 * math.pi * f * t) for f in (110, 440, 1760)}
    clips["chord.wav"] = sum(0.2 * torch.sin(2 * math.pi * f * t) for f in (261.6, 329.6, 392.0))
    clips["noise.wav"] = 0.3 * torch.randn(CHUNK_SAMPLES, generator=generator)
    clips["clicks.wav"] = (torch.arange(CHUNK_SAMPLES) % 4000 < 200) * 0.5 * torch.randn(CHUNK_SAMPLES,
                                                                                           generator=generator)
    clips["music.wav"] = torch.from_numpy(reference_signal())[:CHUNK_SAMPLES]
    clips["music2.wav"] = torch.from_numpy(reference_signal())[-CHUNK_SAMPLES:]
    for name, wave in clips.items():
        _write(folder / name, wave.float(), SAMPLE_RATE)
    (folder / "broken.wav").write_bytes(b"not audio")
    return clips


@pytest.mark.slow
def test_distillation_on_a_tiny_folder_reduces_the_distillation_loss(tmp_path):
    """A tiny student of both musicnn taggers at once, trained on their logits for eight clips (all in one
    batch, so its batch norm's running statistics are those of the clips): its loss ends below half the
    untrained student's and below half that of predicting each tag's mean logit, so it learnt what differs
    between clips, not only base rates (measured: 1.47 against 74.4 untrained and 4.29 for the means). The
    broken file is left out; the student has both vocabularies as prefixed groups and names both teachers."""
    folder = tmp_path / "unlabelled"
    clips = _clips(folder)
    student = {"backbone": "tiny", "width": 8, "embedding_dim": 32, "n_mels": 32, "dropout": 0.0}
    cache = tmp_path / "cache"
    torch.manual_seed(0)
    still = Augment(codec_share=0.0, gain_db=(0.0, 0.0), tilt_share=0.0, crop_share=0.0)
    trained = distil(["musicnn-mtt", "musicnn-msd"], tmp_path / "student", audio=folder, student=student,
                     epochs=150, batch_size=8, lr=1e-2, codecs=(), augment=still, cache=cache)
    teachers = [AudioTagger.from_pretrained(resolve_model(n)) for n in ("musicnn-mtt", "musicnn-msd")]
    waves = torch.stack([torch.nn.functional.pad(c, (0, CHUNK_SAMPLES - len(c))) for c in clips.values()]).float()
    targets = {}
    for prefix, teacher in zip(("mtt", "msd"), teachers, strict=True):
        with torch.no_grad():
            for group, value in teacher(waves).items():
                targets[f"{prefix}_{group}"] = value
    assert set(trained.labels.groups) == set(targets)
    torch.manual_seed(0)
    untrained = AudioTagger(**{**{k: v for k, v in trained.config.items() if k != "backbone"}, "backbone": "tiny"})
    loss = DistilModule(trained).loss
    with torch.no_grad():
        before = loss(untrained.eval()(waves), targets)
        after = loss(trained.eval()(waves), targets)
    constant = loss({g: v.mean(dim=0).expand_as(v) for g, v in targets.items()}, targets)
    assert after < 0.5 * before and after < 0.5 * constant, (float(before), float(after), float(constant))
    cached = list((cache / "audio").iterdir())
    assert len(cached) == len(clips)  # the broken file is not among them
    record = read_package(tmp_path / "student", "AudioTagger")
    assert record["inputs"]["teacher_mtt"]["name"] == "musicnn-mtt"
    assert record["inputs"]["teacher_msd"]["converted_from"]["wheel"] == "musicnn==0.1.0"
    assert record["inputs"]["teacher_msd"]["converted_from"]["license"] == "ISC"
    assert taught_groups(AudioTagger.from_pretrained(tmp_path / "student"), "musicnn-msd")["genre"] == "msd_genre"


def test_a_folder_it_cannot_learn_from_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"--audio .*nowhere: not a folder"):
        distil(["vgg-mtt"], tmp_path / "student", audio=tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match=r"no training file could be read"):
        distil(["vgg-mtt"], tmp_path / "student", audio=tmp_path / "broken", cache=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"\['sample_rate'\] are the teacher's"):
        distil(["vgg-mtt"], tmp_path / "student", audio=tmp_path / "broken", student={"sample_rate": 8000})
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio_path,split\nx.wav,test\n")
    with pytest.raises(ValueError, match=r"m.csv: no track of split 'train'"):
        distil(["vgg-mtt"], tmp_path / "student", manifest=manifest)


def test_a_reencoded_chunk_keeps_its_length_and_its_pitch():
    """A 440 Hz tone through MP3 and Opus at the training bit rates: as long as before, its strongest
    frequency still 440 Hz (within one FFT bin), and changed (a codec that passed samples through would not
    augment anything)."""
    t = torch.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    tone = 0.5 * torch.sin(2 * math.pi * 440 * t)
    for codec in ("mp3", "opus"):
        out = reencode(tone, SAMPLE_RATE, codec)
        assert out.shape == tone.shape
        peak = torch.fft.rfft(out).abs().argmax().item() * SAMPLE_RATE / len(out)
        assert abs(peak - 440) <= SAMPLE_RATE / len(out), (codec, peak)
        assert (out - tone).abs().max() > 1e-3


def test_a_tilt_of_six_db_per_octave_doubles_the_amplitude_an_octave_up():
    augment = Augment()
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    for freq, gain in ((1000, 1.0), (2000, 10 ** (6 / 20)), (500, 10 ** (-6 / 20))):
        wave = torch.sin(2 * math.pi * freq * t)
        out = augment.tilt(wave, SAMPLE_RATE, 6.0)
        assert out.abs().max().item() == pytest.approx(gain, rel=0.01)


def test_training_chunks_are_the_teachers_grid_and_augmentation_leaves_targets_as_they_were():
    waves = {"clean": torch.arange(-5, 5, dtype=torch.int16) * 3000, "mp3": torch.zeros(10, dtype=torch.int16)}
    track = TeacherTrack(waves, torch.tensor([0, 6]), {"g": torch.tensor([[1.0, 2.0], [3.0, 4.0]])})
    plain = DistilChunks([track], chunk=4, sample_rate=8)
    assert len(plain) == 2
    assert torch.equal(plain[1]["wave"], waves["clean"][6:].float() / 32767)  # the last chunk, int16 to float
    assert torch.equal(plain[1]["targets"]["g"], torch.tensor([3.0, 4.0]))
    noisy = DistilChunks([track], chunk=4, sample_rate=8, augment=Augment(codec_share=1.0, crop_share=0.0,
                                                                            tilt_share=0.0))
    assert torch.equal(noisy[0]["wave"], torch.zeros(4))  # the re-encoded copy, whatever the gain
    assert torch.equal(noisy[0]["targets"]["g"], torch.tensor([1.0, 2.0]))


def test_the_teachers_logits_are_cached_per_package_and_file(tmp_path):
    teacher = AudioTagger.from_pretrained(resolve_model("vgg-mtt"))
    wave = torch.from_numpy(reference_signal())[:2 * CHUNK_SAMPLES + 100]
    path = tmp_path / "clip.wav"
    path.write_bytes(b"x")
    first = cached_logits(teacher, wave, str(path), 60.0, tmp_path / "cache")
    last = len(wave) - CHUNK_SAMPLES  # three chunks cover it, evenly spread from the first sample to the last
    assert first["starts"].tolist() == [0, round(last / 2), last]
    with torch.no_grad():
        direct = teacher(torch.stack([wave[s:s + CHUNK_SAMPLES] for s in first["starts"].tolist()]))
    for group, value in direct.items():
        torch.testing.assert_close(first[group], value, rtol=0, atol=1e-5)
    again = cached_logits(teacher, torch.zeros_like(wave), str(path), 60.0, tmp_path / "cache")  # from the cache
    assert torch.equal(again["genre"], first["genre"])


def test_agreement_rules_give_known_answers():
    teacher = np.array([[0.9, 0.1, 0.5, 0.30], [0.5, 0.2, 0.5, 0.31], [0.1, 0.3, 0.5, 0.30]])
    assert varying_tags(teacher).tolist() == [0, 1]  # tag 2 is constant, tag 3 moves by 0.01
    student = np.array([[0.8, 0.3, 0.1, 0.0], [0.7, 0.2, 0.2, 0.0], [0.2, 0.1, 0.3, 0.0]])
    assert spearman_per_tag(student, teacher).tolist() == pytest.approx([1.0, -1.0])
    ranked = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.1, 0.2]])
    assert top_k_overlap(ranked, np.array([[0.9, 0.8, 0.0, 0.0]] * 3), k=2).tolist() == [2.0, 0.0, 2.0]
    decided = teacher >= 0.4
    assert decided_auc(student, decided) == pytest.approx(1.0)  # tag 0 only: decided on 2 of 3 tracks
    with pytest.raises(ValueError, match="k must be"):
        top_k_overlap(student, teacher, k=5)


def test_expected_share_thresholds_decide_each_tag_on_its_mean_probability_share():
    rng = np.random.default_rng(0)
    probabilities = np.column_stack([rng.beta(1, 4, 200), rng.beta(4, 1, 200), np.full(200, 0.001)])
    thresholds = expected_share_thresholds(probabilities)
    shares = (probabilities >= thresholds).mean(axis=0)
    np.testing.assert_allclose(shares, np.round(probabilities.mean(axis=0) * 200) / 200, atol=1e-12)
    assert shares[2] == 0.0  # a tag the model finds nowhere is decided nowhere


def test_names_work_wherever_a_package_path_does(tmp_path, capsys):
    """Every student shipped resolves by name; `coldtag annotate --help` lists every name; the review page's
    model loader takes a name too (it refused musicnn-mtt before) and a converted package decides at the
    thresholds shipped for it."""
    assert student_names(), "no student package is shipped in tagging/pretrained/students"
    for name in student_names():
        assert read_package(resolve_model(name), "AudioTagger")["kind"] == "AudioTagger"
    with pytest.raises(SystemExit):
        coldtag(["annotate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in known_names())
    info = load_model_info("musicnn-mtt")
    shipped = shipped_thresholds()["musicnn-mtt"]
    for group, values in info.thresholds.items():
        np.testing.assert_allclose(values, [shipped[group][label] for label in info.labels.groups[group].labels],
                                   atol=1e-6)
    assert any(v != 0.5 for values in info.thresholds.values() for v in values)


@pytest.mark.slow
@pytest.mark.parametrize("name", student_names())
def test_a_shipped_student_annotates_the_test_corpus_and_says_where_it_came_from(name, tmp_path):
    from tests.helpers.annotate_corpus import EXPECTED_AUDIO, write_corpus

    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    assert cli_main([str(corpus), "--model", name, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    records = read_annotations(tmp_path / "out").to_pandas().set_index("id")
    for track, reason in EXPECTED_AUDIO.items():
        error = records.loc[track, "error"]
        assert (error is None) == (reason is None) and (error is None or error["message"].startswith(reason))
    package = resolve_model(name)
    record = read_package(package)
    teachers = [ref for key, ref in record["inputs"].items() if key.startswith("teacher")]
    assert teachers and all(ref["name"] in known_names() and ref["converted_from"]["wheel"] == "musicnn==0.1.0"
                            and ref["converted_from"]["license"] == "ISC" for ref in teachers)
    corpus_input = record["inputs"]["corpus"]
    assert corpus_input["recipe"] == "scripts/real_corpus.py"
    assert corpus_input["command"].startswith("python -m tagging distil ")
    assert corpus_input["albums"] and all(a["licenses"] and "unknown" not in a["licenses"]
                                          for a in corpus_input["albums"].values())
    assert all(a["split"] in ("train", "val") for a in corpus_input["albums"].values())
    thresholds = json.loads((package / "thresholds.json").read_text())
    assert any(v != 0.5 for group in thresholds.values() for v in group.values())
    assert sum(p.stat().st_size for p in package.iterdir()) < 5 * 2 ** 20


def test_a_student_pruned_from_its_teacher_is_the_teacher_at_the_published_size(tmp_path):
    """`--from-teacher 204` keeps every filter: the student's logits are the teacher's, through a saved and
    reloaded package; a smaller one keeps the teacher's mid-end, back-end and heads, and fewer filters."""
    teacher = AudioTagger.from_pretrained(resolve_model("musicnn-mtt"))
    vocab, source = student_vocab([("mtt", teacher)])
    fixed = {"sample_rate": teacher.sample_rate, "chunk_seconds": teacher.chunk_samples / teacher.sample_rate,
             "eval_chunks": teacher.eval_chunks}
    waves = torch.from_numpy(reference_signal()[:2 * CHUNK_SAMPLES]).float().view(2, CHUNK_SAMPLES)
    same = pruned_student(teacher, vocab, source, fixed, {"front_filters": 204})
    same.save_pretrained(tmp_path / "same")
    reloaded = AudioTagger.from_pretrained(tmp_path / "same")
    with torch.no_grad():
        expected, got = teacher(waves), reloaded(waves)
    for group, value in expected.items():
        torch.testing.assert_close(got[group], value, rtol=0, atol=1e-5)
    small = pruned_student(teacher, vocab, source, fixed, {"front_filters": 24})
    assert [b[0].out_channels for b in (*small.backbone.timbral, *small.backbone.temporal)] == [24, 24, 6, 6, 6]
    torch.testing.assert_close(small.backbone.midend[2][0].weight, teacher.backbone.midend[2][0].weight)
    torch.testing.assert_close(small.heads["genre"].weight, teacher.heads["genre"].weight)
    with pytest.raises(ValueError, match="front_filters only"):
        pruned_student(teacher, vocab, source, fixed, {"front_filters": 24, "width": 8})


def test_pruning_keeps_the_filters_whose_output_reaches_the_next_layers():
    """Filters whose batch norm scales their output to nothing reach no later layer: they are the ones
    dropped, and the kept ones keep their weights and order."""
    torch.manual_seed(0)
    backbone = MusiCNN().eval()
    live = torch.tensor([3, 17, 40, 41, 99, 150, 200, 203])
    with torch.no_grad():
        for block in backbone.timbral:
            gamma = torch.zeros(204)
            gamma[live] = torch.rand(len(live)) + 0.5
            block[2].weight.copy_(gamma)
    kept = kept_filters(backbone, 8)
    assert kept[0].tolist() == live.tolist() and kept[1].tolist() == live.tolist()
    assert [len(k) for k in kept] == [8, 8, 2, 2, 2]
    small = prune_musicnn(backbone, 8, 96)
    torch.testing.assert_close(small.timbral[1][0].weight, backbone.timbral[1][0].weight[live])
    torch.testing.assert_close(small.midend[0][0].weight[:, :8], backbone.midend[0][0].weight[:, live])
    with pytest.raises(ValueError, match="front_filters must be from 4 to 204"):
        MusiCNN(front_filters=300)


def test_from_teacher_takes_no_network_of_its_own(tmp_path, capsys):
    with pytest.raises(SystemExit):
        distil_main(["--teacher", "musicnn-mtt", "--audio", str(tmp_path), "--out", str(tmp_path / "s"),
                     "--from-teacher", "24", "--width", "8"])
    assert "--from-teacher takes the teacher's network: --width do not apply" in capsys.readouterr().err
