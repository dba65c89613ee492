"""The service's decoding: each prompt prefilled on its own, then every row decoded together in one generate call.

On a CPU the prefill (the whole prompt through the model) is what a waiting user feels: it costs as much per prompt
whether the prompts go one by one or as a batch. Prefilling them one by one lets each row's first token out as soon
as its own prompt is read, instead of after the whole batch's; the decode steps that follow are shared, which is
where batching pays (measured: bench/results/serve_stream_*). The prompt prefix every request shares (the system
prompt and the instruction, ~80 tokens with SmolLM2's template) is computed once and reused.

Greedy decoding as generation.generate_batch does it, with the same letters_from at the end.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from transformers import DynamicCache, GenerationConfig

from coverlora.generate.batched import left_pad, letters_from, preallocated_cache

FirstToken = Callable[[int, int], None]  # (row, token id), called as soon as a row's first token is known


def shared_prefix(prompt_ids: Callable[[dict], list[int]], fields: list[str], margin: int = 2) -> list[int]:
    """The token prefix of every prompt: what two prompts from unlike rows share, less `margin` tokens (a field's
    first word could merge with the token before it)."""
    a = prompt_ids({name: "Zebra quartz" for name in fields})
    b = prompt_ids({name: "1. data" for name in fields})
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return a[:max(common - margin, 0)]


class PrefixCache:
    """The KV cache of the shared prompt prefix, computed once; each row starts from a copy."""

    def __init__(self, model, ids: list[int]):
        self.ids = ids
        self.cache = DynamicCache()
        if ids:
            with torch.no_grad():
                device = next(model.parameters()).device
                model(input_ids=torch.tensor([ids], device=device), past_key_values=self.cache, use_cache=True)

    def for_prompt(self, prompt: list[int]) -> DynamicCache:
        if self.ids and prompt[:len(self.ids)] == self.ids and len(prompt) > len(self.ids):
            return copy.deepcopy(self.cache)
        return DynamicCache()


def _batch_cache(model, caches: list[DynamicCache], width: int, capacity: int):
    """One preallocated cache holding every row's prompt keys and values, left-padded to `width` positions."""
    batch = preallocated_cache(model, capacity)
    for index, layer in enumerate(batch.layers):
        keys, values = [], []
        for cache in caches:
            k, v = cache.layers[index].keys, cache.layers[index].values
            pad = width - k.shape[-2]
            keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
            values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
        layer.update(torch.cat(keys), torch.cat(values))
    return batch


@torch.no_grad()
def generate_staged(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, *, stop_ids: list[int],
                    prefix: PrefixCache | None = None, on_first: FirstToken | None = None, max_time: float = 0,
                    stopping_criteria=None, streamer=None, **decoding) -> tuple[list[str], list[int]]:
    """Greedy letters: row by row, the prompt (after the shared prefix) and its first token; then one generate call
    for the rest of every letter. `streamer` sees the second token on (the first goes to `on_first`)."""
    started, device = time.monotonic(), next(model.parameters()).device
    pad_id = tokenizer.pad_token_id

    def config(new: int) -> GenerationConfig:
        return GenerationConfig(do_sample=False, max_new_tokens=new, eos_token_id=stop_ids, pad_token_id=pad_id,
                                max_time=max(max_time - (time.monotonic() - started), 1e-3) if max_time else None,
                                **decoding)

    caches, firsts = [None] * len(prompts), [0] * len(prompts)
    # Shortest prompt first: the least total waiting for the rows' first tokens.
    for row in sorted(range(len(prompts)), key=lambda r: len(prompts[r])):
        cache = (prefix or PrefixCache(model, [])).for_prompt(prompts[row])
        ids = torch.tensor([prompts[row]], device=device)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache,
                             generation_config=config(1), stopping_criteria=stopping_criteria)
        caches[row], firsts[row] = cache, int(out[0, -1])
        if on_first is not None:
            on_first(row, firsts[row])
    rows = [prompt + [first] for prompt, first in zip(prompts, firsts)]
    width = max(map(len, rows))
    timed_out = max_time and time.monotonic() - started >= max_time
    stopped = stopping_criteria is not None and bool(stopping_criteria(torch.tensor(firsts)[:, None], None).all())
    if max_new_tokens == 1 or timed_out or stopped or all(first in stop_ids for first in firsts):
        if streamer is not None:
            streamer.end()
        return letters_from(tokenizer, torch.tensor([[first] for first in firsts]), stop_ids)
    ids, mask = left_pad(rows, pad_id)
    cache = _batch_cache(model, caches, width - 1, width + max_new_tokens)
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache,
                         generation_config=config(max_new_tokens - 1), stopping_criteria=stopping_criteria,
                         streamer=streamer)
    return letters_from(tokenizer, out[:, width - 1:].cpu(), stop_ids)
