"""Worker processes for rendering a catalog, forked from a clean server process."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool


def worker_pool(workers: int, initializer, initargs: tuple = (), *, preload: str) -> multiprocessing.pool.Pool:
    """Rendering processes forked from a fresh server process, which imports the module ``preload`` once (the
    caller's, whose functions the workers run), not from this one: a caller's threads (torch's, a tokenizer's,
    a logger's) may hold locks that a child forked from it would wait on forever, as after a demo's stages in
    one process."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([preload])
    else:
        context = multiprocessing.get_context("spawn")
    return context.Pool(workers, initializer=initializer, initargs=initargs)
