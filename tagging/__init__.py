"""Taggers of audio, lyrics and covers, and everything a tagger needs from a file to a package.

Where things are:

- ``frontend``: the one spectrogram front-end (log-mel, chroma; nnAudio or torchaudio, float32 under autocast).
- ``grid``: the chunk grid, where every model reads a track (`chunk_starts`, `grid_chunks`).
- ``audio``: decoding (torchcodec with FFmpeg), streaming of long files, the damaged-FLAC check.
- ``tracks``: the one reader (`TrackReader` -> `DecodedTrack`) and `encode_tracks`, for training and serving.
- ``labels``: label spaces (groups of multilabel tags and graded values); ``keys``: key profiles;
  ``tempo_key``: tempo and key by signal processing; ``errors``: what an unusable file raises.
- ``models/``: ``layers`` (rhythm, harmony, band statistics), ``backbones`` (short-chunk ResNet, tiny CNN),
  ``musicnn`` (the published musicnn and VGG graphs), ``tagger`` (`AudioTagger` and its package),
  ``text`` and ``image`` (lyrics and cover encoders), ``multimodal`` (`MultimodalTagger`).
- ``data/``: ``modules`` (Lightning datamodules), ``crops`` (random training crops), ``cache`` (decoded audio
  cache), ``features`` (cached embeddings for the multimodal tagger and fusion).
- ``datasets/``: adapters that write manifests of MTG-Jamendo, MagnaTagATune, folders and tables.
- ``pretrained/``: ``convert`` (the musicnn wheel's checkpoints as packages, names), ``tfcheckpoint`` (a reader of
  TensorFlow checkpoints), ``distil`` (students of a teacher), ``prune`` (a student cut from its musicnn teacher),
  ``agreement`` (student against teacher), the shipped ``students/`` and ``thresholds.json``.
- ``evaluation/``: ``evaluate`` (a tagger beside the baseline, per modality), ``baseline`` (log-mel statistics),
  ``comparison`` (transfer tables), ``metrics``.
- ``lightning``: the Lightning wrappers (`TaggerModule`, `MultimodalTaggerModule`); ``runs``: a run's config
  with settings changed (``DOTTED.KEY=VALUE``) and its seeds.
- ``cli``: ``python -m tagging COMMAND`` (datasets, baseline, evaluate, features, pretrained, distil).

Nothing here imports ``recsys``, ``fusion`` or ``annotation``.
"""
