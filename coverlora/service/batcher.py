"""Requests that arrive together share one generate call: an asyncio queue, a max wait and a max batch."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

from .writer import LetterWriter

log = logging.getLogger("coverlora")


@dataclass
class _Pending:
    prompt: list[int]
    max_new_tokens: int
    future: asyncio.Future


@dataclass
class Generated:
    text: str
    new_tokens: int
    batch_size: int
    seconds: float  # the generate call's own time


class Batcher:
    """Requests queue up; a worker takes the first, waits up to `max_wait` for more (at most
    `max_batch`), and runs them as one generate call in the writer's thread. Requests with
    different max_new_tokens go in separate calls (a longer cap would change the shorter letters'
    truncation). While a batch generates, the next one gathers in the queue."""

    def __init__(self, writer: LetterWriter, *, max_batch: int, max_wait: float, max_seconds: float):
        self.writer, self.max_batch, self.max_wait, self.max_seconds = writer, max_batch, max_wait, max_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def _ensure_worker(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._work(self._queue), name="coverlora-batcher")
        return self._queue

    async def submit(self, prompt: list[int], max_new_tokens: int) -> Generated:
        queue = self._ensure_worker()
        future = asyncio.get_running_loop().create_future()
        await queue.put(_Pending(prompt, max_new_tokens, future))
        return await future

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RuntimeError):
                pass
        self._task = None

    async def _gather(self, queue: asyncio.Queue) -> list[_Pending]:
        batch = [await queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), left))
            except (asyncio.TimeoutError, TimeoutError):
                break
        return [item for item in batch if not item.future.done()]  # clients that gave up meanwhile

    @staticmethod
    def _stop_when_abandoned(items: list[_Pending]) -> threading.Event:
        """An event set once every client of one generate call is gone (timed out or disconnected)."""
        stop, remaining = threading.Event(), [len(items)]

        def gave_up(_future: asyncio.Future) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                stop.set()  # nobody waits for these letters: stop generating them

        for item in items:
            item.future.add_done_callback(gave_up)
        return stop

    async def _work(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(queue)
            groups: dict[int, list[_Pending]] = {}
            for item in batch:
                groups.setdefault(item.max_new_tokens, []).append(item)
            for max_new, items in groups.items():
                stop = self._stop_when_abandoned(items)
                started = time.perf_counter()
                try:
                    texts, counts = await loop.run_in_executor(
                        self.writer.executor,
                        lambda items=items, max_new=max_new, stop=stop: self.writer.generate(
                            [i.prompt for i in items], max_new, max_seconds=self.max_seconds, stop=stop))
                except Exception as exc:  # noqa: BLE001 - every waiting client must hear about it
                    log.exception("generation failed")
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    continue
                seconds = time.perf_counter() - started
                for item, text, count in zip(items, texts, counts, strict=True):
                    if not item.future.done():
                        item.future.set_result(Generated(text, count, len(items), seconds))
