"""The demo's own steps: the uploads folder, the recommendations shown with their reasons, and
``report.md`` with its plots, every number read from the files the demo's commands wrote.

Toy tracks have ids, not names: `toy_name` gives each artist and track a made-up name (a hash of its id
into two word lists), so that a list of recommendations reads like one.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from coldtag.intervals import cluster_bootstrap
from coldtag.storage import atomic_write, write_json

if TYPE_CHECKING:
    from toycatalog.demo import Demo

# The published cosine distances (Oramas, Nieto et al. 2017, test set, lower is better) of the rows they had.
PUBLISHED = {"Audio (patches)": 0.25, "Audio (full track)": 0.21, "MGP": 0.15, "MLG": 0.22, "Audio + MLG": 0.19,
             "Audio + MLG + genre": 0.16}
# Formats the uploads are re-encoded into (with FFmpeg), in turn; the first keeps the catalog's own file.
UPLOAD_FORMATS = (None, "ogg", "flac", "wav", "m4a")
BAD_FILES = {"broken-empty.mp3": "an empty file", "broken-not-audio.wav": "a text file named .wav",
             "broken-truncated.flac": "a FLAC cut to a quarter of its bytes"}
_ADJECTIVES = ("Velvet", "Copper", "Hollow", "Silver", "Amber", "Quiet", "Electric", "Paper", "Northern", "Golden",
               "Restless", "Crimson", "Wooden", "Lunar", "Salt", "Distant", "Wild", "Glass", "Iron", "Blue")
_NOUNS = ("Harbor", "Owls", "Lanterns", "Rivers", "Foxes", "Engines", "Orchard", "Satellites", "Pines", "Tides",
          "Mirrors", "Sparrows", "Canyons", "Bells", "Meadows", "Comets", "Ferries", "Kites", "Ashes", "Wolves")
_TITLES = ("Morning", "Road", "Letters", "Fever", "Window", "Summer", "Ghost", "Harvest", "Station", "Promise",
           "Midnight", "Lullaby", "Signal", "Shoreline", "Dancer", "Winter", "Echo", "Garden", "Static", "Home")


def toy_name(identifier: str, kind: str) -> str:
    """A made-up, stable name for a toy ``artist`` or ``track`` id."""
    digest = hashlib.sha256(f"{kind}:{identifier}".encode()).digest()
    if kind == "artist":
        return f"The {_ADJECTIVES[digest[0] % 20]} {_NOUNS[digest[1] % 20]}"
    return f"{_TITLES[digest[0] % 20]} {_TITLES[digest[1] % 20].lower()}"


# ---------------------------------------------------------------------------------------------------------
# uploads


def make_uploads(data: Path, folder: Path, n: int, seed: int) -> None:
    """``folder``: ``n`` cold-test tracks of the catalog (of as many artists as can be; the tagger never heard
    them, nobody played them in the warm data), several re-encoded into other formats, with their lyrics and cover
    sidecars, and the `BAD_FILES`. ``README.txt`` (last) lists them."""
    manifest = pd.read_parquet(data / "manifest.parquet")
    cold = manifest[manifest["item_split"] == "cold_test"].sort_values("track_id")
    # As many artists as there can be: each artist's first track, then the others, each part shuffled.
    first = cold.duplicated("artist_id")
    chosen = pd.concat([cold[~first].sample(frac=1.0, random_state=seed),
                        cold[first].sample(frac=1.0, random_state=seed)]).head(n)
    if len(chosen) < n:
        raise ValueError(f"{data}: {len(chosen)} cold-test tracks, fewer than the {n} uploads asked for")
    folder.mkdir(parents=True, exist_ok=True)
    ffmpeg = shutil.which("ffmpeg")
    lines = ["New tracks for `coldtag annotate` (python -m toycatalog demo):", ""]
    for i, track in enumerate(chosen.itertuples(index=False)):
        source = data / track.audio_path
        wanted = UPLOAD_FORMATS[i % len(UPLOAD_FORMATS)] if ffmpeg else None
        target = folder / f"{track.track_id}{source.suffix if wanted is None else '.' + wanted}"
        if wanted is None:
            shutil.copyfile(source, target)
        else:
            subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(source), str(target)], check=True)
        sidecars = []
        for column in ("lyrics_path", "cover_path"):
            path = getattr(track, column)
            if isinstance(path, str):
                shutil.copyfile(data / path, folder / f"{track.track_id}{Path(path).suffix}")
                sidecars.append(column.split("_")[0])
        lines.append(f"- {target.name}: cold-test track {track.track_id} by {track.artist_id}"
                     + (f", with its {' and '.join(sidecars)}" if sidecars else ", audio only"))
    (folder / "broken-empty.mp3").write_bytes(b"")
    (folder / "broken-not-audio.wav").write_text("These are liner notes, not audio.\n")
    flac = folder / "broken-truncated.flac"
    if ffmpeg:
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(data / chosen.iloc[0]["audio_path"]), str(flac)],
                       check=True)
    else:
        shutil.copyfile(data / chosen.iloc[0]["audio_path"], flac)
    whole = flac.read_bytes()
    flac.write_bytes(whole[: len(whole) // 4])
    lines += [f"- {name}: {what}" for name, what in BAD_FILES.items()]
    atomic_write(folder / "README.txt", "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------------
# recommendations


def annotations(run: Path) -> pd.DataFrame:
    from annotation.records import read_annotations

    return read_annotations(run / "annotate").to_pandas()


def write_recommendations(data: Path, run: Path, shown: int = 3) -> None:
    """``recommendations.md`` (and ``.json``): each upload the pipeline read, as the cold-start papers show
    one: the query track, then its ``shown`` nearest catalog tracks in the predicted factor space, with
    artist, title and why: the tags the query was given that the catalog track carries, and how close
    their factors are. The query's own catalog annotation is shown beside its predicted tags."""
    records = annotations(run)
    manifest = pd.read_parquet(data / "manifest.parquet").set_index("track_id")
    groups = ("genre", "mood", "attribute")
    out, lines = [], ["# Cold-start recommendations for the uploads", "",
                      "Each upload is a cold-test track: no listener of the training data played it. The pipeline "
                      "predicted its tags and its collaborative factors from its content; the catalog tracks "
                      "below are the nearest in that factor space (cosine similarity). Why: the upload's "
                      "predicted tags that the recommended track is annotated with. Names are made up for the toy "
                      "(`toycatalog.report.toy_name`).", ""]
    for record in records.sort_values("path").itertuples(index=False):
        track_id = Path(record.path).stem
        if record.error or track_id not in manifest.index or record.similar_tracks is None:
            continue
        track = manifest.loc[track_id]
        predicted = {g: list(getattr(record, g)["tags"]) for g in groups if getattr(record, g) is not None}
        tags = [t for g in groups for t in predicted.get(g, [])]
        query = {"upload": Path(record.path).name, "track_id": track_id, "artist": toy_name(track.artist_id, "artist"),
                 "title": toy_name(track_id, "track"), "modalities": list(record.modalities),
                 "predicted": predicted, "annotated": {g: list(track[g]) for g in groups}, "ranked": []}
        lines += [f"**{query['title']}** by {query['artist']} (`{query['upload']}`, read from "
                  f"{', '.join(query['modalities'])})  ",
                  f"predicted: {_tag_text(predicted)}  ",
                  f"annotated in the catalog: {_tag_text(query['annotated'])}", ""]
        for rank, neighbour in enumerate(list(record.similar_tracks)[:shown], 1):
            other = manifest.loc[neighbour["track_id"]]
            shared = [t for t in tags if t in {x for g in groups for x in other[g]}]
            item = {"rank": rank, "track_id": neighbour["track_id"], "artist": toy_name(other.artist_id, "artist"),
                    "title": toy_name(neighbour["track_id"], "track"), "similarity": neighbour["similarity"],
                    "shared_tags": shared}
            query["ranked"].append(item)
            why = f"shares {', '.join(shared)}" if shared else "no predicted tag in common: close in listening only"
            lines.append(f"{rank}. **{item['title']}** by {item['artist']}: similarity {item['similarity']:.2f}; "
                         f"why: {why}")
        lines.append("")
        out.append(query)
    if not out:
        raise ValueError(f"{run / 'annotate'}: no upload was annotated with similar tracks")
    write_json(run / "recommendations.json", out)
    atomic_write(run / "recommendations.md", "\n".join(lines) + "\n")


