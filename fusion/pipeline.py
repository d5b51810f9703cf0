"""A track nobody has played -> tags, collaborative factors, the users to recommend it to, similar tracks.

`ColdStartPipeline` bundles the packaged audio tagger (and a multimodal tagger if there is one), the
settings of the frozen lyrics and cover encoders, a `LateFusionRegressor` over inputs a new track can
have (`fusion.data.is_content`) and a `recsys.Recommender` (user factors and the catalog's item
factors). Everything is saved as safetensors, ``.npz`` (no pickle) and JSON, and loads and runs with
torch alone, no Lightning::

    pipeline = ColdStartPipeline.from_pretrained("runs/demo/pipeline")
    record = pipeline(audio="new.mp3", lyrics="new.txt")  # any subset of audio / lyrics / cover

With the tags its audio tagger gave the catalog's tracks (`fusion.explain.CatalogTags`), each similar track
also says why, in that tagger's vocabulary: the tags it shares with the new track.

A file that cannot be read becomes an entry of ``record["errors"]``; the other modalities go on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from coldtag.storage import ProvenanceError, is_inside, read_package, save_package
from fusion.data import SCORES, assemble, is_content, modality_of
from fusion.explain import CatalogTags
from fusion.model import LateFusionRegressor
from recsys import Recommender, topk
from tagging.models.image import CoverEncoder
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger
from tagging.models.text import LyricsEncoder
from tagging.tracks import DecodedTrack, TrackReader, encode_tracks

MODALITIES = ("audio", "lyrics", "cover")
CONFIG_FILE = "pipeline.json"
RECOMMENDER_FILE = "recommender.npz"
CATALOG_TAGS_FILE = "catalog_tags.npz"


class ColdStartPipeline:
    """Content of a new track -> a JSON-ready record (see `__call__`).

    Args:
        tagger: the packaged audio tagger; its embedding and scores are the audio-derived fusion inputs.
        fusion: content -> factors model in the recommender's latent space.
        recommender: user factors (whom to recommend to) and catalog item factors (similar tracks).
        multimodal: tags from audio, lyrics and cover together when given; else tags from the audio tagger.
        lyrics_model: local transformer directory of the lyrics encoder (None: the packaged MiniLM).
        cover_arch, cover_weights, cover_size: the cover encoder; without ``cover_weights`` the packaged
            ImageNet weights of ``efficientnet_lite0`` (so that a reloaded pipeline encodes alike).
        n_users, n_tracks: how many users and similar tracks a record lists.
        factors_sha256: hash of the cold-start split file whose factors the recommender holds; checked
            against the one the fusion model was trained on, when both are known.
        catalog_tags: the tags ``tagger`` gave the catalog's tracks; with them each similar track has
            ``shared_tags`` and ``why``. They must be of the tagger's vocabulary (``ValueError``).

    Models loaded from packages must agree on what made them: the fusion model and the multimodal
    tagger must have been trained on features of this very audio tagger, else `ProvenanceError`.
    """

    package: dict | None = None  # the package record it was loaded from or last saved as

    def __init__(self, tagger: AudioTagger, fusion: LateFusionRegressor, recommender: Recommender,
                 multimodal: MultimodalTagger | None = None, lyrics_model: str | None = None,
                 cover_arch: str = "efficientnet_lite0", cover_weights: str | None = None, cover_size: int = 224,
                 n_users: int = 10, n_tracks: int = 10, factors_sha256: str | None = None,
                 catalog_tags: CatalogTags | None = None):
        unusable = [name for name in fusion.inputs if not is_content(name)]
        if unusable:
            raise ValueError(f"fusion model takes {unusable}, which the pipeline cannot compute for a new track "
                             "(nobody has annotated it yet; a reference source is the ablation's yardstick)")
        expected = _audio_input_dims(tagger, fusion.inputs)
        wrong = {name: (fusion.config["input_dims"][name], dim) for name, dim in expected.items()
                 if fusion.config["input_dims"][name] != dim}
        if wrong:
            raise ValueError(f"fusion input sizes do not fit the tagger (fusion, tagger): {wrong}")
        if fusion.config["n_factors"] != recommender.item_factors.shape[1]:
            raise ValueError(f"fusion predicts {fusion.config['n_factors']} factors, the recommender has "
                             f"{recommender.item_factors.shape[1]}")
        if cover_weights is None and cover_arch != "efficientnet_lite0":
            raise ValueError(f"cover_arch {cover_arch!r} has no packaged weights: pass cover_weights")
        if n_users < 1 or n_tracks < 1 or cover_size < 1:
            raise ValueError(f"n_users, n_tracks and cover_size must be >= 1, got {n_users}, {n_tracks}, "
                             f"{cover_size}")
        _check_provenance(tagger, fusion, multimodal, factors_sha256)
        if catalog_tags is not None:
            catalog_tags.check(tagger)
        self.catalog_tags = catalog_tags
        self.tagger, self.fusion, self.recommender = tagger.eval(), fusion.eval(), recommender
        self.multimodal = multimodal.eval() if multimodal is not None else None
        self.config = {"lyrics_model": lyrics_model, "cover_arch": cover_arch, "cover_weights": cover_weights,
                       "cover_size": cover_size, "n_users": n_users, "n_tracks": n_tracks,
                       "factors_sha256": factors_sha256}
        self._lyrics: LyricsEncoder | None = None
        self._cover: CoverEncoder | None = None

    @property
    def lyrics_encoder(self) -> LyricsEncoder:
        """Loaded on first use: a pipeline given only audio never pays for the transformer."""
        if self._lyrics is None:
            self._lyrics = LyricsEncoder(self.config["lyrics_model"]).eval()
        return self._lyrics

    @property
    def cover_encoder(self) -> CoverEncoder:
        if self._cover is None:
            weights = self.config["cover_weights"]
            self._cover = CoverEncoder(self.config["cover_arch"], weights=weights, pretrained=weights is None).eval()
        return self._cover

    @torch.inference_mode()
    def __call__(self, audio: str | Path | None = None, lyrics: str | Path | None = None,
                 cover: str | Path | None = None) -> dict:
        """Any subset of an audio file, a lyrics file and a cover image (at least one) -> a record:

        ``modalities`` (those read), ``errors`` ({modality or "factors": reason}), ``warnings`` (the
        audio's: ``silent``, ``short``, ``clipped``; silent or short audio is not used), ``tags`` (decided
        tags, probabilities and graded values) and ``tags_from`` (``"multimodal"``, ``"audio"`` or None),
        ``factors`` (unit vector, or None when no input of the fusion model could be computed), ``users``
        ([{user_id, score}], best first, score x_uᵀŷ) and ``similar_tracks`` ([{track_id, similarity}],
        cosine of the factors; with catalog tags also ``shared_tags`` and ``why``, from the audio tagger's
        tags of both tracks). Audio is read on the tagger's chunk grid, streaming long files.
        """
        if audio is None and lyrics is None and cover is None:
            raise ValueError(f"give at least one of {MODALITIES}")
        track = self.read(audio, lyrics, cover)
        errors = track.sidecar_messages()
        if track.error is not None:
            errors["audio"] = f"{audio}: {track.error['message']}"
        encoded = encode_tracks([track], self.tagger, self.lyrics_encoder if track.lyrics is not None else None,
                                self.cover_encoder if track.cover is not None else None)
        known = encoded.known(0)
        audio_scores = encoded.audio_scores[0] if "audio" in known else None
        return {"warnings": track.warnings, **self.predict(known, audio_scores, errors)}

    def read(self, audio: str | Path | None = None, lyrics: str | Path | None = None,
             cover: str | Path | None = None) -> DecodedTrack:
        """The files as the pipeline reads them (`tagging.tracks.TrackReader` on the tagger's grid), which is
        how `tagging.data.features` read the tracks its fusion model learnt from."""
        reader = TrackReader.for_tagger(self.tagger, lyrics=lyrics is not None,
                                        cover_size=self.config["cover_size"] if cover is not None else None)
        return reader(None if audio is None else str(audio), None if lyrics is None else str(lyrics),
                      None if cover is None else str(cover))

    def predict(self, embeddings: dict[str, torch.Tensor], audio_scores: dict[str, torch.Tensor] | None,
                errors: dict | None = None) -> dict:
        """One track's content embeddings ``{modality: (dim,)}`` (and the tagger's scores of its audio) ->
        the record of `__call__` without ``warnings``."""
        errors = {} if errors is None else errors
        sources = {m: e.float().cpu().numpy()[None] for m, e in embeddings.items()}
        if audio_scores is not None:
            sources.update({SCORES + group: value.cpu().numpy()[None] for group, value in audio_scores.items()})
        record = {"modalities": list(embeddings), "errors": errors, **self._tags(embeddings, audio_scores)}
        usable = [name for name in self.fusion.inputs if modality_of(name) in embeddings]
        if not usable:
            if embeddings:
                errors["factors"] = (f"the fusion model needs one of {self.fusion.inputs}; got only "
                                     f"{list(embeddings)}")
            return record | {"factors": None, "users": [], "similar_tracks": []}
        device = next(self.fusion.parameters()).device
        inputs, _ = assemble(sources, {m: np.ones(1, dtype=bool) for m in embeddings}, usable)
        factors = self.fusion({n: torch.from_numpy(x).to(device) for n, x in inputs.items()})[0].cpu().numpy()
        neighbours = self._neighbours(factors)
        if self.catalog_tags is not None:
            # The audio tagger's tags, not the multimodal tagger's: the catalog's were decided by it.
            decided = None if audio_scores is None else self.tagger.record(audio_scores)
            tags = None if decided is None else [tag for group in self.tagger.labels.multilabel()
                                                 for tag in decided[group.name]["tags"]]
            for track in neighbours["similar_tracks"]:
                track.update(self.catalog_tags.explain(tags, track["track_id"]))
        return record | {"factors": factors.tolist(), **neighbours}

    def _tags(self, embeddings: dict[str, torch.Tensor], audio_scores: dict | None) -> dict:
        if self.multimodal is not None:
            known = {m: e for m, e in embeddings.items() if m in self.multimodal.modalities}
            if known:
                tags = self.multimodal.annotate(known)
                tags.pop("modalities")
                return {"tags": tags, "tags_from": "multimodal"}
        if audio_scores is not None:
            return {"tags": self.tagger.record(audio_scores), "tags_from": "audio"}
        return {"tags": None, "tags_from": None}

    def _neighbours(self, factors: np.ndarray) -> dict:
        users, scores = topk(factors[None], self.recommender.user_factors, self.config["n_users"])
        tracks, similarity = self.recommender.similar_to(factors, self.config["n_tracks"])
        return {
            "users": [{"user_id": uid, "score": s} for uid, s in
                      zip(self.recommender.user_ids[users[0]].tolist(), scores[0].tolist(), strict=True)],
            "similar_tracks": [{"track_id": tid, "similarity": s} for tid, s in
                               zip(self.recommender.item_ids[tracks[0]].tolist(), similarity[0].tolist(),
                                   strict=True)],
        }

    def save_pretrained(self, directory: str | Path, overwrite: bool = False) -> dict:
        """``tagger/``, ``fusion/``, ``multimodal/`` (if any; each a package of its own), ``recommender.npz``,
        ``catalog_tags.npz`` (if any), ``pipeline.json`` and ``package.json``: one package that runs on raw
        files alone. Written beside the target and swapped in (`coldtag.storage.save_package`): a failed save
        leaves no half pipeline, and a folder holding other files is refused unless ``overwrite`` (they stay)."""
        def write(folder: Path) -> None:
            self.tagger.save_pretrained(folder / "tagger")
            self.fusion.save_pretrained(folder / "fusion")
            if self.multimodal is not None:
                self.multimodal.save_pretrained(folder / "multimodal")
            self.recommender.save(folder / RECOMMENDER_FILE)
            if self.catalog_tags is not None:
                self.catalog_tags.save(folder / CATALOG_TAGS_FILE)
            (folder / CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n")
        self.package = save_package(directory, write, type(self).__name__, overwrite=overwrite)
        # The parts were saved into a staging folder that then took the package's place: they live here now.
        for name, model in (("tagger", self.tagger), ("fusion", self.fusion), ("multimodal", self.multimodal)):
            if model is not None:
                model.package_path = Path(directory).resolve() / name
        return self.package

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu",
                        allow_outside: bool = False) -> ColdStartPipeline:
        """Load a saved pipeline after checking every file against its record and that its models were
        made from one another (`coldtag.storage.ProvenanceError` otherwise). The encoders ``pipeline.json``
        names by path are taken relative to the package folder and must lie inside it unless
        ``allow_outside`` (`ValueError`); None names the packaged ones."""
        directory = Path(directory)
        record = read_package(directory, cls.__name__)
        config = json.loads((directory / CONFIG_FILE).read_text())
        for key in ("lyrics_model", "cover_weights"):
            if config.get(key) is not None:
                path = directory / config[key]
                if not allow_outside and not is_inside(path, directory):
                    raise ValueError(f"{directory / CONFIG_FILE}: {key} {config[key]!r} leads out of the package "
                                     "folder; copy it into the package and name it relative to it, or allow paths "
                                     "outside (allow_outside, coldtag annotate --allow-outside)")
                config[key] = str(path)
        multimodal = None
        if (directory / "multimodal").is_dir():
            multimodal = MultimodalTagger.from_pretrained(directory / "multimodal", map_location)
        tags = directory / CATALOG_TAGS_FILE
        pipeline = cls(AudioTagger.from_pretrained(directory / "tagger", map_location),
                       LateFusionRegressor.from_pretrained(directory / "fusion", map_location),
                       Recommender.load(directory / RECOMMENDER_FILE), multimodal=multimodal,
                       catalog_tags=CatalogTags.load(tags) if tags.is_file() else None, **config)
        pipeline.package = record
        return pipeline


def _check_provenance(tagger: AudioTagger, fusion: LateFusionRegressor, multimodal: MultimodalTagger | None,
                      factors_sha256: str | None) -> None:
    """Where the packages record it: the fusion model's and the multimodal tagger's audio features came
    from ``tagger``, and the fusion model learnt the factors the recommender holds."""
    tagger_hash = tagger.package["sha256"] if tagger.package else None
    for name, model in (("fusion model", fusion), ("multimodal tagger", multimodal)):
        inputs = model.package["inputs"] if model is not None and model.package else {}
        made_by = inputs.get("audio", {}).get("sha256")
        if made_by and tagger_hash and made_by != tagger_hash:
            raise ProvenanceError(
                f"the {name} ({model.package_path}) was trained on features of the audio tagger "
                f"sha256:{made_by[:12]}, not of the one given ({tagger.package_path}, sha256:{tagger_hash[:12]}); "
                "its inputs would not mean what it learnt")
    trained_on = (fusion.package or {}).get("inputs", {}).get("factors", {}).get("sha256")
    if trained_on and factors_sha256 and trained_on != factors_sha256:
        raise ProvenanceError(f"the fusion model ({fusion.package_path}) learnt the factors of cold-start split "
                              f"sha256:{trained_on[:12]}, the recommender holds those of sha256:{factors_sha256[:12]}")


def _audio_input_dims(tagger: AudioTagger, names: list[str]) -> dict[str, int]:
    """The size the tagger gives each audio-derived fusion input; an error naming a missing label group."""
    sizes = {"audio": tagger.embedding_dim} | {SCORES + g: len(group) for g, group in tagger.labels.groups.items()}
    dims = {}
    for name in names:
        if modality_of(name) != "audio":
            continue
        if name not in sizes:
            raise ValueError(f"fusion input {name!r} is not among what the tagger gives: {sorted(sizes)}")
        dims[name] = sizes[name]
    return dims
