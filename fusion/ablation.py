"""The ablation of Oramas, Nieto et al. (DLRS 2017) on a catalog: one content -> factors model per row,
trained on the warm items' WMF factors, early-stopped on the cold_val items, scored on cold_test.

Every row is a `LateFusionRegressor` over some inputs of `fusion.data`, except the two audio rows: one
end-to-end `AudioFactorRegressor`, tested on one centre patch per track ("patches") and on the mean
over each whole track ("full track"). A trained model is cached in ``out/units/<kind>-<key>``, the key
hashing its settings and the bytes of the files it learnt from, so a re-run reuses finished rows.

With a file of reference sources (``python -m fusion references``, `fusion.references`: log-mel statistics,
random features, another tagger's tags), one more row per source follows the content rows: what the
features are worth beside a yardstick that no packaged pipeline computes. Those rows learn from the
features and the references in one file, ``out/features+references.npz``, written again only when its
content changes, so their rows are reused too and the content rows keep their keys.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import shutil
import time
import warnings
from collections.abc import Collection, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import yaml

from coldtag.intervals import Difference, paired_difference
from coldtag.storage import atomic_path, atomic_write, file_sha256, write_json
from coldtag.training import cli_main
from fusion.data import ANNOTATED, REFERENCE, SCORES, available_sources, catalog_sources, with_references
from fusion.lightning import (
    AudioFactorDataModule,
    FactorRegressionModule,
    FeatureFactorDataModule,
    mean_cosine_distance,
    training_items,
)
from recsys import ColdStartSplit, baseline_metrics
from recsys.evaluation import paired_ranking_difference
from tagging.data.features import TrackFeatures
from tagging.evaluation.evaluate import resampling_clusters
from tagging.labels import LabelSpace, read_manifest

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
DATA_PATHS = ("manifest", "vocab", "recsys", "features")
ROWS_FILE = "rows.json"
AUDIO_ROWS_FILE = "audio_rows.json"
MERGED_FEATURES = "features+references.npz"


@dataclass(frozen=True)
class Row:
    """One line of the table: the fusion inputs of its model (none: the end-to-end audio CNN), and for the
    audio CNN how a whole track is scored at test (``"centre"`` patch or ``"track"`` mean)."""

    name: str
    inputs: tuple[str, ...] = ()
    pooling: str = "track"


# The end-to-end audio CNN's two rows: one model, scored on each track's centre patch and on the whole track.
AUDIO_ROWS = (Row("Audio (patches)", pooling="centre"), Row("Audio (full track)"))


def ablation_rows(groups: Sequence[str], genome: Sequence[str], sources: Collection[str],
                  audio: bool = True, references: Mapping[str, str] | None = None) -> tuple[Row, ...]:
    """The rows of the paper's table for a vocabulary.

    ``genome``: the label groups that stand for the paper's attributes (its MGP row annotated, its MLG
    row predicted); the first other group of ``groups`` stands for its genres, the rest join the last
    row. ``sources``: the inputs there are (`fusion.data.catalog_sources`); a row whose inputs are not
    all there is left out, so a catalog without annotations, lyrics or covers gets the rows it can have.
    ``audio``: whether to include the end-to-end audio CNN rows. ``references``: ``{reference source: row
    name}`` (`fusion.data.REFERENCE`), one row each after the content rows.
    """
    unknown = [g for g in genome if g not in groups]
    if not genome or unknown:
        raise ValueError(f"genome groups must be some of the vocabulary's {list(groups)}; got {list(genome)}")
    mlg = tuple(SCORES + g for g in genome)
    others = [g for g in groups if g not in genome]
    named = ", ".join(genome)
    rows = list(AUDIO_ROWS) if audio else []
    rows += [Row("Audio (tagger embedding)", ("audio",)),
             Row(f"MGP (annotated {named})", tuple(ANNOTATED + g for g in genome)),
             Row(f"MLG (predicted {named})", mlg)]
    base, name = ("audio", *mlg), "Audio + MLG"
    rows.append(Row(name, base))
    if others:
        base, name = (*base, SCORES + others[0]), f"{name} + {others[0]}"
        rows.append(Row(name, base))
    extra = [m for m in ("lyrics", "cover") if m in sources]
    rows += [Row(f"{name} + {m}", (*base, m)) for m in extra]
    if others[1:] or len(extra) > 1:
        rest = [*others[1:], *extra]
        rows.append(Row(f"All content (+ {', '.join(rest)})", (*base, *(SCORES + g for g in others[1:]), *extra)))
    rows += [Row(name, (source,)) for source, name in (references or {}).items()]
    names = [row.name for row in rows]
    if len(set(names)) < len(names):
        raise ValueError(f"a reference row takes the name of another row: {names}")
    return tuple(row for row in rows if all(i in sources for i in row.inputs))


@dataclass(frozen=True)
class DataPaths:
    """Where an ablation reads from: the manifest and its vocabulary, the cached features, the output
    folder of ``python -m recsys coldstart`` and the reference sources (``python -m fusion references``),
    if any."""

    manifest: Path
    vocab: Path
    features: Path | None  # None: the end-to-end audio rows alone (`run_audio_rows`), which read no features
    recsys: Path
    references: Path | None = None

    @classmethod
    def catalog(cls, catalog: Path, features: Path | None, recsys: Path, references: Path | None = None) -> DataPaths:
        """A toy catalog folder's ``manifest.parquet`` and ``vocab.json``."""
        return cls(Path(catalog) / "manifest.parquet", Path(catalog) / "vocab.json",
                   None if features is None else Path(features), Path(recsys),
                   None if references is None else Path(references))

    @property
    def coldstart(self) -> Path:
        return self.recsys / "coldstart.npz"

    def check(self) -> None:
        for path in (self.manifest, self.vocab, self.features, self.coldstart, self.references):
            if path is not None and not path.is_file():
                raise FileNotFoundError(f"{path}: not found (see `python -m fusion ablation --help`)")


