"""POST /v1/letters/stream: the letter as server-sent events while it is written.

`queued` ({position}: 1 = next; sent when the request joins the line and whenever its place changes), `start`
({prompt_tokens, model, fine_tuned, batch_size, decoding}) when its batch starts, `token` ({text}) as the letter grows
(greedy decoding; a grounded letter is chosen once all its candidates are written, and a repaired one may have
sentences rewritten, so they come whole in `done`),
then `done` (the same answer as POST /v1/letters, with the cleaned letter) or `error` ({detail}). Streams go
through the batcher like any request: one decode loop serves several streams, a streamer per row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from coverlora.config import ServeConfig
from coverlora.service.batcher import Batcher
from coverlora.service.letters import Prepared, answer
from coverlora.service.writer import LetterWriter

log = logging.getLogger("coverlora")
EVENTS = ["queued", "start", "token", "done", "error"]
# The route's documented 200: one event (OpenAPI 3.1 reads `schema` per event).
STREAM_RESPONSE = {
    "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": EVENTS},
                       "data": {"type": "string", "description": (
                           "JSON: queued {position}, start {prompt_tokens, model, fine_tuned, batch_size, decoding}, token "
                           "{text}, done (a LetterResponse), error {detail}.")}}}}},
    "description": "Server-sent events: `queued` ({position}, 1 = next) while the request waits, `start` when its "
                   "batch starts, `token` ({text}) as the letter is written, then `done` (the same object as "
                   "POST /v1/letters, with the cleaned letter) or `error` ({detail})."}


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(writer: LetterWriter, batcher: Batcher, cfg: ServeConfig, prepared: Prepared,
                  started: float) -> AsyncIterator[str]:
    heard: asyncio.Queue = asyncio.Queue()
    future = batcher.enqueue(prepared.prompt, prepared.max_new_tokens,
                             listener=lambda kind, value: heard.put_nowait((kind, value)), row=prepared.row)
    future.add_done_callback(lambda _: heard.put_nowait(("finished", None)))
    deadline = started + cfg.request_timeout
    try:
        while True:
            kind, value = await asyncio.wait_for(heard.get(), max(deadline - time.perf_counter(), 0.001))
            if kind == "queued":
                yield sse("queued", {"position": value})
            elif kind == "start":
                yield sse("start", {"prompt_tokens": len(prepared.prompt), "model": writer.name,
                                    "fine_tuned": writer.fine_tuned, "batch_size": value,
                                    "decoding": writer.method})
            elif kind == "token":
                yield sse("token", {"text": value})
            else:
                break
        yield sse("done", answer(writer, cfg, prepared, future.result(), started))
    except (asyncio.TimeoutError, TimeoutError):
        yield sse("error", {"detail": f"no letter within {cfg.request_timeout:g} s: the service is busy"})
    except Exception as exc:  # noqa: BLE001 - the status line is sent already: report in the stream
        log.exception("streamed generation failed")
        yield sse("error", {"detail": f"generation failed: {type(exc).__name__}"})
    finally:
        future.cancel()  # a client that went away leaves the line, and stops its batch once nobody else waits


def letter_stream(writer: LetterWriter, batcher: Batcher, cfg: ServeConfig, prepared: Prepared,
                  started: float) -> StreamingResponse:
    return StreamingResponse(_events(writer, batcher, cfg, prepared, started), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
