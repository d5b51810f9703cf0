"""Lyrics reading (encodings, bad files) and the sentence-transformer lyrics encoder."""

import codecs
import os
import threading
import time

import pytest
import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from tagging.models.text import LyricsEncoder, LyricsError, default_lyrics_model_path, read_lyrics

# ---------------------------------------------------------------- read_lyrics


@pytest.mark.parametrize(("encoding", "prefix"), [
    ("utf-8", b""),
    ("utf-8", codecs.BOM_UTF8),
    ("utf-16", b""),  # Python writes the BOM itself
    ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-32", b""),
    ("latin-1", b""),
    ("cp1252", b""),
])
def test_read_lyrics_decodes_each_encoding(tmp_path, encoding, prefix):
    lyric = "Señor, the café is closed\nÀ bientôt, ça va\n"
    path = tmp_path / f"{encoding}.txt"
    path.write_bytes(prefix + lyric.encode(encoding))
    assert read_lyrics(path) == lyric


def test_read_lyrics_prefers_cp1252_for_windows_quotes(tmp_path):
    path = tmp_path / "quotes.txt"
    path.write_bytes("“Love me”, she said – it’s over".encode("cp1252"))
    assert read_lyrics(path) == "“Love me”, she said – it’s over"


def test_read_lyrics_cuts_a_long_file_at_a_character_boundary(tmp_path):
    lyric = "é" * 1000  # two bytes each in UTF-8
    path = tmp_path / "long.txt"
    path.write_text(lyric, encoding="utf-8")
    assert read_lyrics(path, max_bytes=101) == "é" * 50  # byte 101 is half a character: left out
    path.write_text(lyric, encoding="utf-16")  # 2-byte BOM, then 2 bytes per character
    assert read_lyrics(path, max_bytes=101) == "é" * 49


def test_read_lyrics_reads_only_the_head_of_a_huge_file(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as file:
        file.write(b"la la la\n" * 10)
        file.truncate(256 * 2**20)  # sparse: 256 MB of NULs after the text, and no disk used
    assert read_lyrics(path, max_bytes=90) == "la la la\n" * 10


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty"),
    (b"  \n\t\r\n  ", "empty"),
    (codecs.BOM_UTF8 + b"\n\n", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not text"),
    (bytes(range(1, 32)) * 20 + b"some words", "not text"),  # no NUL byte, still mostly control codes
])
def test_read_lyrics_rejects_bad_files_naming_them(tmp_path, content, reason):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(LyricsError, match=reason) as caught:
        read_lyrics(path)
    assert str(path) in str(caught.value)
    assert caught.value.reason == reason