def run_ablation(paths: DataPaths, out: str | Path, fusion_config: dict, audio_config: dict | None = None,
                 genome: Sequence[str] | None = None, seed: int = 0, ks: tuple[int, ...] = (50,), map_k: int = 500,
                 threads: int = 1, artist_col: str | None = "auto", resamples: int = 1000) -> pd.DataFrame:
    """Train (or reuse) every row of `ablation_rows`, then write ``table.md``, ``table.csv``,
    ``table.png``, ``rows.json`` and the row differences (``differences.md``, ``differences.csv``) into
    ``out``; returns the table (rows, then the baselines of `recsys.baseline_metrics`).

    Each row is a ``train.py`` run (`coldtag.training`): ``fusion_config`` (a LightningCLI config as a dict,
    e.g. ``configs/fusion_demo.yaml``) for the late-fusion rows, ``audio_config`` (``configs/fusion_audio_demo.yaml``)
    for the end-to-end audio rows, which are left out when it is None; the row's inputs, the data paths, the
    seed and the output folder replace the config's. Each row's config is kept beside its model
    (``units/<row>/config.yaml``), so ``python train.py fit --config`` reruns it alone.

    ``paths.references``: a file of ``python -m fusion references``, whose sources add one row each
    (`ablation_rows`); it must hold every track of the cold-start split (a ``ValueError`` names it).

    ``genome``: the attribute groups (default: every group of the vocabulary). The fusion stage trains
    on the warm items the manifest's `fusion.data.FUSION_SPLIT` column marks ``train`` when it has one
    (features the tagger never saw, `fusion.data.split_warm_tracks`), else on every warm item.
    ``artist_col``: the manifest column whose artists the intervals resample (``"auto"``: ``artist_id``
    when there is one; ``None`` or a missing artist: each item its own). ``threads``: torch threads while
    training. The fusion models are small: on a machine whose cores are busy with other work, one thread
    ran them 3-4 times faster than two (threads waiting on each other).
    """
    with torch_threads(threads):
        return _run(paths, Path(out), fusion_config, audio_config, genome, seed, ks, map_k, artist_col, resamples)


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads, then restore the previous number."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run(paths: DataPaths, out: Path, fusion_config: dict, audio_config: dict | None,
         genome: Sequence[str] | None, seed: int, ks: tuple[int, ...], map_k: int, artist_col: str | None,
         resamples: int) -> pd.DataFrame:
    paths.check()
    split = ColdStartSplit.load(paths.coldstart)
    manifest, labels = read_manifest(paths.manifest), LabelSpace.from_json(paths.vocab)
    features = TrackFeatures.load(paths.features)
    with_refs, descriptions = paths, {}
    if paths.references is not None:
        features = with_references(features, TrackFeatures.load(paths.references), paths.references, split.item_ids)
        with_refs = dataclasses.replace(paths, features=save_if_changed(features, out / MERGED_FEATURES))
        descriptions = {name: features.sources[name]["description"] for name in features.arrays
                        if name.startswith(REFERENCE)}
    sources = available_sources(*catalog_sources(features, manifest, labels, split.item_ids))
    rows = ablation_rows(list(labels.groups), genome or list(labels.groups), sources, audio_config is not None,
                         descriptions)
    train, training = training_items(split, manifest)
    artists = item_artists(split, manifest, artist_col, paths.manifest)
    digest = data_digest(paths)
    feature_digests = {path: file_sha256(path) for path in {paths.features, with_refs.features}}
    units: dict[str, dict] = {}
    keys: dict[Row, str] = {}
    for row in rows:
        # A content row reads the features file it always did, so that adding references keeps its key.
        row_paths = with_refs if any(name.startswith(REFERENCE) for name in row.inputs) else paths
        data = digest if not row.inputs else {**digest, row_paths.features.name: feature_digests[row_paths.features]}
        config = row_config(audio_config if not row.inputs else fusion_config, row, row_paths, seed, ks, map_k)
        keys[row], result = train_or_reuse(row, config, data, out, units)
        test = result["test_centre" if row.pooling == "centre" else "test"]
        log.info("%s: cosine distance %.4f, recall@%d %.4f (%d epochs)", row.name, test["cosine_distance"],
                 ks[0], test[f"recall@{ks[0]}"], result["epochs"])
    summary = [{"name": row.name, "inputs": list(row.inputs), "pooling": row.pooling,
                "training_items": len(train), "training": training,
                **{k: v for k, v in units[keys[row]].items() if k != "config"}} for row in rows]
    table = _table(rows, summary, baseline_metrics(split, ks, map_k, subset="cold_test", seed=seed), ks, map_k)
    predictions = {row.name: np.load(Path(units[keys[row]]["dir"]) / _predictions_file(row)) for row in rows}
    differences = row_differences(predictions, split, artists, ks, map_k, resamples, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ROWS_FILE, summary)
    atomic_write(out / "table.csv", table.to_csv())
    atomic_write(out / "differences.csv", differences.to_csv(index=False))
    atomic_write(out / "differences.md", differences_markdown(differences, artists, training, len(train)))
    bar_chart(table, out / "table.png", ks[0])
    # Last and atomically: a build tool may take table.md as the sign that the ablation is done.
    atomic_write(out / "table.md", markdown(table) + "\n")
    return table


