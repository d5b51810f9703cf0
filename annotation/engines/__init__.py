"""Where annotation runs: `local` (this process and its decoding workers), `ddp` (Lightning over devices
and nodes) and `ray` (Ray Data over a cluster). Each takes its `EngineOptions` and writes the records of
`annotation.annotators.annotate_tracks` through `annotation.records.Records`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineOptions:
    """How an engine runs, as ``coldtag annotate`` was told: each field is the option of the same name
    (``batch_size`` is ``--batch-size``; ``progress`` is false with ``--no-progress``), and a value out of range
    is a `ValueError` naming that option."""

    batch_size: int  # tracks per model batch
    part_size: int  # records per committed part file
    workers: int  # decoding processes per model process (0: none)
    threads: int | None  # local: torch threads of the model's process (None: `annotation.reader.model_threads`)
    device: str  # torch device of the model, or "auto" (cuda if present)
    devices: int  # ddp: processes (devices) per node
    num_nodes: int  # ddp: nodes
    allow_outside: bool  # load encoders from outside the model package
    progress: bool  # show a progress bar

    def __post_init__(self) -> None:
        for name in ("batch_size", "part_size", "devices", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