def test_read_lyrics_missing_file(tmp_path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(LyricsError, match="no such file") as caught:
        read_lyrics(path)
    assert caught.value.path == str(path)


def test_read_lyrics_refuses_a_fifo_at_once(tmp_path):
    path = tmp_path / "lyrics.txt"
    os.mkfifo(path)
    outcome = []
    # In a thread, so that a regression (a blocking open) fails the test instead of hanging the suite.
    reader = threading.Thread(target=lambda: outcome.append(_error_of(read_lyrics, path)), daemon=True)
    started = time.perf_counter()
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # a writer unblocks the stuck open
        pytest.fail("read_lyrics blocked on a FIFO")
    assert time.perf_counter() - started < 1
    (error,) = outcome
    assert isinstance(error, LyricsError)
    assert error.reason == "not a regular file (a FIFO)"
    assert str(path) in str(error)


@pytest.mark.parametrize(("make", "kind"), [
    (lambda tmp: tmp, "a directory"),
    (lambda tmp: "/dev/null", "a character device"),
], ids=["directory", "device"])
def test_read_lyrics_refuses_what_is_not_a_regular_file(tmp_path, make, kind):
    path = make(tmp_path)
    if not os.path.exists(path):
        pytest.skip(f"no {path} here")
    with pytest.raises(LyricsError) as caught:
        read_lyrics(path)
    assert caught.value.reason == f"not a regular file ({kind})"


def test_read_lyrics_follows_a_link_to_a_file_and_names_a_dangling_one(tmp_path):
    (tmp_path / "real.txt").write_text("la la la\n")
    (tmp_path / "link.txt").symlink_to("real.txt")
    assert read_lyrics(tmp_path / "link.txt") == "la la la\n"
    (tmp_path / "dangling.txt").symlink_to("gone.txt")
    with pytest.raises(LyricsError, match="no such file"):
        read_lyrics(tmp_path / "dangling.txt")


def _error_of(function, *args):
    try:
        function(*args)
    except Exception as error:  # handed back to the test's thread to be checked
        return error
    return None


# ---------------------------------------------------------------- LyricsEncoder


@pytest.fixture(scope="module")
def encoder():
    return LyricsEncoder().eval()


def embed(encoder, texts):
    with torch.no_grad():
        return encoder(**encoder.tokenize(texts))


def test_embeddings_have_the_model_size_and_follow_meaning(encoder):
    sad, lonely, party = embed(encoder, ["I cry alone tonight, tears and sorrow", "sad lonely tears",
                                         "party dance all night happy"])
    assert encoder.dim == 384 and sad.shape == (384,)
    cosine = nn.functional.cosine_similarity
    assert cosine(sad, lonely, dim=0) > cosine(sad, party, dim=0) + 0.2  # 0.69 against 0.30


def test_padding_does_not_change_an_embedding(encoder):
    alone = embed(encoder, ["short line"])
    batched = embed(encoder, ["short line", "a much longer line of lyrics that forces padding " * 3])
    torch.testing.assert_close(batched[0:1], alone, atol=1e-5, rtol=1e-5)


def test_long_lyrics_are_cut_to_max_length_tokens(encoder):
    words = ["love", "rain", "night", "fire", "heart"]  # one word piece each
    long_lyric = " ".join(words[i % 5] for i in range(5000))
    head = " ".join(words[i % 5] for i in range(encoder.max_length - 2))  # [CLS] and [SEP] take two
    tokens = encoder.tokenize([long_lyric, head])
    assert tokens["input_ids"].shape == (2, encoder.max_length)
    assert torch.equal(tokens["input_ids"][0], tokens["input_ids"][1])
    embeddings = embed(encoder, [long_lyric, head])
    torch.testing.assert_close(embeddings[0], embeddings[1])


def test_frozen_encoder_stays_deterministic_in_a_training_parent(encoder):
    tokens = encoder.tokenize(["tears on my guitar"])
    before = embed(encoder, ["tears on my guitar"])
    parent = nn.Sequential(encoder)
    parent.train()
    try:
        assert encoder.training and not encoder.transformer.training
        again = encoder(**tokens)
    finally:
        parent.eval()
    assert torch.equal(again, before)
    assert not again.requires_grad
    assert not any(p.requires_grad for p in encoder.parameters())


class _Tagger(nn.Module):
    def __init__(self, lyrics: LyricsEncoder):
        super().__init__()
        self.lyrics = lyrics
        self.head = nn.Linear(lyrics.dim, 3)

    def forward(self, tokens):
        return self.head(self.lyrics(**tokens))


def test_frozen_weights_stay_out_of_a_saved_parent_and_it_reloads_exactly(encoder, tmp_path):
    torch.manual_seed(0)
    tagger = _Tagger(encoder)
    tokens = encoder.tokenize(["tears on my guitar", "dance all night"])
    with torch.no_grad():
        expected = tagger(tokens)
    path = tmp_path / "tagger.safetensors"
    save_model(tagger, str(path))
    assert set(load_file(path)) == {"head.weight", "head.bias"}
    assert path.stat().st_size < 10_000  # the 90 MB transformer is not in it

    restored = _Tagger(LyricsEncoder())  # fresh: the frozen transformer comes from model_path again
    load_model(restored, str(path), strict=True)
    with torch.no_grad():
        assert torch.equal(restored(tokens), expected)


def test_trainable_encoder_gets_gradients_and_saves_its_weights(encoder):
    trainable = LyricsEncoder(model_path=str(default_lyrics_model_path()), max_length=16, trainable=True)
    trainable.train()
    assert trainable.transformer.training
    trainable(**trainable.tokenize(["fine tune me", "and me"])).pow(2).mean().backward()
    word_embeddings = trainable.transformer.get_input_embeddings().weight
    assert word_embeddings.grad is not None and word_embeddings.grad.abs().sum() > 0
    assert len(trainable.state_dict()) == len(encoder.transformer.state_dict())


def test_bad_model_paths_and_arguments(tmp_path, encoder):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        LyricsEncoder(model_path=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"no config\.json"):
        LyricsEncoder(model_path=str(tmp_path))
    with pytest.raises(ValueError, match=r"max_length must be in \[2, 512\]"):
        LyricsEncoder(max_length=1000)
    with pytest.raises(TypeError, match="list of texts"):
        encoder.tokenize("one string")
