"""Where annotation runs: `local` (this process and its decoding workers), `ddp` (Lightning over devices
and nodes) and `ray` (Ray Data over a cluster). Each writes the records of `annotation.annotators.annotate_tracks`
through `annotation.records.Records`."""
