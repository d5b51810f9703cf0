"""Measuring taggers: a trained tagger beside the log-mel statistics baseline, per modality, transfer tables
and metrics (see `tagging`)."""