def _tag_text(tags: dict[str, list[str]]) -> str:
    return "; ".join(f"{g} {', '.join(v) if len(v) else '—'}" for g, v in tags.items())


# ---------------------------------------------------------------------------------------------------------
# the report


def write_report(demo: Demo) -> None:
    """``OUT/report.md``, ``OUT/plots/*.png`` and ``OUT/summary.txt`` (what the demo prints at its end)."""
    import matplotlib

    matplotlib.use("Agg")
    run, data = demo.out, demo.data
    plots = run / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    catalog = json.loads((data / "summary.json").read_text())
    resamples = demo.preset.resamples
    sections = [_header(demo, catalog), _stages(demo)]
    tags, tag_summary = _tag_section(run, plots, resamples)
    sections.append(tags)
    ablation, ablation_summary = _ablation_section(demo, plots, resamples)
    sections.append(ablation)
    sections.append(_factor_map_section(demo, plots))
    sections.append("## Listener controls\n\nThe warm tracks' listeners, 20 % of each one's plays held out and WMF "
                    "refitted on the rest (`python scripts/listener_controls.py`); the mixer's facets are the "
                    "audio tagger's predicted scores.\n\n" + (run / "listener_controls.md").read_text())
    annotate, annotate_summary = _annotate_section(run)
    sections.append(annotate)
    sections.append((run / "recommendations.md").read_text().replace("# Cold-start", "## Cold-start", 1))
    atomic_write(run / "report.md", "\n\n".join(s.strip() for s in sections) + "\n")
    summary = [f"Demo ({demo.preset_name} preset): {catalog['tracks']} tracks by {catalog['artists']} artists, "
               f"{catalog.get('users', 0)} listeners.", tag_summary, ablation_summary, annotate_summary]
    atomic_write(run / "summary.txt", "\n".join(summary) + "\n")


