"""Work beside the decode loop: pure-Python work (grounded decoding's claim checks and consensus) in one spawned
process, so neither the GIL nor the work itself holds up the loop that keeps the GPU busy.

`in_worker(on_result)` yields `submit(fn, *args, meta=...)`: fn(*args) runs in the worker, and on_result(result,
meta) in the calling thread, at the next submit or on leaving the block, in submission order. Leaving waits for
every call; the first failure is raised in the caller (at the next submit, or on leaving), never lost. A spawned
process imports what fn needs afresh (no fork of a process holding a CUDA context).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


@contextlib.contextmanager
def in_worker(on_result: Callable[[Any, Any], None]) -> Iterator[Callable[..., None]]:
    pending: deque[tuple[Future, Any]] = deque()

    def drain(wait: bool) -> None:
        while pending and (wait or pending[0][0].done()):
            future, meta = pending.popleft()
            on_result(future.result(), meta)  # raises the call's error here

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        def submit(fn: Callable, *args, meta: Any = None) -> None:
            drain(wait=False)
            pending.append((pool.submit(fn, *args), meta))

        try:
            yield submit
            drain(wait=True)
        finally:
            for future, _ in pending:  # an error on the way out: nothing more is started
                future.cancel()
