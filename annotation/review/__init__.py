"""A web page on which catalog staff listen to tracks, confirm or correct the tags of a ``coldtag annotate``
run, and export the corrections for a fine-tune: `review.run` (the records), `review.store` (the
corrections, in SQLite), `review.app` (the FastAPI app), `review.export`, `review.cli` (``coldtag review``)."""
