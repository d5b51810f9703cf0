"""Runs for the review tests: a real tagger package (random weights, no training: the review reads its
vocabulary and thresholds), tone files, and annotate records written with chosen probabilities, so that
every ordering and filter has a known answer."""

import contextlib
import socket
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from annotation.annotators import group_fields
from annotation.records import AnnotationRecord, Records, record_schema
from annotation.review.run import Run
from tagging.models.tagger import AudioTagger

VOCAB = {"groups": {"genre": {"type": "multilabel", "labels": ["rock", "jazz", "folk"]},
                    "mood": {"type": "multilabel", "labels": ["calm", "loud"]},
                    "graded": {"type": "regression", "labels": ["tempo"], "ranges": [[40, 220]]}}}
LOW, HIGH = 0.1, 0.9
# id -> (genre probabilities, mood probabilities); every tag's threshold is 0.5.
TRACKS = {
    **{f"rock{i}.wav": ((HIGH, LOW, LOW), (LOW, HIGH)) for i in range(5)},
    **{f"jazz{i}.wav": ((LOW, HIGH, LOW), (HIGH, LOW)) for i in range(5)},
    "odd.wav": ((HIGH, LOW, LOW), (HIGH, LOW)),  # rock and calm: 1 where chance expects 7 * 6 / 13 = 3.2
    "unsure.wav": ((0.52, LOW, LOW), (LOW, HIGH)),  # rock at 0.52, the threshold 0.5
    "quiet.wav": ((LOW, LOW, LOW), (LOW, LOW)),
}
FAILED = "broken.wav"


def make_package(directory: Path) -> AudioTagger:
    model = AudioTagger(VOCAB, backbone="tiny", width=4, embedding_dim=16, dropout=0.0, sample_rate=8000, n_fft=256,
                        hop_length=128, n_mels=32, chunk_seconds=1.0, eval_chunks=4)
    model.save_pretrained(directory)
    return model


def write_tone(path: Path, seconds: float = 2.0, pitch: float = 440.0, rate: int = 8000) -> Path:
    """A 16-bit WAV of plucked notes (four a second, three partials each) climbing from ``pitch``."""
    t = np.arange(int(seconds * rate)) / rate
    note = np.floor(t * 4)
    since = t - note / 4
    frequency = pitch * 2 ** ((note % 5) * 2 / 12)
    sound = sum(np.sin(2 * np.pi * k * frequency * t) / k for k in (1, 2, 3)) * np.exp(-6 * since)
    samples = (0.25 * sound * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def write_run(out: Path, model: AudioTagger, audio: Path, tracks: dict | None = None, failed: bool = True) -> Path:
    """Records of ``tracks`` (default `TRACKS`), their audio tones in ``audio``, and one error record."""
    tracks = TRACKS if tracks is None else tracks
    records = Records(out, record_schema(group_fields(model)))
    for k, (track, (genre, mood)) in enumerate(tracks.items()):
        path = write_tone(audio / track, pitch=220 + 20 * k)
        groups = {"genre": _group(VOCAB["groups"]["genre"]["labels"], genre),
                  "mood": _group(VOCAB["groups"]["mood"]["labels"], mood),
                  "graded": None if track == "quiet.wav" else {"tempo": 120.0}}
        records.add(AnnotationRecord(id=track, path=str(path), size=path.stat().st_size, mtime=0.0, duration=2.0,
                                     sample_rate=8000, channels=1, modalities=["audio"],
                                     warnings=["silent"] if track == "quiet.wav" else [], model_columns=groups,
                                     model_kind="AudioTagger", model_sha256=model.package["sha256"]))
    if failed:
        records.add(AnnotationRecord(id=FAILED, path=str(audio / FAILED),
                                     error={"type": "AudioDecodeError", "message": "not audio: no stream"}))
    records.commit()
    return out


def _group(labels: list[str], probabilities: tuple) -> dict:
    return {"probabilities": dict(zip(labels, probabilities, strict=True)),
            "tags": [label for label, p in zip(labels, probabilities, strict=True) if p >= 0.5]}


# A 1 x 1 PNG: a cover the page can serve and decode.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cf"
                    "c0f01f0005000201ff8d7d5b0e0000000049454e44ae426082")


def review_run(root: Path, package: Path) -> Run:
    """`write_run`'s records under ``root`` by the tagger ``package``, with a lyrics file and a cover beside
    rock0.wav, opened as the review page opens them."""
    out = write_run(root / "annotations", AudioTagger.from_pretrained(package), root / "audio")
    (root / "audio" / "rock0.txt").write_text("la la la\n")
    (root / "audio" / "rock0.png").write_bytes(PNG)
    return Run(out, package)


@dataclass
class Served:
    """A review command serving in a thread: its ``url``, the first answer to the probe, its exit ``codes``."""

    url: str
    first: httpx.Response | None = None
    codes: list[int] = field(default_factory=list)


@contextlib.contextmanager
def serving(command, argv: list[str], monkeypatch, probe: str = "/"):
    """Run ``command(argv + ["--port", PORT])`` (the ``coldtag review`` entry) on a free port with the real
    uvicorn server, wait until ``probe`` answers (30 s at most), and stop the server on leaving."""
    import uvicorn

    servers = []
    serve = uvicorn.Server.run

    def recorded(server, *args, **kwargs):  # the real uvicorn.run, with a handle to stop its server
        servers.append(server)
        return serve(server, *args, **kwargs)

    monkeypatch.setattr(uvicorn.Server, "run", recorded)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    served = Served(f"http://127.0.0.1:{port}")
    thread = threading.Thread(target=lambda: served.codes.append(command([*argv, "--port", str(port)])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while served.first is None and time.monotonic() < deadline and thread.is_alive():
            try:
                served.first = httpx.get(served.url + probe, timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
        yield served
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=20)