def data_digest(paths: DataPaths) -> dict[str, str]:
    """The bytes every row reads, by file name: the manifest, its vocabulary and the cold-start split."""
    return {path.name: file_sha256(path) for path in (paths.manifest, paths.vocab, paths.coldstart)}


def train_or_reuse(row: Row, config: dict, data: dict[str, str], out: Path, units: dict[str, dict]) -> tuple[str, dict]:
    """The key of ``row`` (its settings and the digests ``data`` of what it reads, not where the files lie)
    and its result: from ``units`` (rows sharing one model), from ``out/units/<inputs>-<key>`` when a run
    finished there, else trained now (`train_row`)."""
    settings = copy.deepcopy(config)
    for name in DATA_PATHS:
        settings["data"]["init_args"].pop(name, None)
    key = hashlib.sha256(json.dumps({"config": settings, "data": data}, sort_keys=True).encode()).hexdigest()[:12]
    inputs = "+".join(name.replace("/", "-") for name in row.inputs) or "audio-cnn"
    unit_dir = out / "units" / f"{inputs}-{key}"
    if key not in units:
        cached = _read_result(unit_dir, key)
        if cached is not None:
            log.info("%s: reused %s", row.name, unit_dir)
        else:
            log.info("%s: training ...", row.name)
            cached = train_row(config, unit_dir) | {"key": key, "config": config}
            write_json(unit_dir / RESULT_FILE, cached)
        units[key] = cached | {"dir": str(unit_dir)}
    return key, units[key]


