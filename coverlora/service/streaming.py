"""POST /v1/letters/stream: the letter as server-sent events while it is written.

`start` ({prompt_tokens, model}), `token` ({text}) as the letter grows, then `done` (the same answer as
POST /v1/letters, with the cleaned letter) or `error` ({detail}). One prompt, one streamer: the stream bypasses
the batcher but shares the writer's generate thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any, AsyncIterator

from fastapi.responses import StreamingResponse

from ..config import ServeConfig
from .batcher import Generated
from .letters import Prepared, answer
from .writer import LetterWriter

log = logging.getLogger("coverlora")
# The route's documented 200: one event (OpenAPI 3.1 reads `schema` per event).
STREAM_RESPONSE = {
    "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": ["start", "token", "done", "error"]},
                       "data": {"type": "string", "description": "JSON: start {prompt_tokens, model}, token {text}, "
                                                                 "done (a LetterResponse), error {detail}."}}}}},
    "description": "Server-sent events: `token` ({text}) as the letter is written, then `done` (the same "
                   "object as POST /v1/letters, with the cleaned letter) or `error` ({detail})."}


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _queue_streamer(tokenizer, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
    """A transformers TextStreamer that hands each piece of finished text to `queue`, from the generate thread."""
    from transformers import TextStreamer

    class QueueStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                loop.call_soon_threadsafe(queue.put_nowait, text)

    return QueueStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


async def _events(writer: LetterWriter, cfg: ServeConfig, prepared: Prepared, started: float) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    finished, stop = object(), threading.Event()
    streamer = _queue_streamer(writer.tokenizer, loop, queue)

    def run() -> Generated:
        t0 = time.perf_counter()
        texts, counts = writer.generate([prepared.prompt], prepared.max_new_tokens, max_seconds=cfg.max_seconds,
                                        stop=stop, streamer=streamer)
        return Generated(texts[0], counts[0], 1, time.perf_counter() - t0)

    job = loop.run_in_executor(writer.executor, run)
    job.add_done_callback(lambda _: queue.put_nowait(finished))
    deadline = started + cfg.request_timeout
    try:
        yield sse("start", {"prompt_tokens": len(prepared.prompt), "model": writer.name})
        while (item := await asyncio.wait_for(queue.get(), max(deadline - time.perf_counter(), 0.001))) is not finished:
            yield sse("token", {"text": item})
        yield sse("done", answer(writer, cfg, prepared, await job, started))
    except (asyncio.TimeoutError, TimeoutError):
        yield sse("error", {"detail": f"no letter within {cfg.request_timeout:g} s: the service is busy"})
    except Exception as exc:  # noqa: BLE001 - the status line is sent already: report in the stream
        log.exception("streamed generation failed")
        yield sse("error", {"detail": f"generation failed: {type(exc).__name__}"})
    finally:
        stop.set()  # a client that went away stops the generation too


def letter_stream(writer: LetterWriter, cfg: ServeConfig, prepared: Prepared, started: float) -> StreamingResponse:
    return StreamingResponse(_events(writer, cfg, prepared, started), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
