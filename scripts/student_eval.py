"""Students against their teachers on the held-out albums of the real-recording corpus, and the per-tag
thresholds that pretrained and student packages ship.

    .venv/bin/python scripts/student_eval.py agreement --manifest data/real/manifest.csv \\
        --teacher musicnn-mtt --teacher musicnn-msd --student NAME=DIR [--student ...] \\
        [--reference vgg-mtt:musicnn-mtt] --out runs/distil/eval
    .venv/bin/python scripts/student_eval.py thresholds --manifest data/real/manifest.csv \\
        --model musicnn-mtt --model NAME=DIR ... --out runs/distil/thresholds.json [--write-students]

``agreement`` reads each held-out track once through `TrackReader` on the models' shared chunk grid (every
teacher and student here shares the sample rate, the chunk length and the grid) thinned to 16 evenly spaced
chunks (``--max-chunks``; Won et al.'s evaluation grid: a 30-s upload has 10 chunks and is read whole, a
10-minute track costs 16 chunks instead of 200) and scores it with each model's own
`AudioTagger.chunk_outputs`, as ``coldtag annotate`` does; a model's track probabilities are cached in OUT by
the hash of its weights and config.

``agreement`` (split ``test`` by default): for each student and each teacher that taught it, the rules of
`tagging.pretrained.agreement` (mean per-tag Spearman over the tags the teacher varies on, top-3 overlap, macro
ROC-AUC against the teacher's decided tags at the teacher's shipped thresholds), each with a 95 % interval
from resampling albums (`coldtag.intervals.cluster_bootstrap`). ``--reference vgg-mtt:musicnn-mtt`` adds a row
for a model that learnt the teacher's labels rather than its outputs, scored by the same rules: how closely
two taggers of the same training data agree on these albums. Written to ``OUT/agreement.md`` and ``.json``.

``thresholds`` (split ``train``): `tagging.pretrained.agreement.expected_share_thresholds` of each model's
probabilities on the training albums (each track's mean over every chunk of its first 480 s, the audio the
students learn from, read from and added to the distillation cache), written as JSON
``{model: {group: {label: threshold}}}``; ``--write-students`` also saves them into the student packages given
as NAME=DIR.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from coldtag.intervals import cluster_bootstrap  # noqa: E402
from tagging.models.tagger import AudioTagger  # noqa: E402
from tagging.pretrained.agreement import (  # noqa: E402
    MIN_STD,
    decided_auc,
    expected_share_thresholds,
    spearman_per_tag,
    top_k_overlap,
    varying_tags,
)
from tagging.pretrained.convert import resolve_model  # noqa: E402
from tagging.pretrained.distil import cached_audio, cached_logits, taught_groups  # noqa: E402
from tagging.tracks import TrackReader  # noqa: E402


def split_rows(manifest: Path, split: str) -> list[dict]:
    with open(manifest, newline="") as handle:
        rows = [{**row, "audio_path": str(manifest.parent / row["audio_path"])} for row in csv.DictReader(handle)
                if row["split"] == split]
    if not rows:
        raise SystemExit(f"student_eval: {manifest} has no track of split {split!r}")
    return rows


def named(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` or a name/path `resolve_model` knows."""
    name, _, path = spec.partition("=")
    return (name, Path(path)) if path else (spec, resolve_model(spec))


def track_scores(models: dict[str, AudioTagger], rows: list[dict], out: Path, max_chunks: int | None
                 ) -> dict[str, dict[str, np.ndarray]]:
    """``{model: {group: (tracks, labels)}}`` for ``rows`` on the models' chunk grid thinned to ``max_chunks``,
    cached per weights in ``out/scores``."""
    ids = [row["track_id"] for row in rows]
    results, todo = {}, {}
    for name, model in models.items():
        weights = hashlib.sha256("".join(model.package["files"][f] for f in ("model.safetensors", "config.json"))
                                 .encode()).hexdigest()
        file = out / "scores" / f"{weights[:16]}-{max_chunks}.npz"  # the thresholds do not change the scores
        cached = dict(np.load(file, allow_pickle=False)) if file.exists() else {}
        if cached and list(cached.pop("track_id")) == ids:
            results[name] = cached
        else:
            todo[name] = (model, file)
    if todo:
        first = next(iter(todo.values()))[0]
        reader = TrackReader(first.sample_rate, first.chunk_samples, max_chunks)
        sums = {name: {g: [] for g in model.labels.groups} for name, (model, _) in todo.items()}
        for i, row in enumerate(rows):
            track = reader(row["audio_path"])
            if track.chunks is None:
                raise SystemExit(f"student_eval: {row['audio_path']}: {track.error['message']}")
            with torch.inference_mode():
                for name, (model, _) in todo.items():
                    scores = model.chunk_outputs([track.chunks]).scores
                    for group, value in scores.items():
                        sums[name][group].append(value[0].numpy())
            print(f"  scored {i + 1}/{len(rows)} {row['track_id']}", file=sys.stderr, flush=True)
        for name, (_, file) in todo.items():
            results[name] = {g: np.stack(v) for g, v in sums[name].items()}
            file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(file, track_id=np.array(ids), **results[name])
    return results


