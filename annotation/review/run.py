"""An annotate run as the review page sees it: the latest record of every track, the vocabulary and decision
thresholds of the model that made them, and arrays over all tracks for searching, filtering and ordering
(10,000 records are filtered and sorted in a few milliseconds).

This is the only module of the package that reads annotation records (`read_annotations`); the rest go
through `Run`.

*Certainty* of a track is the smallest distance between a tag's probability and its decision threshold, over
every tag: 0 for a decision that could have gone either way. *Disagreement* between groups is measured on
the run's own decisions: a tag of one group decided together with a tag of another group that this run
decides together far less often than chance would (lift = joint count / the count expected if the groups
were independent); graded values take part as their group's lower, middle or upper third. The review-next
queue puts first the tracks with the highest of ``1 - certainty / 0.5`` and ``1 - lift``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from annotation.inputs import COVER_SUFFIXES, LYRICS_SUFFIXES
from annotation.records import read_annotations
from coldtag.storage import input_package, read_package
from tagging.labels import MULTILABEL, LabelSpace
from tagging.pretrained.convert import resolve_model

THIRDS = ("low", "mid", "high")
# A pair of tags expected together fewer times than this is too rare here to call a disagreement.
MIN_EXPECTED = 1.0
_KEPT = ("id", "path", "size", "duration", "sample_rate", "channels", "lyrics_path", "cover_path", "modalities",
         "warnings", "sidecar_errors", "model_sha256", "model_kind", "error")


class RunError(ValueError):
    """A run folder or model that cannot be reviewed; the command says it in one line and exits 2."""


@dataclass(frozen=True)
class ModelInfo:
    """What the review needs of a package: its vocabulary, per-tag thresholds and content hash."""

    path: Path
    kind: str
    sha256: str
    labels: LabelSpace
    thresholds: dict[str, np.ndarray]
    audio_tagger: Path | None = None  # the AudioTagger package whose chunks the page can loop


def load_model_info(directory: str | Path) -> ModelInfo:
    """The vocabulary and thresholds of a tagger package (or a pretrained or student name, as `coldtag annotate`
    takes it), or of the tagging model inside a cold-start pipeline (its multimodal tagger if it has one, else
    its audio tagger), as `coldtag annotate` uses them. The package's files are checked against its record
    first."""
    try:
        directory = resolve_model(directory)
        record = read_package(directory)
        tagging, audio = directory, directory
        if record.get("kind") == "ColdStartPipeline":
            tagging = directory / "multimodal" if (directory / "multimodal").is_dir() else directory / "tagger"
            audio = directory / "tagger"
        elif record.get("kind") == "MultimodalTagger":
            try:
                audio = input_package(directory, record, "audio")
            except ValueError:  # neither bundled nor where it was: the page offers no chunks
                audio = None
        labels = LabelSpace.from_json(tagging / "vocab.json")
        saved = json.loads((tagging / "thresholds.json").read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"--model {directory}: not a usable tagger package ({error})") from None
    thresholds = {g.name: np.array([float(saved.get(g.name, {}).get(label, 0.5)) for label in g.labels])
                  for g in labels.multilabel()}
    return ModelInfo(directory, record.get("kind", "?"), record.get("sha256", ""), labels, thresholds, audio)


class Run:
    """The records of the annotate output folder ``out``, made by the package ``model``."""

    def __init__(self, out: str | Path, model: str | Path | ModelInfo):
        self.out = Path(out)
        if not self.out.is_dir():
            raise RunError(f"{self.out}: no such run folder (the --out of a coldtag annotate run)")
        self.model = model if isinstance(model, ModelInfo) else load_model_info(model)
        self.labels = self.model.labels
        try:
            table = read_annotations(self.out)
        except FileNotFoundError as error:
            raise RunError(str(error)) from None
        except (OSError, pa.ArrowException) as error:
            raise RunError(f"{self.out}: its records cannot be read ({error})") from None
        self._check_columns(table)
        kept = [c for c in _KEPT if c in table.column_names] + list(self.labels.groups)
        self.records = table.select(kept).to_pylist()
        self.index = {record["id"]: i for i, record in enumerate(self.records)}
        self.ids = [record["id"] for record in self.records]
        self.id_rank = np.argsort(np.argsort(np.array(self.ids, dtype=object), kind="stable")).astype(float)
        self._arrays()

    def _check_columns(self, table: pa.Table) -> None:
        for name, group in self.labels.groups.items():
            if name not in table.column_names:
                raise RunError(f"{self.out}: its records have no column for the model's label group {name!r}; "
                               f"were they made by another model than {self.model.path}?")
            kind = table.schema.field(name).type
            names = ([f.name for f in kind.field("probabilities").type] if group.type == MULTILABEL
                     and pa.types.is_struct(kind) and kind.get_field_index("probabilities") >= 0
                     else [f.name for f in kind] if pa.types.is_struct(kind) else [])
            if names != list(group.labels):
                raise RunError(f"{self.out}: the records' {name!r} labels {names} are not the model's "
                               f"{list(group.labels)}; were they made by another model than {self.model.path}?")
        if "id" not in table.column_names or "path" not in table.column_names:
            raise RunError(f"{self.out}: its records have no id and path columns")

    # ----------------------------------------------------------------------------------- arrays

    def _arrays(self) -> None:
        n = len(self.records)
        self.failed = np.array([r.get("error") is not None for r in self.records], dtype=bool)
        self.flagged = np.array([bool(r.get("warnings")) or bool(r.get("sidecar_errors")) for r in self.records])
        self.search_text = [f"{r['id']}\n{r['path'] or ''}".lower() for r in self.records]
        self.probabilities, self.decided, self.values = {}, {}, {}
        for group in self.labels.groups.values():
            if group.type == MULTILABEL:
                probs = np.full((n, len(group)), np.nan)
                decided = np.zeros((n, len(group)), dtype=bool)
                position = {label: j for j, label in enumerate(group.labels)}
                for i, record in enumerate(self.records):
                    value = record.get(group.name)
                    if value is None:
                        continue
                    probs[i] = [np.nan if p is None else p for p in value["probabilities"].values()]
                    for tag in value["tags"] or []:
                        decided[i, position[tag]] = True
                self.probabilities[group.name], self.decided[group.name] = probs, decided
            else:
                values = np.full((n, len(group)), np.nan)
                for i, record in enumerate(self.records):
                    value = record.get(group.name)
                    if value is not None:
                        values[i] = [np.nan if v is None else v for v in value.values()]
                self.values[group.name] = values
        self._certainty()
        self._disagreement()
        self.priority = np.where(self.failed, -1.0, np.fmax(1 - self.certainty / 0.5, self.disagreement))

    def _certainty(self) -> None:
        n = len(self.records)
        self.certainty = np.full(n, np.inf)
        self.least_certain: list[tuple[str, str] | None] = [None] * n
        for name, probs in self.probabilities.items():
            margin = np.abs(probs - self.model.thresholds[name])
            margin = np.where(np.isnan(margin), np.inf, margin)
            if margin.shape[1] == 0:
                continue
            best = margin.argmin(axis=1)
            smallest = margin[np.arange(n), best]
            closer = smallest < self.certainty
            self.certainty = np.where(closer, smallest, self.certainty)
            labels = self.labels.groups[name].labels
            for i in np.flatnonzero(closer):
                self.least_certain[i] = (name, labels[best[i]])
        self.certainty = np.where(np.isinf(self.certainty), np.nan, self.certainty)

    def _decision_columns(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Every decided tag as a boolean column (graded values as their group's thirds), with its name."""
        names, columns = [], []
        for name, decided in self.decided.items():
            for j, label in enumerate(self.labels.groups[name].labels):
                names.append((name, label))
                columns.append(decided[:, j])
        for name, values in self.values.items():
            group = self.labels.groups[name]
            for j, label in enumerate(group.labels):
                low, high = group.ranges[j]
                third = np.floor((values[:, j] - low) / (high - low) * 3)
                for k, word in enumerate(THIRDS):
                    names.append((name, f"{label} {word}"))
                    columns.append(np.clip(third, 0, 2) == k)
        matrix = np.stack(columns, axis=1) if columns else np.zeros((len(self.records), 0), dtype=bool)
        return names, matrix & ~self.failed[:, None]

    def _disagreement(self) -> None:
        """Per track: 1 - the smallest lift of a pair of its decisions from different groups (0 if none)."""
        n = len(self.records)
        self.disagreement = np.zeros(n)
        self.disagreeing: list[tuple[tuple[str, str], tuple[str, str], float] | None] = [None] * n
        names, matrix = self._decision_columns()
        usable = int((~self.failed).sum())
        if usable == 0 or matrix.shape[1] == 0:
            return
        counts = matrix.sum(axis=0).astype(float)
        joint = matrix.T.astype(float) @ matrix.astype(float)
        expected = np.outer(counts, counts) / usable
        groups = np.array([g for g, _ in names])
        comparable = (groups[:, None] != groups[None, :]) & (expected >= MIN_EXPECTED)
        lift = np.where(comparable, joint / np.where(expected > 0, expected, 1), np.inf)
        for i in np.flatnonzero(matrix.any(axis=1)):
            on = np.flatnonzero(matrix[i])
            pairs = lift[np.ix_(on, on)]
            if not np.isfinite(pairs).any():
                continue
            a, b = np.unravel_index(np.argmin(pairs), pairs.shape)
            smallest = float(pairs[a, b])
            if smallest < 1:
                self.disagreement[i] = 1 - smallest
                self.disagreeing[i] = (names[on[a]], names[on[b]], smallest)

    # ----------------------------------------------------------------------------------- one track

    def __contains__(self, track_id: str) -> bool:
        return track_id in self.index

    def record(self, track_id: str) -> dict:
        if track_id not in self.index:
            raise KeyError(track_id)
        return self.records[self.index[track_id]]

    def machine_value(self, track_id: str, group: str, tag: str) -> float | None:
        """The model's probability (tag groups) or graded value in units of one tag of one track."""
        i, spec = self.index[track_id], self.labels.groups[group]
        array = self.probabilities.get(group) if spec.type == MULTILABEL else self.values.get(group)
        value = array[i, spec.labels.index(tag)]
        return None if math.isnan(value) else float(value)

    def reason(self, i: int) -> str:
        """Why track ``i`` stands where it does in the review-next queue."""
        if self.failed[i]:
            return "error record"
        parts = []
        if self.least_certain[i] is not None:
            group, tag = self.least_certain[i]
            j = self.labels.groups[group].labels.index(tag)
            parts.append(f"{group}/{tag}: p = {self.probabilities[group][i, j]:.2f}, threshold "
                         f"{self.model.thresholds[group][j]:.2f}")
        if self.disagreeing[i] is not None:
            (g1, t1), (g2, t2), lift = self.disagreeing[i]
            parts.append(f"{g1}/{t1} with {g2}/{t2}: {lift:.2f}x as often as chance in this run")
        return "; ".join(parts)

    def audio_path(self, track_id: str) -> Path:
        return Path(self.record(track_id)["path"])

    def sidecar(self, track_id: str, kind: str) -> Path | None:
        """The record's lyrics or cover file, else a file of the same stem beside the audio (the sidecars
        `coldtag annotate` reads from a folder, which an audio-only model's records do not name)."""
        record = self.record(track_id)
        named = record.get(f"{kind}_path")
        if named and Path(named).is_file():
            return Path(named)
        if not record["path"]:
            return None
        audio = Path(record["path"])
        for suffix in LYRICS_SUFFIXES if kind == "lyrics" else COVER_SUFFIXES:
            for candidate in (audio.with_suffix(suffix), audio.with_suffix(suffix.upper())):
                if candidate.is_file():
                    return candidate
        return None