def run_audio_rows(paths: DataPaths, out: str | Path, audio_config: dict, seed: int = 0, ks: tuple[int, ...] = (50,),
                   map_k: int = 500, threads: int = 1) -> list[dict]:
    """Train (or reuse) the end-to-end audio rows alone, into ``out`` as `run_ablation` would, which then
    reuses them: they read audio and factors, no features, so they can run while the tagger that makes the
    features is still training. Writes ``out/audio_rows.json`` (each row's name and its unit's result) last."""
    paths.check()
    out, units, summary, digest = Path(out), {}, [], data_digest(paths)
    with torch_threads(threads):
        for row in AUDIO_ROWS:
            _, result = train_or_reuse(row, row_config(audio_config, row, paths, seed, ks, map_k), digest, out, units)
            summary.append({"name": row.name, "pooling": row.pooling,
                            **{k: v for k, v in result.items() if k != "config"}})
    write_json(out / AUDIO_ROWS_FILE, summary)
    return summary


def save_if_changed(features: TrackFeatures, path: Path) -> Path:
    """``path``, where ``features`` are saved unless the file there holds them already: an ``.npz`` saved again
    has other bytes, which would change the keys of the rows that read it."""
    if not (path.is_file() and TrackFeatures.load(path).equals(features)):
        features.save(path)
    return path


def item_artists(split: ColdStartSplit, manifest: pd.DataFrame, artist_col: str | None,
                  source: Path) -> np.ndarray:
    """The artist of each cold-test item, as `tagging.evaluation.evaluate.resampling_clusters` finds it (``"auto"``: its
    default column); None for every item when there is no artist column or ``artist_col`` is None."""
    items = split.item_ids[split.items("cold_test")].astype(str)
    if artist_col is None:
        return np.full(len(items), None, dtype=object)
    frame = manifest.assign(track_id=manifest["track_id"].astype(str)).set_index("track_id").reindex(items)
    artists, column = resampling_clusters(frame, None if artist_col == "auto" else artist_col, source)
    return artists if column is not None else np.full(len(items), None, dtype=object)


def row_config(base: dict, row: Row, paths: DataPaths, seed: int, ks: tuple[int, ...], map_k: int) -> dict:
    """The LightningCLI config of one row: ``base`` with the row's inputs, the data paths, the seed and the
    metrics' cut-offs (its outputs are placed by `train_row`)."""
    config = copy.deepcopy(base)
    config["seed_everything"] = seed
    config["model"]["init_args"] |= {"ks": list(ks), "map_k": map_k}
    data = config["data"]["init_args"]
    data |= {"manifest": str(paths.manifest), "vocab": str(paths.vocab), "recsys": str(paths.recsys)}
    if row.inputs:
        data |= {"features": str(paths.features), "inputs": list(row.inputs)}
    else:
        data["seed"] = seed
    return config


