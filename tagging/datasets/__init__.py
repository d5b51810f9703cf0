"""Public dataset layouts turned into this project's catalog: ``manifest.parquet`` + ``vocab.json``.

One module per layout, each with a ``build_*`` function that returns a `Catalog`, and one command line::

    python -m tagging datasets mtg_jamendo --root mtg-jamendo-dataset --audio-root /data/jamendo --out data/jamendo
    python -m tagging datasets magnatagatune --root /data/mtat --split won2020 --split-dir split/mtat --out data/mtat
    python -m tagging datasets folders --root /data/by-genre --out data/by-genre
    python -m tagging datasets manifest --table tracks.csv --path-column file --tag-column genre --out data/mine

What every adapter does alike (see `tagging.labels` for the manifest and vocabulary formats):

- ``audio_path`` is written absolute, so the catalog folder can live anywhere (``read_manifest`` keeps an
  absolute path as it is).
- Tracks listed but missing on disk are left out of the manifest and reported (count and first paths),
  so training never meets them; the vocabulary is the dataset's, from every listed track, so it does
  not change with what happens to be downloaded.
- A multilabel cell is the track's list of positive tags; an empty list means "none of these tags".
"""

from tagging.datasets.catalog import Catalog, write_catalog

__all__ = ["Catalog", "write_catalog"]
