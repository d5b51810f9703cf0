"""Per-track content features, computed once with frozen encoders and cached in one ``.npz``.

For every track of a manifest: the audio embedding and predicted label scores of a packaged
`AudioTagger` (the "machine-listening genome" of Oramas et al.), the lyrics embedding (a frozen
sentence transformer) and the cover embedding (a frozen image CNN). A modality a track lacks, or whose
file cannot be read, is marked absent and the reason recorded; the other modalities go on.

    python -m tagging features --manifest data/demo/manifest.parquet --tagger runs/demo/tagger/model \
        --out runs/demo/features.npz
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from coldtag.storage import atomic_path, file_sha256, reference
from tagging.models.image import CoverEncoder
from tagging.labels import read_manifest
from tagging.models.tagger import AudioTagger
from tagging.models.text import LyricsEncoder
from tagging.tracks import DecodedTrack, TrackReader, encode_tracks

log = logging.getLogger(__name__)

MODALITIES = ("audio", "lyrics", "cover")
LYRICS_BATCH = 32


@dataclass
class TrackFeatures:
    """Arrays aligned with ``track_ids``: ``arrays["audio"]`` (tracks, dim), ``arrays["scores/genre"]``
    (tracks, labels), ... with ``present[modality]`` (tracks,) booleans; absent rows are zeros."""

    track_ids: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    errors: np.ndarray | None = None  # (tracks,) str: why a modality is missing, "" when none is
    sources: dict = field(default_factory=dict)  # modality -> what produced it (`encoder_sources`)

    def __len__(self) -> int:
        return len(self.track_ids)

    def rows(self, track_ids) -> np.ndarray:
        """Row index of each id; a clear error for an id the features do not cover."""
        index = {t: i for i, t in enumerate(self.track_ids.tolist())}
        missing = [t for t in track_ids if t not in index]
        if missing:
            raise KeyError(f"no features for {len(missing)} track(s), e.g. {missing[:3]}")
        return np.array([index[t] for t in track_ids], dtype=np.int64)

    def equals(self, other: TrackFeatures) -> bool:
        """Whether ``other`` holds what `save` would write of these: the same tracks, arrays, masks, errors and
        sources (a saved file's bytes differ from one save to the next)."""
        return (np.array_equal(self.track_ids.astype(str), other.track_ids.astype(str))
                and np.array_equal(self._errors(), other._errors()) and self.sources == other.sources
                and _same_arrays(self.arrays, other.arrays) and _same_arrays(self.present, other.present))

    def _errors(self) -> np.ndarray:
        return (self.errors if self.errors is not None else np.full(len(self), "")).astype(str)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"track_ids": self.track_ids.astype(str), "errors": self._errors()}
        payload.update({f"array:{k}": v for k, v in self.arrays.items()})
        payload.update({f"present:{k}": v for k, v in self.present.items()})
        payload["sources"] = np.array(json.dumps(self.sources))
        with atomic_path(path) as staging:
            np.savez(staging, **payload)

    @classmethod
    def load(cls, path: str | Path) -> TrackFeatures:
        with np.load(path, allow_pickle=False) as data:
            sources = json.loads(str(data["sources"])) if "sources" in data.files else {}
            return cls(track_ids=data["track_ids"], errors=data["errors"], sources=sources,
                       arrays={k.removeprefix("array:"): data[k] for k in data.files if k.startswith("array:")},
                       present={k.removeprefix("present:"): data[k] for k in data.files
                                if k.startswith("present:")})


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