def train_row(config: dict, unit_dir: Path) -> dict:
    """Fit one row with ``train.py``'s CLI into ``unit_dir`` (``config.yaml``, ``logs/``, the best epoch's
    ``model/``), then test it on cold_test (an audio row also on one centre patch per track), the predicted
    factors in ``unit_dir/test_predictions.npy``. Returns epochs, timing, and the ``val`` (best epoch) and
    ``test`` metrics of `recsys.evaluate_cold_start`."""
    if unit_dir.exists():
        shutil.rmtree(unit_dir)  # a run that died half-way: start that row again
    unit_dir.mkdir(parents=True)
    placed = copy.deepcopy(config)
    trainer = placed.setdefault("trainer", {})
    trainer["logger"] = {"class_path": "pytorch_lightning.loggers.CSVLogger",
                         "init_args": {"save_dir": str(unit_dir), "name": "logs", "version": 0}}
    for callback in trainer.get("callbacks") or []:
        if "dirpath" in callback.get("init_args", {}):
            callback["init_args"]["dirpath"] = str(unit_dir / "checkpoints")
    placed["model"]["init_args"]["export_dir"] = str(unit_dir / "model")
    atomic_write(unit_dir / "config.yaml", yaml.safe_dump(placed, sort_keys=False))
    started = time.perf_counter()
    with warnings.catch_warnings():
        # One process on a shared 2-core machine: loading in the training process is deliberate.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        cli = cli_main(["fit", "--config", str(unit_dir / "config.yaml")])
    seconds = time.perf_counter() - started
    module, data = cli.model, cli.datamodule
    epochs = cli.trainer.current_epoch
    shutil.rmtree(unit_dir / "checkpoints", ignore_errors=True)  # the package holds the best weights
    result = {"kind": "fusion" if isinstance(data, FeatureFactorDataModule) else "audio", "epochs": epochs,
              "best_epoch": module.best_epoch + 1, "fit_seconds": seconds,
              "seconds_per_epoch": seconds / max(epochs, 1), "val": module.best_metrics,
              "test": _test(cli.trainer, module, data, unit_dir / _PREDICTIONS["track"])}
    if isinstance(data, AudioFactorDataModule):
        module.pooling, module.test_prefix = "centre", "test/centre"
        result["test_centre"] = _test(cli.trainer, module, data, unit_dir / _PREDICTIONS["centre"])
        result["skipped_audio"] = len(data.skipped)
    return result


