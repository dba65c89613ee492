"""Requests that arrive together share one generate call: a line of waiting requests, a max wait and a max batch.

Streams go through the same line: each row of a generate call gets its own streamer (RowStreamer), so one decode
loop serves several streams, and a waiting stream hears its place in line whenever the line moves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coverlora.service.writer import LetterWriter

log = logging.getLogger("coverlora")
# A stream's listener hears ("queued", place), ("start", batch size) and ("token", text), in the event loop.
Listener = Callable[[str, Any], None]


@dataclass
class Generated:
    text: str
    new_tokens: int
    batch_size: int
    seconds: float  # the generate call's own time
    choice: dict[str, int] | None = None  # grounded decoding: candidates, chosen, and the chosen one's problems;
    # repair: rewritten, left_out, samples


@dataclass
class _Pending:
    prompt: list[int]
    max_new_tokens: int
    future: asyncio.Future
    listener: Listener | None = None
    row: dict[str, str] | None = None  # the request's fields: grounded decoding checks each candidate against them
    place: int = field(default=0)  # the last place in line told to the listener


class RowStreamer:
    """A transformers streamer for one row of a batched generate call: finished text goes to `emit` (any thread),
    up to the row's first stop token. The first token's text goes out at once (it is what a waiting user sees
    first); after that text is released at word ends, as TextStreamer does, so a token that merges with the next
    one is never shown half-decoded. The `done` event carries the whole letter either way."""

    def __init__(self, tokenizer, stop_ids: set[int], emit: Callable[[str], None],
                 on_stop: Callable[[list[int]], None] | None = None):
        self.tokenizer, self.stop_ids, self.emit, self.on_stop = tokenizer, stop_ids, emit, on_stop
        self.tokens: list[int] = []  # the current line's tokens (decoded afresh at each line)
        self.letter: list[int] = []  # the whole letter's, for on_stop
        self.shown, self.ended, self.started = 0, False, False

    def put(self, token: int) -> None:
        if self.ended:
            return
        if token in self.stop_ids:
            self.end()
            if self.on_stop is not None:  # the row's letter is whole: its answer need not wait for the batch
                self.on_stop([*self.letter, token])
            return
        self.tokens.append(token)
        self.letter.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\n"):
            self._release(text)
            self.tokens, self.shown = [], 0  # a line is done: decode the next one afresh (keeps decoding cheap)
        elif not text.endswith("\ufffd"):  # an unfinished UTF-8 character waits for its next byte
            cut = text.rfind(" ") + 1 if self.started else len(text)
            if cut > self.shown:
                self._release(text[:cut])

    def _release(self, text: str) -> None:
        if len(text) > self.shown:
            self.emit(text[self.shown:])
            self.shown, self.started = len(text), True

    def end(self) -> None:
        if not self.ended:
            self._release(self.tokenizer.decode(self.tokens, skip_special_tokens=True))
            self.ended = True


class BatchStreamer:
    """What generate's `streamer` argument gets: splits each step's tokens among the rows' RowStreamers (None for a
    row nobody streams). The first `put` is the prompt, which is skipped."""

    def __init__(self, rows: list[RowStreamer | None]):
        self.rows, self.prompt_seen = rows, False

    def first(self, row: int, token: int) -> None:
        """A row's first token, known before the batch decodes together (staged.generate_staged)."""
        self.put_row(row, [token])

    def put_row(self, row: int, tokens: list[int]) -> None:
        """Tokens of one row, several at a time (the slot engine hands them over at each sync)."""
        if self.rows[row] is not None:
            for token in tokens:
                self.rows[row].put(token)

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(len(self.rows), -1)[:, -1].tolist()):
            if row is not None:
                row.put(int(token))

    def end(self) -> None:
        for row in self.rows:
            if row is not None:
                row.end()


