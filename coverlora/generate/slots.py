"""The slot engine's glue: one engine per model (its CUDA graphs are bound to the model's tensors), sized from the
KV budget, and letters decoded through it with progress and a one-line out-of-memory error."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from coverlora.errors import UserError
from coverlora.generate.batched import BatchDone, kv_token_budget, letters_from
from coverlora.generate.engine import SlotEngine, round_up

log = logging.getLogger("coverlora")
# The slot engine's prefill is chunked (engine.SlotEngine.prefill_tokens), so it needs less headroom than
# generate's batches, which prefill a whole batch at once (see kv_token_budget).
SLOT_MEMORY_SHARE = 0.85


def slot_engine(model, tokenizer, *, capacity: int, stop_ids: list[int], repetition_penalty: float, most_slots: int,
                rows: int = 0, sampling: bool = False, top_p: float = 1.0) -> SlotEngine:
    """The model's slot engine: the one an earlier call built (kept on the model, since its CUDA graphs are bound
    to the model's tensors) when it can serve, else a new one in its place with at most `most_slots` slots, as many
    as the KV budget holds, spread evenly over `rows` prompts (equal waves: none runs half empty)."""
    capacity = round_up(capacity)  # the engine's own rounding: the KV budget is shared out in what it allocates
    engine = getattr(model, "_slot_engine", None)
    if engine is not None and engine.serves(capacity, stop_ids, tokenizer.pad_token_id, repetition_penalty,
                                            sampling, top_p):
        return engine
    model._slot_engine = engine = None
    if next(model.parameters()).is_cuda:
        torch.cuda.empty_cache()  # the old engine's cache is free memory for the new one's budget
    budget = kv_token_budget(model, share=SLOT_MEMORY_SHARE)
    slots = max(1, min(most_slots, budget // capacity if budget else most_slots))
    if rows:
        slots = math.ceil(rows / math.ceil(rows / slots))
    if budget:
        log.info("%d slots of %d positions (KV cache budget %s positions)", slots, capacity, f"{budget:,}")
    engine = model._slot_engine = SlotEngine(model, slots=slots, capacity=capacity, stop_ids=stop_ids,
                                             pad_id=tokenizer.pad_token_id, repetition_penalty=repetition_penalty,
                                             sampling=sampling, top_p=top_p)
    return engine


def slot_letters(model, tokenizer, prompts: list[list[int]], indices: list[int], caps: list[int], *, batch_size: int,
                 on_batch: BatchDone, desc: str, stop_ids: list[int] | None, repetition_penalty: float,
                 sampling: list[tuple[int, int, float]] | None = None, top_p: float = 1.0,
                 should_stop: Callable[[], bool] | None = None) -> None:
    """generate_all through the slot engine: as many slots as the KV budget holds at the longest prompt + cap;
    `sampling` (by prompt: seed, stream, temperature) draws sampled letters on a sampling engine; once
    `should_stop()`, every row ends where it is."""
    stop_ids = list(stop_ids or [tokenizer.eos_token_id])
    engine = slot_engine(model, tokenizer, capacity=max(len(prompts[i]) + caps[i] for i in indices),
                         stop_ids=stop_ids, repetition_penalty=repetition_penalty, most_slots=batch_size, rows=len(indices),
                         sampling=sampling is not None, top_p=top_p)
    bar = tqdm(total=len(indices), desc=desc, unit="letter")
    tokens_done, started = 0, time.perf_counter()
    last = started

    def finished(rows: list[int], tokens: list[list[int]]) -> None:
        nonlocal tokens_done, last
        texts, counts = letters_from(tokenizer, tokens, stop_ids)
        now = time.perf_counter()
        on_batch(rows, texts, counts, now - last)  # the time since the last rows finished, shared by these
        last, tokens_done = now, tokens_done + sum(counts)
        bar.update(len(rows))
        bar.set_postfix_str(f"{tokens_done / (now - started):,.0f} tok/s, {len(engine.graphs)} graphs")

    try:
        engine.run(prompts, indices, caps, finished, sampling=sampling, should_stop=should_stop)
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"out of GPU memory in the slot engine ({engine.slots} slots of {engine.capacity} positions)",
                        where="test stage", fix="lower --batch_size (the most slots), or use --kv_cache static; "
                        "finished letters are kept and the next run resumes") from None
    bar.close()
    log.info("%s: %s", desc, engine.stats.line())


def slot_candidates(model, tokenizer, prompts: list[list[int]], indices: list[int], caps: list[int], *, batch_size: int,
                    on_batch: BatchDone, desc: str, stop_ids: list[int] | None, repetition_penalty: float, samples: int,
                    temperature: float, seed: int = 0, top_p: float = 1.0,
                    should_stop: Callable[[], bool] | None = None) -> None:
    """Grounded decoding's candidates on the slot engine: per row the greedy letter (stream 0) and `samples` draws
    (streams 1..samples, sampling.row_seed(seed, prompt)), as batched.generate_candidates writes them. Every
    candidate is a request of its own; on_batch gets a row's list of letters once all of them are done."""
    from coverlora.generate.sampling import candidate_draws

    width = samples + 1
    requests = [prompts[i] for i in indices for _ in range(width)]
    sampling = [draw for i in indices for draw in candidate_draws(prompts[i], samples, seed, temperature)]
    done: dict[int, dict[int, tuple[str, int]]] = {}

    def per_request(batch: list[int], texts: list[str], counts: list[int], seconds: float) -> None:
        rows = []
        for r, text, count in zip(batch, texts, counts):
            row = indices[r // width]
            done.setdefault(row, {})[r % width] = (text, count)
            if len(done[row]) == width:
                rows.append(row)
        if rows:
            letters = [[entry[k] for k in range(width)] for entry in (done.pop(row) for row in rows)]
            on_batch(rows, [[t for t, _ in row] for row in letters], [[c for _, c in row] for row in letters], seconds)

    slot_letters(model, tokenizer, requests, list(range(len(requests))), [caps[i] for i in indices for _ in range(width)],
                 batch_size=batch_size, on_batch=per_request, desc=desc, stop_ids=stop_ids,
                 repetition_penalty=repetition_penalty, sampling=sampling, top_p=top_p, should_stop=should_stop)
