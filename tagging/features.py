"""Per-track content features, computed once with frozen encoders and cached in one ``.npz``.

For every track of a manifest: the audio embedding and predicted label scores of a packaged
`AudioTagger` (the "machine-listening genome" of Oramas et al.), the lyrics embedding (a frozen
sentence transformer) and the cover embedding (a frozen image CNN). A modality a track lacks, or whose
file cannot be read, is marked absent and the reason recorded; the other modalities go on.

    python -m tagging.features --manifest data/demo/manifest.parquet --tagger runs/demo/tagger/model \
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
from tagging.audio import AudioDecodeError, load_audio
from tagging.image import CoverEncoder, CoverError, load_cover
from tagging.labels import read_manifest
from tagging.models import AudioTagger
from tagging.text import LyricsEncoder, LyricsError, read_lyrics

log = logging.getLogger(__name__)

MODALITIES = ("audio", "lyrics", "cover")


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

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"track_ids": self.track_ids.astype(str),
                   "errors": (self.errors if self.errors is not None else np.full(len(self), "")).astype(str)}
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


@torch.inference_mode()
def extract_features(manifest: str | Path, tagger: AudioTagger | None, lyrics: LyricsEncoder | None = None,
                     cover: CoverEncoder | None = None, cover_size: int = 224, batch_size: int = 8,
                     device: str | torch.device = "cpu") -> TrackFeatures:
    """Run each given encoder over every track of ``manifest``; an encoder left as None is skipped."""
    frame = read_manifest(manifest)
    n = len(frame)
    features = TrackFeatures(track_ids=frame["track_id"].to_numpy().astype(str))
    errors = [[] for _ in range(n)]
    if tagger is not None:
        _audio(features, frame["audio_path"].tolist(), tagger.to(device).eval(), batch_size, errors, device)
    if lyrics is not None:
        lyrics = lyrics.to(device).eval()
        paths = frame["lyrics_path"].tolist() if "lyrics_path" in frame.columns else [None] * n
        _embed(features, "lyrics", paths, read_lyrics, (LyricsError,),
               lambda texts: lyrics(**{k: v.to(device) for k, v in lyrics.tokenize(texts).items()}),
               lyrics.dim, 32, errors)
    if cover is not None:
        cover = cover.to(device).eval()
        paths = frame["cover_path"].tolist() if "cover_path" in frame.columns else [None] * n
        _embed(features, "cover", paths, lambda p: load_cover(p, cover_size), (CoverError,),
               lambda images: cover(torch.stack(images).to(device)), cover.dim, batch_size, errors)
    features.errors = np.array(["; ".join(e) for e in errors], dtype=str)
    features.sources = encoder_sources(tagger, lyrics, cover, cover_size)
    failed = sum(1 for e in errors if e)
    if failed:
        log.warning("%s: %d track(s) miss a modality because a file could not be read; first: %s",
                    manifest, failed, next(e for e in errors if e)[0])
    return features


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


def _audio(features: TrackFeatures, paths: list[str], tagger: AudioTagger, batch_size: int,
           errors: list[list[str]], device) -> None:
    n = len(paths)
    embeddings = np.zeros((n, tagger.embedding_dim), dtype=np.float32)
    scores = {name: np.zeros((n, len(group)), dtype=np.float32) for name, group in tagger.labels.groups.items()}
    present = np.zeros(n, dtype=bool)
    for begin in range(0, n, batch_size):
        waves, rows = [], []
        for row in range(begin, min(begin + batch_size, n)):
            try:
                waves.append(load_audio(paths[row], tagger.sample_rate))
                rows.append(row)
            except AudioDecodeError as error:
                errors[row].append(str(error))
        if not waves:
            continue
        lengths = torch.tensor([len(w) for w in waves])
        batch = torch.zeros(len(waves), int(lengths.max()))
        for i, wave in enumerate(waves):
            batch[i, :len(wave)] = wave
        outputs = tagger.track_outputs(batch.to(device), lengths.to(device))
        embeddings[rows] = outputs.embedding.cpu().numpy()
        for name, value in outputs.scores.items():
            scores[name][rows] = value.cpu().numpy()
        present[rows] = True
    features.arrays["audio"] = embeddings
    features.arrays.update({f"scores/{name}": value for name, value in scores.items()})
    features.present["audio"] = present


def _embed(features: TrackFeatures, modality: str, paths: list, read, read_errors: tuple, encode, dim: int,
           batch_size: int, errors: list[list[str]]) -> None:
    n = len(paths)
    out = np.zeros((n, dim), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    items, rows = [], []

    def flush():
        if items:
            out[rows] = encode(items).float().cpu().numpy()
            present[rows] = True
            items.clear()
            rows.clear()
    for row, path in enumerate(paths):
        if path is None:
            continue
        try:
            items.append(read(path))
            rows.append(row)
        except read_errors as error:
            errors[row].append(str(error))
        if len(items) == batch_size:
            flush()
    flush()
    features.arrays[modality] = out
    features.present[modality] = present


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--tagger", help="a save_pretrained AudioTagger directory (no audio features without)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--lyrics-model", default=None, help="local transformer directory (default: MiniLM)")
    parser.add_argument("--no-lyrics", action="store_true")
    parser.add_argument("--cover-arch", default="efficientnet_lite0")
    parser.add_argument("--cover-weights", default=None, help="local state dict; default: packaged ImageNet")
    parser.add_argument("--no-cover", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tagger = AudioTagger.from_pretrained(args.tagger) if args.tagger else None
    lyrics = None if args.no_lyrics else LyricsEncoder(args.lyrics_model)
    cover = None
    if not args.no_cover:
        packaged = args.cover_weights is None and args.cover_arch == "efficientnet_lite0"
        cover = CoverEncoder(args.cover_arch, weights=args.cover_weights, pretrained=packaged)
    features = extract_features(args.manifest, tagger, lyrics, cover, device=args.device)
    features.save(args.out)
    counts = ", ".join(f"{m} {int(p.sum())}" for m, p in features.present.items())
    print(f"{args.out}: {len(features)} tracks ({counts} with each modality)")


if __name__ == "__main__":
    main()