class Batcher:
    """Requests wait in one line; a worker takes the first, waits up to `max_wait` for more (at most `max_batch`
    with the same max_new_tokens: a longer cap would change the shorter letters' truncation), and runs them as one
    generate call in the writer's thread. While a batch generates, the next one gathers in the line."""

    def __init__(self, writer: LetterWriter, *, max_batch: int, max_wait: float, max_seconds: float):
        self.writer, self.max_batch, self.max_wait, self.max_seconds = writer, max_batch, max_wait, max_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._line: deque[_Pending] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._arrived, self._line = loop, asyncio.Event(), deque()
            self._task = loop.create_task(self._work(), name="coverlora-batcher")

    def enqueue(self, prompt: list[int], max_new_tokens: int, listener: Listener | None = None,
                row: dict[str, str] | None = None) -> asyncio.Future:
        """Put a request in line; its future gets a Generated. A listener hears its place in line, its batch's
        start and its letter's text as it is written (greedy decoding only). `row` (the request's fields) is
        needed when the writer decodes grounded."""
        self._ensure_worker()
        item = _Pending(prompt, max_new_tokens, asyncio.get_running_loop().create_future(), listener, row)
        item.future.add_done_callback(lambda _: self._tell_places())  # one that leaves moves the others up
        self._line.append(item)
        self._arrived.set()
        self._tell_places()
        return item.future

    async def submit(self, prompt: list[int], max_new_tokens: int, row: dict[str, str] | None = None) -> Generated:
        return await self.enqueue(prompt, max_new_tokens, row=row)

    @property
    def waiting(self) -> int:
        return sum(not item.future.done() for item in self._line)

    def _tell_places(self) -> None:
        """Tell each waiting stream its place in line (1 = next), when it changed."""
        place = 0
        for item in self._line:
            if item.future.done():
                continue
            place += 1
            if item.listener is not None and item.place != place:
                item.place = place
                item.listener("queued", place)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RuntimeError):
                pass
        self._task = None

    async def _next_live(self) -> _Pending:
        while True:
            while not self._line:
                self._arrived.clear()
                await self._arrived.wait()
            item = self._line.popleft()
            if not item.future.done():  # a client that gave up while waiting is dropped
                return item

    def _take_matching(self, batch: list[_Pending]) -> None:
        """Move requests with the first one's cap from the line into `batch`, in order, up to max_batch."""
        for item in list(self._line):
            if len(batch) >= self.max_batch:
                return
            if item.future.done():
                self._line.remove(item)
            elif item.max_new_tokens == batch[0].max_new_tokens:
                self._line.remove(item)
                batch.append(item)

    async def _gather(self) -> list[_Pending]:
        batch = [await self._next_live()]
        deadline = time.monotonic() + self.max_wait
        while True:
            self._take_matching(batch)
            left = deadline - time.monotonic()
            if len(batch) >= self.max_batch or left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        self._tell_places()
        return [item for item in batch if not item.future.done()] or await self._gather()

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

    def _streamer(self, items: list[_Pending]) -> BatchStreamer | None:
        """A streamer for the rows that are streamed: each hears its text, and its answer is sent the moment its
        stop token comes, not when the batch's slowest letter ends."""
        if not any(item.listener for item in items):
            return None
        loop, stop_ids, started = self._loop, set(self.writer.format.stop_ids), time.perf_counter()

        def finished(item: _Pending, tokens: list[int]) -> None:  # in the event loop
            from coverlora.generate.batched import letters_from

            if not item.future.done():
                texts, counts = letters_from(self.writer.tokenizer, [tokens], self.writer.format.stop_ids)
                item.future.set_result(Generated(texts[0], counts[0], len(items), time.perf_counter() - started))

        def row(item: _Pending) -> RowStreamer | None:
            if item.listener is None:
                return None
            return RowStreamer(self.writer.tokenizer, stop_ids,
                               lambda text: loop.call_soon_threadsafe(item.listener, "token", text),
                               lambda tokens: loop.call_soon_threadsafe(finished, item, tokens))

        return BatchStreamer([row(item) for item in items])

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            for item in items:
                if item.listener is not None:
                    item.listener("start", len(items))
            started = time.perf_counter()
            try:
                texts, counts, choices = await loop.run_in_executor(self.writer.executor, self._generate(items))
            except Exception as exc:  # noqa: BLE001 - every waiting client must hear about it
                log.exception("generation failed")
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            for item, text, count, choice in zip(items, texts, counts, choices, strict=True):
                if not item.future.done():
                    item.future.set_result(Generated(text, count, len(items), seconds, choice))

    def _generate(self, items: list[_Pending]) -> Callable[[], tuple[list[str], list[int], list]]:
        """The blocking call that writes `items`' letters in the writer's thread: greedy and streamed, or grounded."""
        prompts, cap, stop = [i.prompt for i in items], items[0].max_new_tokens, self._stop_when_abandoned(items)
        if self.writer.grounded is not None:
            rows = [i.row for i in items]
            return lambda: self.writer.generate_grounded(prompts, rows, cap, max_seconds=self.max_seconds, stop=stop)
        if self.writer.repair is not None:
            rows = [i.row for i in items]
            return lambda: self.writer.generate_repaired(prompts, rows, cap, max_seconds=self.max_seconds, stop=stop)
        streamer = self._streamer(items)

        def greedy():
            texts, counts = self.writer.generate(prompts, cap, max_seconds=self.max_seconds, stop=stop, streamer=streamer)
            return texts, counts, [None] * len(texts)
        return greedy
