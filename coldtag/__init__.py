"""What `tagging`, `recsys` and `fusion` share and none of them owns: files written whole or not at all,
model packages that record what made them (`coldtag.storage`), and intervals that resample artists
rather than tracks (`coldtag.intervals`). Nothing here knows of audio or of listeners.
"""