def flat(scores: dict[str, np.ndarray], groups: list[str]) -> np.ndarray:
    return np.concatenate([scores[g] for g in groups], axis=1)


def interval(statistic, albums: list[str]) -> dict:
    value, low, high, _ = cluster_bootstrap(statistic, albums, resamples=2000, seed=0)
    return {"value": value, "low": low, "high": high}


def agreement_metrics(s: np.ndarray, t: np.ndarray, decided: np.ndarray, tags: np.ndarray, albums: list[str]
                      ) -> dict:
    """The three agreement figures of student ``s`` with teacher ``t`` (tracks x tags), album intervals."""
    return {"spearman": interval(lambda r: float(np.nanmean(spearman_per_tag(s[r], t[r], tags))), albums),
            "top3": interval(lambda r: float(top_k_overlap(s[r], t[r], 3).mean()), albums),
            "decided_auc": interval(lambda r: decided_auc(s[r], decided[r]), albums)}


def agreement(options: argparse.Namespace) -> None:
    rows = split_rows(options.manifest, options.split)
    albums = [row["album"] for row in rows]
    teachers = {name: AudioTagger.from_pretrained(path) for name, path in map(named, options.teacher)}
    students = {name: AudioTagger.from_pretrained(path) for name, path in map(named, options.student)}
    references = {}  # {model: the teacher it is set beside}
    for spec in options.reference:
        model, _, teacher = spec.rpartition(":")
        if teacher not in teachers:
            raise SystemExit(f"--reference {spec}: {teacher!r} is not among the --teacher models")
        name, path = named(model)
        references[name] = teacher
        students[name] = AudioTagger.from_pretrained(path)
    scores = track_scores({**teachers, **students}, rows, options.out, options.max_chunks)
    table = []
    for student_name, student in students.items():
        params = sum(p.numel() for p in student.parameters())
        for teacher_name, teacher in teachers.items():
            if student_name in references:  # the same vocabulary, learnt from the same labels
                groups = {g: g for g in teacher.labels.groups} if references[student_name] == teacher_name else None
            else:
                groups = taught_groups(student, teacher_name)
            if groups is None:
                continue
            order = list(teacher.labels.groups)
            t = flat(scores[teacher_name], order)
            s = flat(scores[student_name], [groups[g] for g in order])
            thresholds = torch.cat([teacher.thresholds(g) for g in order]).numpy()
            decided = t >= thresholds
            tags = varying_tags(t)
            table.append({
                "student": student_name, "teacher": teacher_name, "parameters": params,
                "config": {k: student.config[k] for k in ("backbone", "width", "embedding_dim", "n_mels",
                                                         "n_fft", "hop_length")},
                "varying_tags": len(tags), "tags": t.shape[1], "tracks": len(rows), "albums": len(set(albums)),
                **agreement_metrics(s, t, decided, tags, albums),
            })
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "agreement.json").write_text(json.dumps(table, indent=2))
    lines = [f"Held-out split {options.split!r}: {len(rows)} tracks of {len(set(albums))} albums "
             f"({', '.join(sorted(set(albums)))}); 95 % intervals from resampling albums (2,000 resamples). "
             f"Spearman: mean over the tags whose teacher probability has a standard deviation >= {MIN_STD} "
             "on these tracks; top-3: shared tags of the 3 most probable, per track; ROC-AUC: macro, against "
             "the tags the teacher decides at its shipped thresholds.", "",
             "| student | teacher | parameters | tags varying | Spearman | top-3 overlap | ROC-AUC vs decided |",
             "|---|---|---:|---:|---|---|---|"]

    def cell(m: dict) -> str:
        return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"

    for row in table:
        lines.append(f"| {row['student']} | {row['teacher']} | {row['parameters'] / 1e3:.0f}k | "
                     f"{row['varying_tags']}/{row['tags']} | {cell(row['spearman'])} | {cell(row['top3'])} | "
                     f"{cell(row['decided_auc'])} |")
    text = "\n".join(lines) + "\n"
    (options.out / "agreement.md").write_text(text)
    print(text)


