"""Bulk annotation of a catalog: one record per audio file, the same columns for every file, committed in
atomic Parquet parts so that a run can be killed at any moment and resumed (``coldtag annotate``).

The package sits above ``tagging``, ``recsys`` and ``fusion`` and is split by job:

- `annotation.inputs`: a folder, manifest or glob -> `Item`\\ s, confined to the input root.
- `annotation.reader`: an item -> its file facts and the `tagging.tracks.DecodedTrack` a model reads, in
  decoding workers.
- `annotation.annotators`: a packaged model (audio tagger, multimodal tagger, cold-start pipeline) ->
  record columns, chosen by the package's kind; each satisfies the `Annotator` protocol.
- `annotation.records`: the record (`AnnotationRecord`) and its layout, the part files, the resume rule.
- `annotation.engines`: local, Lightning DDP and Ray Data, all taking `EngineOptions`.
- `annotation.cli`: the command.
- `annotation.search`: a sentence -> the records that fit it, with reasons (``coldtag search``), and theme
  playlists (``coldtag playlist``).
- `annotation.review`: the review page (``coldtag review``).
"""