def _header(demo: Demo, catalog: dict) -> str:
    return "\n".join([
        "# Demo report", "",
        f"Everything below was computed by `python -m toycatalog demo` (`make demo`), preset `{demo.preset_name}`, "
        f"seed {demo.seed}, on the synthesized toy catalog in `{demo.data}`: {catalog['tracks']} tracks by "
        f"{catalog['artists']} artists ({catalog['hours']:.1f} h of audio in "
        f"{', '.join(f'{n} {k}' for k, n in catalog['formats'].items())}), "
        f"{catalog.get('lyrics', 0)} with lyrics, {catalog.get('covers', 0)} with a cover, "
        f"{catalog.get('users', 0)} simulated listeners.", "",
        "**What the toy generator decides.** Each track's genre, mood and attributes are drawn first and the "
        "audio, lyrics and cover are synthesized from them; in the catalog's own listening world each listener "
        "chooses tracks by liked and disliked traits of the vocabulary, so a model that reads the annotated "
        "traits must come closest to the listeners' factors by construction. The second world moves "
        f"{demo.preset.hidden_taste:.0%} of the listeners' taste onto traits the audio carries and the "
        "vocabulary does not list, where that advantage is gone. Every interval is a 95 % percentile bootstrap "
        f"that resamples artists ({demo.preset.resamples} resamples); every comparison is on tracks the model "
        "did not learn from."])


def _stages(demo: Demo) -> str:
    lines = ["## Stages", "", "Each stage is keyed by its commands and configs; a changed config re-runs the stages "
             "it touches (`python -m toycatalog demo --only STAGE` re-runs one).", "",
             "| stage | what | seconds | commands |", "|---|---|---:|---|"]
    for stage in demo.stages:
        state = demo.state(stage)
        if stage.name == "report":
            seconds = "(this)"
        else:
            seconds = f"{state['seconds']:.0f}" if state else "—"
        commands = "<br>".join(f"`{c.shell()}`" for c in stage.commands) or "(the demo's own step)"
        lines.append(f"| {stage.name} | {stage.what} | {seconds} | {commands} |")
    return "\n".join(lines)


