"""Letters for many prompts, the one entry the test stage, the service and the benchmarks call: the slot engine
where it can run, else transformers' generate in length-sorted batches."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from coverlora.generate.batched import BatchDone, batched_letters, generate_batch, generate_candidates
from coverlora.generate.engine import UnsupportedModel
from coverlora.generate.slots import slot_candidates, slot_letters

log = logging.getLogger("coverlora")


def generate_all(model, tokenizer, prompts: list[list[int]], indices: list[int], *, max_new_tokens: int,
                 batch_size: int, on_batch: BatchDone, desc: str, stop_ids: list[int] | None = None,
                 kv_cache: str = "preallocated", decode: Callable | None = None, slot_decode: Callable | None = None,
                 limits: dict[int, int] | None = None, **decoding) -> None:
    """Letters for prompts[i], i in `indices`, through on_batch as they finish; `limits` caps some rows' new
    tokens below max_new_tokens (benchmarks replaying a real run's lengths).

    kv_cache 'slots' is the slot engine (engine.py: continuous batching) for greedy letters, or for what
    `slot_decode` decodes on it (slot_letters' signature: grounded decoding's candidates, repair); a `decode`
    without one, no_repeat_ngram_size and a model the engine cannot drive go through HF generate with the
    static cache on a GPU (preallocated elsewhere) instead: batched_letters. `decode` is generate_batch unless
    given (generate_candidates for grounded decoding: a list of letters per row).
    """
    if kv_cache == "slots":
        if (decode is None or slot_decode is not None) and not decoding.get("no_repeat_ngram_size"):
            caps = [min(max_new_tokens, (limits or {}).get(i, max_new_tokens)) for i in range(len(prompts))]
            try:
                return (slot_decode or slot_letters)(model, tokenizer, prompts, indices, caps, batch_size=batch_size,
                                                     on_batch=on_batch, desc=desc, stop_ids=stop_ids,
                                                     repetition_penalty=decoding.get("repetition_penalty", 1.0))
            except UnsupportedModel as exc:
                model._slot_engine = None
                log.warning("the slot engine cannot drive this model (%s): decoding with generate instead", exc)
        kv_cache = "static" if next(model.parameters()).is_cuda else "preallocated"
    if limits:
        raise ValueError("per-row limits need kv_cache 'slots' and greedy decoding")
    batched_letters(model, tokenizer, prompts, indices, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    on_batch=on_batch, desc=desc, stop_ids=stop_ids, kv_cache=kv_cache, decode=decode or generate_batch,
                    **decoding)


def candidate_decoders(*, samples: int, temperature: float, seed: int, top_p: float = 1.0) -> tuple[Callable, Callable]:
    """Grounded decoding's candidates (the greedy letter and `samples` draws per row) as generate_all's `decode`
    and `slot_decode`: the same letters on generate and on the slot engine for the same seed."""
    options = {"samples": samples, "temperature": temperature, "seed": seed, "top_p": top_p}
    return functools.partial(generate_candidates, **options), functools.partial(slot_candidates, **options)