@torch.inference_mode()
def extract_features(manifest: str | Path, tagger: AudioTagger | None, lyrics: LyricsEncoder | None = None,
                     cover: CoverEncoder | None = None, cover_size: int = 224, batch_size: int = 8,
                     device: str | torch.device = "cpu") -> TrackFeatures:
    """Run each given encoder over every track of ``manifest``; an encoder left as None is skipped.

    Tracks are read and encoded as the cold-start pipeline and ``coldtag annotate`` read and encode a new
    track (`tagging.tracks`): a damaged FLAC is an error, and silent audio or audio under half a chunk is
    not used, so a model learns from the inputs it will be served."""
    frame = read_manifest(manifest)
    n = len(frame)
    features = TrackFeatures(track_ids=frame["track_id"].to_numpy().astype(str))
    encoders = [m.to(device).eval() if m is not None else None for m in (tagger, lyrics, cover)]
    tagger, lyrics, cover = encoders
    # Without a tagger no audio is read, so the grid is never used. Lyrics are read and encoded apart, 32 texts at a
    # time (the transformer's batch), audio and covers ``batch_size`` tracks at a time.
    reader = TrackReader.for_tagger(tagger, cover_size=cover_size if cover is not None else None) \
        if tagger is not None else TrackReader(0, 0, None, cover_size=cover_size if cover is not None else None)
    columns = {name: frame[f"{name}_path"].tolist() if f"{name}_path" in frame.columns else [None] * n
               for name in ("audio", "lyrics", "cover")}
    dims = {"audio": tagger.embedding_dim if tagger is not None else 0,
            "lyrics": lyrics.dim if lyrics is not None else 0, "cover": cover.dim if cover is not None else 0}
    wanted = [m for m, encoder in zip(MODALITIES, encoders, strict=True) if encoder is not None]
    for modality in wanted:
        features.arrays[modality] = np.zeros((n, dims[modality]), dtype=np.float32)
        features.present[modality] = np.zeros(n, dtype=bool)
    if tagger is not None:
        features.arrays.update({f"scores/{name}": np.zeros((n, len(group)), dtype=np.float32)
                                for name, group in tagger.labels.groups.items()})
    errors = [[] for _ in range(n)]

    def store(rows: list[int], tracks: list[DecodedTrack], encoded) -> None:
        for index, (row, track) in enumerate(zip(rows, tracks, strict=True)):
            errors[row] += _reasons(track, tagger is not None)
            for modality, embedding in encoded.known(index).items():
                features.arrays[modality][row] = embedding.float().cpu().numpy()
                features.present[modality][row] = True
                if modality == "audio":
                    for name, value in encoded.audio_scores[index].items():
                        features.arrays[f"scores/{name}"][row] = value.float().cpu().numpy()

    if tagger is not None or cover is not None:
        for begin in range(0, n, batch_size):
            rows = list(range(begin, min(begin + batch_size, n)))
            tracks = [reader(columns["audio"][row] if tagger is not None else None, None, columns["cover"][row])
                      for row in rows]
            store(rows, tracks, encode_tracks(tracks, tagger, None, cover))
    if lyrics is not None:
        texts = TrackReader(0, 0, None, lyrics=True)
        with_lyrics = [row for row in range(n) if columns["lyrics"][row] is not None]
        for begin in range(0, len(with_lyrics), LYRICS_BATCH):
            rows = with_lyrics[begin:begin + LYRICS_BATCH]
            tracks = [texts(None, columns["lyrics"][row]) for row in rows]
            store(rows, tracks, encode_tracks(tracks, None, lyrics))
    features.errors = np.array(["; ".join(e) for e in errors], dtype=str)
    features.sources = encoder_sources(tagger, lyrics, cover, cover_size)
    failed = sum(1 for e in errors if e)
    if failed:
        log.warning("%s: %d track(s) miss a modality because a file could not be read or its audio is not "
                    "informative; first: %s", manifest, failed, next(e for e in errors if e)[0])
    return features


def _reasons(track: DecodedTrack, audio: bool) -> list[str]:
    """Why a track misses a modality it was given: its files' errors, or audio that is not informative."""
    reasons = []
    if audio and track.error is not None:
        reasons.append(f"{track.audio_path}: {track.error['message']}")
    elif audio and track.chunks is not None and not track.informative:
        reasons.append(f"{track.audio_path}: not used ({', '.join(track.warnings)})")
    reasons += track.sidecar_messages().values()
    return reasons


def encoder_sources(tagger: AudioTagger | None, lyrics: LyricsEncoder | None, cover: CoverEncoder | None,
                    cover_size: int) -> dict:
    """What produced each modality's features, as packages record their inputs: the audio tagger by its
    package (`coldtag.storage.reference`), the frozen encoders by their settings and weights' hash."""
    sources = {}
    if tagger is not None:
        # A tagger that was never saved can be named by its class only: nothing downstream can check it.
        sources["audio"] = reference(tagger.package_path) if tagger.package_path else {"kind": "AudioTagger"}
    if lyrics is not None:
        weights = sorted(Path(lyrics.model_path).glob("*.safetensors"))
        sources["lyrics"] = {"kind": "LyricsEncoder", "model_path": lyrics.model_path,
                             "max_length": lyrics.max_length,
                             "weights_sha256": file_sha256(weights[0]) if len(weights) == 1 else None}
    if cover is not None:
        sources["cover"] = {"kind": "CoverEncoder", "arch": cover.arch, "size": cover_size, "weights": cover.weights,
                            "weights_sha256": file_sha256(cover.weights) if cover.weights else None}
    for ref in sources.values():
        ref.pop("bundle", None)
    return sources


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tagging features", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--tagger", help="a save_pretrained AudioTagger directory (no audio features without)")
    parser.add_argument("--out", required=True)
    encoder_arguments(parser)
    run(parser.parse_args(argv))


def encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """The frozen lyrics and cover encoders, and the device they run on."""
    parser.add_argument("--lyrics-model", default=None, help="local transformer directory (default: MiniLM)")
    parser.add_argument("--no-lyrics", action="store_true", help="no lyrics features")
    parser.add_argument("--cover-arch", default="efficientnet_lite0")
    parser.add_argument("--cover-weights", default=None, help="local state dict; default: packaged ImageNet")
    parser.add_argument("--no-cover", action="store_true", help="no cover features")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(options: argparse.Namespace) -> None:
    """Extract and save the features of ``options.manifest`` into ``options.out`` (`encoder_arguments`,
    ``options.tagger``)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tagger = AudioTagger.from_pretrained(options.tagger) if options.tagger else None
    lyrics = None if options.no_lyrics else LyricsEncoder(options.lyrics_model)
    cover = None
    if not options.no_cover:
        packaged = options.cover_weights is None and options.cover_arch == "efficientnet_lite0"
        cover = CoverEncoder(options.cover_arch, weights=options.cover_weights, pretrained=packaged)
    features = extract_features(options.manifest, tagger, lyrics, cover, device=options.device)
    features.save(options.out)
    counts = ", ".join(f"{m} {int(p.sum())}" for m, p in features.present.items())
    print(f"{options.out}: {len(features)} tracks ({counts} with each modality)")