def _interval(value: float, low: float, high: float, digits: int = 3) -> str:
    if math.isnan(value):
        return "—"
    if math.isnan(low):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _signed(value: float, low: float, high: float) -> str:
    if pd.isna(value):
        return "—"
    return f"{value:+.3f}" + ("" if pd.isna(low) else f" [{low:+.3f}, {high:+.3f}]")


def _tag_section(run: Path, plots: Path, resamples: int) -> tuple[str, str]:
    """Macro ROC-AUC per group and modality with intervals, the ROC/PR curves and the confusion views."""
    from tagging.data.features import TrackFeatures
    from tagging.evaluation.evaluate import modality_scores, roc_auc
    from tagging.models.multimodal import MultimodalTagger

    model = MultimodalTagger.from_pretrained(run / "multimodal" / "model")
    scores = modality_scores(model, run / "manifest.parquet", TrackFeatures.load(run / "features.npz"),
                             split="test", split_column="fusion_split")
    artists = scores.frame["artist_id"].astype(str).to_numpy()
    groups = [g.name for g in model.labels.multilabel()]
    lines = ["## Tags", "",
             "The audio tagger beside the log-mel statistics baseline (`python -m tagging evaluate baseline`), on "
             "the tagger's test artists:", "", (run / "tagger" / "tagger_vs_baseline.md").read_text().strip(), "",
             f"Every modality alone and fused (the multimodal tagger, `python -m tagging evaluate modalities`), on "
             f"the fusion stage's test artists ({len(scores.frame)} tracks, {len(set(artists))} artists): macro "
             "ROC-AUC with its 95 % artist-resampled interval; n: tracks the row scores.", "",
             "| inputs | n | " + " | ".join(groups) + " |", "|---|---:|" + "---:|" * len(groups)]
    everyone = scores.populations["all tracks"]
    fused = None
    for name, scored in scores.scored.items():
        keep = np.flatnonzero(everyone & scored)
        cells = []
        for group in groups:
            if group not in scores.scores[name]:
                cells.append("—")
                continue
            truth, values = scores.targets[group][keep], scores.scores[name][group][keep]
            value, low, high, _ = cluster_bootstrap(lambda rows, t=truth, v=values: roc_auc(t[rows], v[rows]),
                                                    artists[keep], resamples)
            cells.append(_interval(value, low, high))
        lines.append(f"| {name} | {len(keep)} | " + " | ".join(cells) + " |")
        if name.startswith("fused"):
            fused = name
    differences = pd.read_csv(run / "multimodal" / "modalities_vs_tagger.csv")
    differences = differences[(differences["tracks"] == "all tracks") & (differences["metric"] == "roc_auc")]
    lines += ["", "Each row minus the audio tagger's own scores on the tracks both score (macro ROC-AUC, 95 % "
              "artist-resampled interval; all of them, PR-AUC too, in `multimodal/modalities_vs_tagger.md`):", "",
              "| inputs | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for name, rows in differences.groupby("inputs", sort=False):
        by_group = rows.set_index("group")
        lines.append(f"| {name} | " + " | ".join(
            _signed(by_group.loc[g, "difference"], by_group.loc[g, "95 % low"], by_group.loc[g, "95 % high"])
            if g in by_group.index else "—" for g in groups) + " |")
    lines.append("")
    for group in groups:
        path = plots / f"tags_{group}.png"
        _curves(scores, group, everyone, path)
        lines.append(f"![ROC and PR curves, {group}](plots/{path.name})")
    best = fused or next(iter(scores.scored))
    keep = everyone & scores.scored[best]
    lines += ["", f"Decided tags of the {best} row against the annotations (the share of the tracks annotated with "
              "a row's tag that were given each column's tag; thresholds as the package holds them):", ""]
    for group in groups:
        truth = scores.targets[group][keep]
        decided = scores.scores[best][group][keep] >= model.thresholds(group).numpy()[None, :]
        path = plots / f"confusion_{group}.png"
        _confusion(truth, decided, model.labels.groups[group].labels, f"{group}: annotated vs decided ({best})", path)
        lines.append(f"![decided vs annotated, {group}](plots/{path.name})")
    audio_row = "audio only" if "audio only" in scores.scored else best
    values = {g: roc_auc(scores.targets[g][everyone & scores.scored[audio_row]],
                         scores.scores[audio_row][g][everyone & scores.scored[audio_row]]) for g in groups}
    summary = "Tags, macro ROC-AUC on test artists (" + audio_row + "): " + ", ".join(
        f"{g} {v:.3f}" for g, v in values.items()) + "."
    return "\n".join(lines), summary


def _curves(scores, group: str, population: np.ndarray, path: Path) -> None:
    """ROC and PR curves of ``group``, micro-averaged over its labels, one line per row of the table."""
    import matplotlib.pyplot as plt

    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, scored in scores.scored.items():
        if group not in scores.scores[name]:
            continue
        keep = population & scored
        truth = scores.targets[group][keep].ravel()
        values = scores.scores[name][group][keep].ravel()
        known = ~np.isnan(truth)
        fpr, tpr, recall, precision = _curve_points(truth[known] > 0.5, values[known])
        roc_axis.plot(fpr, tpr, label=name)
        pr_axis.plot(recall, precision, label=name)
    roc_axis.plot([0, 1], [0, 1], color="0.7", linestyle=":")
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{group}: ROC (micro)")
    pr_axis.set(xlabel="recall", ylabel="precision", title=f"{group}: precision-recall (micro)")
    pr_axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _curve_points(truth: np.ndarray, scores: np.ndarray):
    order = np.argsort(-scores, kind="stable")
    hits = truth[order].astype(float)
    tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
    positives, negatives = max(hits.sum(), 1), max((1 - hits).sum(), 1)
    tpr, fpr = np.r_[0, tp / positives], np.r_[0, fp / negatives]
    precision = tp / np.maximum(tp + fp, 1)
    return fpr, tpr, tp / positives, precision


def _confusion(truth: np.ndarray, decided: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    truth = np.nan_to_num(truth) > 0.5
    counts = truth.sum(axis=0)
    matrix = (truth.T.astype(float) @ decided.astype(float)) / np.maximum(counts, 1)[:, None]
    size = max(4.0, 0.32 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(len(labels)), [f"{label} ({n})" for label, n in zip(labels, counts, strict=True)],
                    fontsize=7)
    axis.set(xlabel="decided", ylabel="annotated (tracks)", title=title)
    figure.colorbar(image, ax=axis, fraction=0.04)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _ablation_section(demo: Demo, plots: Path, resamples: int) -> tuple[str, str]:
    """Both worlds' tables side by side with the published numbers, intervals of each row's cosine distance
    from its per-item distances, and the bar chart."""
    from fusion.ablation import ablation_predictions, item_artists
    from recsys import ColdStartSplit
    from tagging.labels import read_manifest

    worlds = {"catalog world": demo.out / "fusion", "hidden-taste world": demo.out / "hidden-world" / "fusion"}
    recsys = {"catalog world": demo.out / "recsys", "hidden-taste world": demo.out / "hidden-world" / "recsys"}
    manifest = read_manifest(demo.out / "manifest.parquet")
    rows: dict[str, dict[str, tuple[float, float, float]]] = {}
    recall: dict[str, dict[str, float]] = {}
    baselines: dict[str, pd.DataFrame] = {}
    for world, folder in worlds.items():
        split = ColdStartSplit.load(recsys[world] / "coldstart.npz")
        artists = item_artists(split, manifest, "artist_id", demo.out / "manifest.parquet").astype(str)
        truth = split.item_factors[split.items("cold_test")]
        truth = truth / np.maximum(np.linalg.norm(truth, axis=1, keepdims=True), 1e-12)
        table = pd.read_csv(folder / "table.csv", index_col=0)
        baselines[world] = table
        for name, predicted in ablation_predictions(folder).items():
            unit = predicted / np.maximum(np.linalg.norm(predicted, axis=1, keepdims=True), 1e-12)
            distance = 1 - (unit * truth).sum(axis=1)
            value, low, high, _ = cluster_bootstrap(lambda r, d=distance: float(d[r].mean()), artists, resamples)
            rows.setdefault(name, {})[world] = (value, low, high)
            recall.setdefault(name, {})[world] = float(table.loc[name, "recall@50"])
    lines = ["## Cold start: content -> collaborative factors", "",
             "Every row of the ablation of Oramas, Nieto et al. (2017), trained on the fusion stage's warm tracks "
             "(whose features the tagger never learnt from), early-stopped on cold-validation tracks, scored on "
             "cold-test tracks nobody played in training: cosine distance between predicted and true factors "
             "(lower is better) with its 95 % artist-resampled interval, and Recall@50 of the listeners who really "
             "played each track. Published: the paper's cosine distance for the row it had (its data: 83k tracks, "
             "Music Genome Project attributes). MGP: the catalog's annotated attributes; MLG: the tagger's "
             "predicted ones.", "",
             "| row | published | " + " | ".join(f"{w}: cosine | Recall@50" for w in worlds) + " |",
             "|---|---:|" + "---:|---:|" * len(worlds)]
    for name, values in rows.items():
        published = next((v for k, v in PUBLISHED.items() if name == k or name.startswith(k + " (")), None)
        cells = []
        for world in worlds:
            cells += [_interval(*values[world]), f"{recall[name][world]:.3f}"]
        lines.append(f"| {name} | {'—' if published is None else f'{published:.2f}'} | " + " | ".join(cells) + " |")
    for baseline in ("mean warm factor", "popularity", "random"):
        cells = []
        for world in worlds:
            table = baselines[world]
            if baseline not in table.index:
                cells += ["—", "—"]
                continue
            cosine = table.loc[baseline, "cosine_distance"]
            cells += ["—" if pd.isna(cosine) else f"{cosine:.3f}", f"{table.loc[baseline, 'recall@50']:.3f}"]
        lines.append(f"| {baseline} (baseline) | — | " + " | ".join(cells) + " |")
    lines += ["", "Each row against the one above it, difference of cosine distance (negative favours the row) with "
              "its artist-resampled interval (with Recall@50 and against popularity in `differences.md` of each "
              "world's `python -m fusion ablation`):", "",
              "| row | versus | " + " | ".join(worlds) + " |", "|---|---|" + "---:|" * len(worlds)]
    tables = {w: pd.read_csv(folder / "differences.csv") for w, folder in worlds.items()}
    first = tables["catalog world"]
    for pair in first[first["metric"] == "cosine_distance"].itertuples(index=False):
        cells = []
        for table in tables.values():
            match = table[(table["row"] == pair.row) & (table["versus"] == pair.versus)
                          & (table["metric"] == "cosine_distance")]
            cells.append("—" if match.empty else _signed(*match.iloc[0][["difference", "low", "high"]]))
        lines.append(f"| {pair.row} | {pair.versus} | " + " | ".join(cells) + " |")
    lines += ["", "![ablation with intervals](plots/ablation.png)"]
    _ablation_bars(rows, PUBLISHED, plots / "ablation.png")
    best = {w: min(rows, key=lambda n: rows[n][w][0]) for w in worlds}
    summary = "Cold start, lowest cosine distance: " + "; ".join(
        f"{w}: {best[w]} {rows[best[w]][w][0]:.3f}" for w in worlds) + "."
    return "\n".join(lines), summary


def _ablation_bars(rows: dict, published: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = list(rows)[::-1]
    worlds = list(next(iter(rows.values())))
    figure, axis = plt.subplots(figsize=(10, 0.5 * len(names) + 1.6))
    height = 0.8 / (len(worlds) + 1)
    y = np.arange(len(names))
    for i, world in enumerate(worlds):
        values = np.array([rows[n][world][0] for n in names])
        errors = np.array([[rows[n][world][0] - rows[n][world][1], rows[n][world][2] - rows[n][world][0]]
                           for n in names]).T
        axis.barh(y + i * height, values, height, xerr=np.nan_to_num(errors), label=world, capsize=2)
    marks = [(j, v) for j, n in enumerate(names) for k, v in published.items() if n == k or n.startswith(k + " (")]
    if marks:
        axis.scatter([v for _, v in marks], [j + len(worlds) * height for j, _ in marks], marker="d", color="k",
                     label="published (83k tracks)", zorder=3)
    axis.set_yticks(y + height * (len(worlds) - 1) / 2, names, fontsize=8)
    axis.set_xlabel("cosine distance to the true factors of cold-test tracks (lower is better), 95 % interval")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _factor_map_section(demo: Demo, plots: Path) -> str:
    """The warm tracks' factors on their first two principal axes, by genre, and the cold-test tracks placed
    by the factors the pipeline's chosen row predicted (lines to where their true factors lie)."""
    import matplotlib.pyplot as plt

    from fusion.ablation import ablation_predictions
    from fusion.stages import best_content_row
    from recsys import ColdStartSplit

    split = ColdStartSplit.load(demo.out / "recsys" / "coldstart.npz")
    chosen = best_content_row(demo.out / "fusion").parent.resolve()
    rows = json.loads((demo.out / "fusion" / "rows.json").read_text())
    row = next(r["name"] for r in rows if Path(r["dir"]).resolve() == chosen)
    predictions = ablation_predictions(demo.out / "fusion")
    warm = split.item_factors[split.items("warm")]
    cold = split.item_factors[split.items("cold_test")]

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    warm, cold, predicted = unit(warm), unit(cold), unit(predictions[row])
    centre = warm.mean(axis=0)
    _, _, axes = np.linalg.svd(warm - centre, full_matrices=False)
    project = lambda x: (x - centre) @ axes[:2].T  # noqa: E731
    manifest = pd.read_parquet(demo.data / "manifest.parquet").set_index("track_id")
    genres = manifest["genre"].map(lambda g: g[0] if len(g) else "none")
    warm_genre = genres.reindex(split.item_ids[split.items("warm")].astype(str)).fillna("none").to_numpy()
    figure, axis = plt.subplots(figsize=(8, 7))
    points = project(warm)
    for genre in sorted(set(warm_genre)):
        mask = warm_genre == genre
        axis.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.35, label=genre)
    shown = min(len(cold), 40)
    start, end = project(predicted[:shown]), project(cold[:shown])
    for (x0, y0), (x1, y1) in zip(start, end, strict=True):
        axis.plot([x0, x1], [y0, y1], color="0.4", linewidth=0.6)
    axis.scatter(start[:, 0], start[:, 1], marker="*", s=70, color="k", label="cold track, predicted factors")
    axis.scatter(end[:, 0], end[:, 1], marker="x", s=25, color="red", label="its true factors")
    axis.set(title=f"Factor space: the warm tracks' first two principal axes\ncold-test tracks placed by {row}",
             xlabel="axis 1", ylabel="axis 2")
    axis.legend(fontsize=7, markerscale=1.5, ncol=2)
    figure.tight_layout()
    figure.savefig(plots / "factor_map.png", dpi=110)
    plt.close(figure)
    distance = 1 - (predicted * cold).sum(axis=1)
    return "\n".join(["## The factor space", "",
                      f"Warm tracks by genre; {shown} cold-test tracks placed by the factors the packaged "
                      f"pipeline's row ({row}) predicted from their content, each joined to its true factors "
                      f"(mean cosine distance over all {len(cold)} cold-test tracks {distance.mean():.3f}).", "",
                      "![factor map](plots/factor_map.png)"])


def _annotate_section(run: Path) -> tuple[str, str]:
    summary = json.loads((run / "annotate" / "summary.json").read_text())
    records = annotations(run)
    failed = records[records["error"].notna()].sort_values("path")
    done = records[records["error"].isna()]
    seconds, audio_seconds = summary["seconds"], summary["audio_seconds"]
    speed = summary["times_real_time"] or math.nan
    lines = ["## Annotating uploads", "",
             f"`coldtag annotate {run / 'uploads'} --model {run / 'pipeline'}`: {summary['done']} "
             f"tracks annotated, {summary['failed']} failed, in {seconds:.1f} s of wall time "
             f"({audio_seconds:.0f} s of audio: {speed:.1f}x real time, decoding, tags, factors and neighbours "
             "together, with the models' loading). Every bad file is a record with its error; the batch went on:",
             "", "| file | error |", "|---|---|"]
    lines += [f"| {Path(r.path).name} | {r.error['type']}: {r.error['message'].splitlines()[0][:200]} |"
              for r in failed.itertuples()]
    text = (f"Annotation: {len(done)} uploads tagged, {len(failed)} bad files each named with its error, "
            f"{speed:.1f}x real time.")
    return "\n".join(lines), text