def corpus_probabilities(model: AudioTagger, rows: list[dict], cache: Path, max_seconds: float
                         ) -> dict[str, np.ndarray]:
    """``{group: (tracks, labels)}``: each track's mean probability over every chunk of its first
    ``max_seconds`` (the audio the students learn from), from the distillation cache (`tagging.pretrained.distil`)."""
    sums = {g.name: [] for g in model.labels.multilabel()}
    for row in rows:
        wave = cached_audio(row["audio_path"], model.sample_rate, max_seconds, (), cache)["clean"].float() / 32767
        logits = cached_logits(model, wave, row["audio_path"], max_seconds, cache)
        for group in sums:
            sums[group].append(torch.sigmoid(logits[group]).mean(dim=0).numpy())
    return {group: np.stack(values) for group, values in sums.items()}


def thresholds(options: argparse.Namespace) -> None:
    rows = split_rows(options.manifest, options.split)
    specs = dict(map(named, options.model))
    packages = {spec.partition("=")[0] for spec in options.model if "=" in spec}  # given as NAME=DIR
    result = {}
    for name, path in specs.items():
        model = AudioTagger.from_pretrained(path)
        probabilities = corpus_probabilities(model, rows, options.cache, options.max_seconds)
        result[name] = {}
        for group in model.labels.multilabel():
            values = expected_share_thresholds(probabilities[group.name])
            result[name][group.name] = {label: round(float(v), 6) for label, v in zip(group.labels, values,
                                                                                       strict=True)}
            model.set_thresholds(group.name, torch.tensor(values, dtype=torch.float32))
        if options.write_students and name in packages:
            model.save_pretrained(path, overwrite=True)
            print(f"{name}: thresholds saved into {path}")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"thresholds of {len(result)} models on {len(rows)} {options.split} tracks: {options.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    agree = commands.add_parser("agreement", help="students against teachers on held-out albums")
    agree.add_argument("--manifest", type=Path, default=Path("data/real/manifest.csv"))
    agree.add_argument("--split", default="test")
    agree.add_argument("--teacher", action="append", required=True)
    agree.add_argument("--student", action="append", default=[], help="NAME=DIR or a known name (none: only "
                       "score the teachers, into the cache)")
    agree.add_argument("--reference", action="append", default=[], metavar="MODEL:TEACHER",
                       help="a model trained on the teacher's labels, not distilled from it (vgg-mtt:musicnn-mtt), "
                            "scored the same way: how closely two taggers of the same data agree")
    agree.add_argument("--out", type=Path, default=Path("runs/distil/eval"))
    agree.add_argument("--max-chunks", type=int, default=16, help="evenly spaced chunks per track (default 16; "
                       "0: every chunk, as the packages annotate)")
    thresh = commands.add_parser("thresholds", help="per-tag thresholds by the expected-share rule")
    thresh.add_argument("--manifest", type=Path, default=Path("data/real/manifest.csv"))
    thresh.add_argument("--split", default="train")
    thresh.add_argument("--model", action="append", required=True, help="NAME=DIR or a known name")
    thresh.add_argument("--out", type=Path, default=Path("runs/distil/thresholds.json"))
    thresh.add_argument("--write-students", action="store_true", help="save them into the NAME=DIR packages")
    thresh.add_argument("--cache", type=Path, default=Path("runs/distil/cache"), help="python -m tagging distil's")
    thresh.add_argument("--max-seconds", type=float, default=480.0, help="of each track, as distilled (480)")
    options = parser.parse_args(argv)
    if getattr(options, "max_chunks", None) == 0:
        options.max_chunks = None
    agreement(options) if options.command == "agreement" else thresholds(options)


if __name__ == "__main__":
    main()