def _test(trainer: pl.Trainer, module: FactorRegressionModule, data: pl.LightningDataModule,
          predictions: Path) -> dict:
    """The cold-test metrics; the predicted factors (cold-test items in split order) go to ``predictions``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.test(module, datamodule=data, verbose=False)
    with atomic_path(predictions) as tmp, open(tmp, "wb") as file:
        np.save(file, module.predicted)
    return module.test_metrics


_PREDICTIONS = {"track": "test_predictions.npy", "centre": "test_centre_predictions.npy"}


def _predictions_file(row: Row) -> str:
    return _PREDICTIONS[row.pooling if not row.inputs else "track"]


def _table(rows: tuple[Row, ...], summary: list[dict], baselines: dict[str, dict], ks, map_k) -> pd.DataFrame:
    metrics = [f"recall@{ks[0]}", f"ndcg@{ks[0]}", f"map@{map_k}", "auc"]
    records = []
    for row, result in zip(rows, summary, strict=True):
        test = result["test_centre" if row.pooling == "centre" else "test"]
        records.append({"model": row.name, "cosine_distance": test["cosine_distance"],
                        **{m: test[m] for m in metrics}, "epochs": result["epochs"],
                        "s/epoch": result["seconds_per_epoch"]})
    for name, values in baselines.items():
        records.append({"model": name, "cosine_distance": values["cosine_distance"],
                        **{m: values[m] for m in metrics}})
    return pd.DataFrame.from_records(records).set_index("model")


def row_differences(predictions: dict[str, np.ndarray], split: ColdStartSplit, artists: np.ndarray,
                    ks: tuple[int, ...] = (50,), map_k: int = 500, resamples: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """Each row against the row before it (cosine distance and Recall@k) and against the ``popularity``
    baseline where the split has a prior (Recall@k): differences on the cold-test items with 95 %
    intervals that resample the items by artist (``artists``, None: the item alone).

    ``predictions``: ``{row name: (n_cold_test, f)}`` in table order.
    """
    items = split.items("cold_test")
    relevant = split.plays[:, items]
    metric = f"recall@{ks[0]}"
    users = split.user_factors.astype(np.float64)
    records = []

    def add(row: str, versus: str, name: str, d: Difference) -> None:
        records.append({"row": row, "versus": versus, "metric": name, "row_value": d.a, "versus_value": d.b,
                        "difference": d.difference, "low": d.low, "high": d.high, "clusters": d.clusters})

    before, before_scores = None, None
    for name in predictions:
        scores = users @ np.asarray(predictions[name], dtype=np.float64).T
        if before is not None:
            add(name, before, "cosine_distance", cosine_difference(predictions[name], predictions[before], split,
                                                                   artists, resamples, seed))
            add(name, before, metric, paired_ranking_difference(
                scores, before_scores, relevant, artists, metric, ks, map_k, resamples, seed=seed))
        if split.prior is not None:
            popularity = np.broadcast_to(split.prior[items].astype(np.float64), scores.shape)
            add(name, "popularity", metric, paired_ranking_difference(
                scores, popularity, relevant, artists, metric, ks, map_k, resamples, seed=seed))
        before, before_scores = name, scores
    return pd.DataFrame.from_records(records)


def cosine_difference(a: np.ndarray, b: np.ndarray, split: ColdStartSplit, artists: np.ndarray,
                      resamples: int = 1000, seed: int = 0) -> Difference:
    """Mean cosine distance of cold-test predictions ``a`` minus that of ``b`` (negative favours ``a``), over
    the items with plays (an unplayed item has no true direction), with an interval resampling ``artists``."""
    items = split.items("cold_test")
    played = np.diff(split.plays[:, items].tocsc().indptr) > 0
    return paired_difference(lambda target, predicted: mean_cosine_distance(predicted, target),
                             split.item_factors[items][played], np.asarray(a)[played], np.asarray(b)[played],
                             np.asarray(artists, dtype=object)[played], resamples, seed=seed)


def ablation_predictions(out: Path) -> dict[str, np.ndarray]:
    """``{row name: cold-test predictions}`` of a finished ablation in ``out``, in table order."""
    rows = json.loads((Path(out) / ROWS_FILE).read_text())
    return {row["name"]: np.load(Path(row["dir"]) / _predictions_file(Row(row["name"], tuple(row["inputs"]),
                                                                              row["pooling"])))
            for row in rows}


def differences_markdown(differences: pd.DataFrame, artists: np.ndarray, training: str, n_train: int) -> str:
    """The differences as a Markdown table, with what the intervals resample and what the rows learnt from."""
    known = int(pd.notna(artists).sum())
    lines = [f"Row differences on {len(artists)} cold-test items ({known} with a known artist; intervals "
             "resample artists, an unknown artist counting as its own). Cosine distance: lower is better, so a "
             "negative difference favours the row; Recall: higher is better. "
             f"The models learnt from {n_train} {training}.", "",
             "| row | versus | metric | row value | versus value | difference | 95 % interval |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in differences.itertuples(index=False):
        lines.append(f"| {r.row} | {r.versus} | {r.metric} | {r.row_value:.4f} | {r.versus_value:.4f} | "
                     f"{r.difference:+.4f} | [{r.low:+.4f}, {r.high:+.4f}] |")
    return "\n".join(lines) + "\n"


def markdown(table: pd.DataFrame) -> str:
    lines = ["| model | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for name, row in table.iterrows():
        cells = []
        for column, value in row.items():
            if pd.isna(value):
                cells.append("—")
            elif column == "epochs":
                cells.append(f"{int(value)}")
            elif column == "s/epoch":
                cells.append(f"{value:.2f}")
            else:
                cells.append(f"{value:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(table: pd.DataFrame, path: Path, k: int) -> None:
    """Recall@k and cosine distance per row, baselines in grey and the oracle in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table.index)[::-1]  # first row on top
    colours = ["tab:green" if n == "oracle" else "0.6" if pd.isna(table.loc[n, "epochs"]) else "tab:blue"
               for n in names]
    figure, axes = plt.subplots(1, 2, figsize=(12, 0.4 * len(names) + 1.5), sharey=True)
    for axis, column, label in ((axes[0], f"recall@{k}", f"Recall@{k} on cold-test items (higher is better)"),
                                (axes[1], "cosine_distance", "cosine distance to true factors (lower is better)")):
        values = table.loc[names, column].to_numpy(dtype=float)
        axis.barh(names, np.nan_to_num(values), color=colours)
        for y, value in enumerate(values):
            if not np.isnan(value):
                axis.text(value, y, f" {value:.3f}", va="center", fontsize=8)
        axis.set_xlim(0, 1.15 * np.nanmax(values))  # room for the value labels
        axis.set_xlabel(label)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _read_result(unit_dir: Path, key: str) -> dict | None:
    path = unit_dir / RESULT_FILE
    if not path.is_file() or not (unit_dir / "model").is_dir():
        return None
    result = json.loads(path.read_text())
    return result if result.get("key") == key else None

