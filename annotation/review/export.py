"""The reviewers' corrections as a manifest and vocabulary that the trainer reads (`tagging.labels`,
`tagging.data.modules.CatalogDataModule`), so that a fine-tune on them closes the loop:

    coldtag review export annotations/ --model runs/demo/tagger/model --out runs/review-export
    python train.py fit --config configs/finetune_demo.yaml \\
        --data.init_args.manifest runs/review-export/manifest.parquet \\
        --data.init_args.vocab runs/review-export/vocab.json --model.init_args.pretrained runs/demo/tagger/model

One row per track with at least one correction in force. A tag group the reviewers touched on a track (any
confirm, add or remove in it) holds the machine's decided tags with the removals taken out and the additions
put in: the page shows the whole group, so a decided tag left standing was seen and let stand. A group no
one touched is null, which the trainer masks out of the loss. A graded label is its set value, the machine's
value where it was confirmed, else missing (NaN, masked). Tracks are dealt to ``train`` and ``val`` by a hash
of their id, the same way on every export.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from annotation.review.run import Run
from annotation.review.store import Store
from coldtag.storage import atomic_path, write_json
from tagging.labels import MULTILABEL

MANIFEST_FILE = "manifest.parquet"
VOCAB_FILE = "vocab.json"


def export(run: Run, store: Store, out: str | Path, val_share: float = 0.2, fmt: str = "parquet") -> pd.DataFrame:
    """Write ``out/manifest.parquet`` (or ``.csv``) and ``out/vocab.json``; returns the manifest."""
    if not 0 <= val_share < 1:
        raise ValueError(f"val_share must be in [0, 1), got {val_share}")
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, got {fmt!r}")
    state = store.effective()
    touched: dict[str, dict[str, dict[str, object]]] = {}
    for (track, group, tag), row in state.items():
        if track in run and group in run.labels.groups:
            touched.setdefault(track, {}).setdefault(group, {})[tag] = row
    rows = []
    for track in sorted(touched):
        i, record = run.index[track], run.record(track)
        if record.get("error") is not None:
            continue
        row = {"track_id": track, "audio_path": str(Path(record["path"]).resolve()),
               "duration": record.get("duration")}
        for kind in ("lyrics", "cover"):
            sidecar = run.sidecar(track, kind)
            row[f"{kind}_path"] = None if sidecar is None else str(sidecar.resolve())
        for name, group in run.labels.groups.items():
            corrections = touched[track].get(name, {})
            if group.type == MULTILABEL:
                if not corrections:
                    row[name] = None
                    continue
                tags = []
                for j, label in enumerate(group.labels):
                    correction = corrections.get(label)
                    on = bool(run.decided[name][i, j])
                    if correction is not None and correction.action in ("add", "remove"):
                        on = correction.action == "add"
                    if on:
                        tags.append(label)
                row[name] = tags
            else:
                for label in group.labels:
                    correction = corrections.get(label)
                    if correction is None:
                        row[label] = float("nan")
                    elif correction.action == "set":
                        row[label] = correction.value
                    else:
                        value = run.machine_value(track, name, label)
                        row[label] = float("nan") if value is None else value
        rows.append(row)
    if not rows:
        raise ValueError(f"{run.out}: no corrections to export yet")
    manifest = pd.DataFrame(rows)
    manifest["split"] = _splits(manifest["track_id"].tolist(), val_share)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        with atomic_path(out / MANIFEST_FILE) as temporary:
            manifest.to_parquet(temporary, index=False)
    else:
        frame = manifest.copy()
        for name in run.labels.groups:
            if run.labels.groups[name].type == MULTILABEL:
                frame[name] = [None if tags is None else ";".join(tags) for tags in frame[name]]
        with atomic_path(out / "manifest.csv") as temporary:
            frame.to_csv(temporary, index=False)
    write_json(out / VOCAB_FILE, run.labels.to_dict())
    write_json(out / "export.json", {"run": str(run.out), "model": str(run.model.path),
                                     "model_sha256": run.model.sha256, "tracks": len(manifest),
                                     "corrections": len(state), "val_share": val_share})
    return manifest


def _splits(ids: list[str], val_share: float) -> list[str]:
    """``val`` for the ``val_share`` of the ids whose hash is smallest (at least one when there are two or
    more tracks and the share is above 0), ``train`` for the others."""
    order = sorted(range(len(ids)), key=lambda k: hashlib.sha256(ids[k].encode()).hexdigest())
    wanted = round(val_share * len(ids))
    if val_share > 0 and len(ids) >= 2:
        wanted = max(wanted, 1)
    val = set(order[:wanted])
    return ["val" if k in val else "train" for k in range(len(ids))]
