"""The one kind of error a bad input file raises, whatever the modality."""

from __future__ import annotations

import os


class UnusableFileError(ValueError):
    """A file that cannot be used; ``path`` and ``reason`` say which and why, ``str()`` is "path: reason".

    Batch jobs catch this one class to turn a bad file into an error record and go on.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):
        # Keeps the two-argument constructor when the error crosses a process boundary (data-loader workers).
        return type(self), (self.path, self.reason)
