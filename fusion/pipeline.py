"""A track nobody has played -> tags, collaborative factors, the users to recommend it to, similar tracks.

`ColdStartPipeline` bundles the packaged audio tagger (and a multimodal tagger if there is one), the
settings of the frozen lyrics and cover encoders, a `LateFusionRegressor` over inputs a new track can
have (`fusion.data.is_content`) and a `recsys.Recommender` (user factors and the catalog's item
factors). Everything is saved as safetensors, ``.npz`` (no pickle) and JSON, and loads and runs with
torch alone, no Lightning::

    pipeline = ColdStartPipeline.from_pretrained("runs/demo/pipeline")
    record = pipeline(audio="new.mp3", lyrics="new.txt")  # any subset of audio / lyrics / cover

A file that cannot be read becomes an entry of ``record["errors"]``; the other modalities go on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from coldtag.storage import ProvenanceError, is_inside, read_package, save_package
from fusion.data import SCORES, assemble, is_content, modality_of
from fusion.model import LateFusionRegressor
from recsys import Recommender, topk
from tagging.annotation import Item, TrackReader, content_embeddings, group_fields, informative
from tagging.image import CoverEncoder, CoverError, load_cover
from tagging.models import AudioTagger
from tagging.multimodal import MultimodalTagger
from tagging.text import LyricsEncoder, LyricsError, read_lyrics

MODALITIES = ("audio", "lyrics", "cover")
CONFIG_FILE = "pipeline.json"
RECOMMENDER_FILE = "recommender.npz"


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

    Models loaded from packages must agree on what made them: the fusion model and the multimodal
    tagger must have been trained on features of this very audio tagger, else `ProvenanceError`.
    """

    package: dict | None = None  # the package record it was loaded from or last saved as

    def __init__(self, tagger: AudioTagger, fusion: LateFusionRegressor, recommender: Recommender,
                 multimodal: MultimodalTagger | None = None, lyrics_model: str | None = None,
                 cover_arch: str = "efficientnet_lite0", cover_weights: str | None = None, cover_size: int = 224,
                 n_users: int = 10, n_tracks: int = 10, factors_sha256: str | None = None):
        unusable = [name for name in fusion.inputs if not is_content(name)]
        if unusable:
            raise ValueError(f"fusion model takes {unusable}, which a new track cannot have: nobody has annotated "
                             "it yet")
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
        cosine of the factors). Audio is read on the tagger's chunk grid, streaming long files.
        """
        paths = {"audio": audio, "lyrics": lyrics, "cover": cover}
        if all(path is None for path in paths.values()):
            raise ValueError(f"give at least one of {MODALITIES}")
        embeddings, errors, warnings = {}, {}, []
        audio_scores = None
        if audio is not None:
            track = TrackReader.for_tagger(self.tagger)(Item("", str(audio)))
            if track["error"] is not None:
                errors["audio"] = f"{audio}: {track['error']['message']}"
            else:
                warnings = track["warnings"]
                outputs = self.tagger.chunk_outputs([track["chunks"]])
                if informative(track):
                    embeddings["audio"] = outputs.embedding[0]
                    audio_scores = {group: value[0] for group, value in outputs.scores.items()}
        for modality, path in (("lyrics", lyrics), ("cover", cover)):
            if path is None:
                continue
            try:
                if modality == "lyrics":
                    encoder = self.lyrics_encoder
                    embeddings["lyrics"] = encoder(**encoder.tokenize([read_lyrics(path)]))[0]
                else:
                    image = load_cover(path, self.config["cover_size"]).unsqueeze(0)
                    embeddings["cover"] = self.cover_encoder(image)[0]
            except (LyricsError, CoverError) as error:
                errors[modality] = str(error)
        return {"warnings": warnings, **self.predict(embeddings, audio_scores, errors)}

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
        return record | {"factors": factors.tolist(), **self._neighbours(factors)}

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
        norms = self.recommender.item_norms
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        unit = factors / max(float(np.linalg.norm(factors)), 1e-12)
        tracks, similarity = topk(unit[None], self.recommender.item_factors, self.config["n_tracks"],
                                  item_scale=inverse)
        return {
            "users": [{"user_id": uid, "score": s} for uid, s in
                      zip(self.recommender.user_ids[users[0]].tolist(), scores[0].tolist(), strict=True)],
            "similar_tracks": [{"track_id": tid, "similarity": s} for tid, s in
                               zip(self.recommender.item_ids[tracks[0]].tolist(), similarity[0].tolist(),
                                   strict=True)],
        }

    def save_pretrained(self, directory: str | Path, overwrite: bool = False) -> dict:
        """``tagger/``, ``fusion/``, ``multimodal/`` (if any; each a package of its own), ``recommender.npz``,
        ``pipeline.json`` and ``package.json``: one package that runs on raw files alone. Written beside the
        target and swapped in (`coldtag.storage.save_package`): a failed save leaves no half pipeline, and
        a folder holding other files is refused unless ``overwrite`` (they stay)."""
        def write(folder: Path) -> None:
            self.tagger.save_pretrained(folder / "tagger")
            self.fusion.save_pretrained(folder / "fusion")
            if self.multimodal is not None:
                self.multimodal.save_pretrained(folder / "multimodal")
            self.recommender.save(folder / RECOMMENDER_FILE)
            (folder / CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n")
        self.package = save_package(directory, write, type(self).__name__, overwrite=overwrite)
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
        pipeline = cls(AudioTagger.from_pretrained(directory / "tagger", map_location),
                       LateFusionRegressor.from_pretrained(directory / "fusion", map_location),
                       Recommender.load(directory / RECOMMENDER_FILE), multimodal=multimodal, **config)
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


class PipelineAnnotator:
    """`coldtag annotate` with a packaged `ColdStartPipeline` (`tagging.annotation`): the tag columns of
    the model that tags (the multimodal tagger if the pipeline has one, else the audio tagger), ``tags_from``,
    the predicted ``factors``, the ``users`` to recommend the track to and its ``similar_tracks``."""

    def __init__(self, pipeline: ColdStartPipeline):
        self.pipeline = pipeline
        self.package = pipeline.package
        self.tagging_model = pipeline.multimodal or pipeline.tagger
        wanted = set(map(modality_of, pipeline.fusion.inputs)) | set(pipeline.multimodal.modalities
                                                                     if pipeline.multimodal else ())
        self.reader = TrackReader.for_tagger(pipeline.tagger, lyrics="lyrics" in wanted,
                                             cover_size=pipeline.config["cover_size"] if "cover" in wanted else None)
        device = next(pipeline.tagger.parameters()).device
        # Loaded now, once, not inside the first batch (whose tracks would be charged for it).
        self.lyrics = pipeline.lyrics_encoder.to(device) if self.reader.lyrics else None
        self.cover = pipeline.cover_encoder.to(device) if self.reader.cover_size else None

    @classmethod
    def from_package(cls, directory: str | Path, device: str, allow_outside: bool = False) -> PipelineAnnotator:
        return cls(ColdStartPipeline.from_pretrained(directory, map_location=device, allow_outside=allow_outside))

    def columns(self) -> list[pa.Field]:
        return [*group_fields(self.tagging_model), pa.field("tags_from", pa.string()),
                pa.field("factors", pa.list_(pa.float32())),
                pa.field("users", pa.list_(pa.struct([("user_id", pa.string()), ("score", pa.float64())]))),
                pa.field("similar_tracks", pa.list_(pa.struct([("track_id", pa.string()),
                                                               ("similarity", pa.float64())])))]

    @torch.inference_mode()
    def predict(self, tracks: list[dict]) -> list[dict]:
        pipeline = self.pipeline
        device = next(pipeline.tagger.parameters()).device
        audio_scores: list[dict] = []
        embeddings = content_embeddings(tracks, pipeline.tagger, self.lyrics, self.cover, device, audio_scores)
        results = []
        for index in range(len(tracks)):
            known = {m: column[index] for m, column in embeddings.items() if column[index] is not None}
            record = pipeline.predict(known, audio_scores[index] if "audio" in known else None)
            tags = record["tags"] or {name: None for name in self.tagging_model.labels.groups}
            users = [{"user_id": str(u["user_id"]), "score": u["score"]} for u in record["users"]]
            similar = [{"track_id": str(t["track_id"]), "similarity": t["similarity"]}
                       for t in record["similar_tracks"]]
            results.append({"modalities": record["modalities"], **{g: tags.get(g) for g in tags},
                            "embedding": known["audio"].tolist() if "audio" in known else None,
                            "tags_from": record["tags_from"], "factors": record["factors"], "users": users,
                            "similar_tracks": similar})
        return results
