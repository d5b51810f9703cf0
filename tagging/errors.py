"""The one kind of error a bad input file raises, whatever the modality."""

from __future__ import annotations

import os
import stat


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


# A FIFO or a socket would block a plain open() or read() forever, a device may never end, a directory
# cannot be read: loaders refuse them by their stat mode before opening.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def not_regular_reason(mode: int) -> str | None:
    """``"not a regular file (a FIFO)"`` and the like for a ``st_mode`` that is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "an unknown kind of file")
    return f"not a regular file ({kind})"
