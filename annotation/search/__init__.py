"""Search annotated tracks with a sentence, and theme playlists from such searches.

- `annotation.search.query`: the vocabulary of whatever model wrote the annotations (`Vocabulary`), and the
  reading of a query into wanted and unwanted tags, graded values and tempo ranges (`parse_query` ->
  `Query`), free words matched to tags by the offline MiniLM text encoder (`TextMatcher`).
- `annotation.search.rank`: the annotations as arrays (`SearchIndex`), ranking them for a `Query` with the
  reason of every hit (`Hit`, `Reason`), and the keyword baseline (`keyword_query`).
- `annotation.search.playlist`: theme files (`load_themes` -> `Theme`) and their playlists, diversified by
  the exposure re-ranker of `recsys.exposure`, written as M3U and JSON.
- `annotation.search.cli`: ``coldtag search`` and ``coldtag playlist``.
"""
