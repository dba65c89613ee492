"""Batched greedy generation: the decoding engine under the test stage (generate/stage.py) and the service.

Decoding a 7B model is bound by memory traffic: every step reads the weights and the whole batch's KV cache.
So batches are as large as GPU memory allows (sized from the KV bytes per token), prompts are length-sorted to
waste little on padding, and the cache never copies itself: on a GPU, transformers' StaticCache with the decode
step compiled into CUDA graphs (one batch shape, so one compile per model); elsewhere a preallocated cache
written in place. transformers' default DynamicCache torch.cat-s every layer's cache at every step.
bench/README.md has the measurements.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable

import torch
from tqdm.auto import tqdm
from transformers.cache_utils import Cache, DynamicLayer

from coverlora.data import clean_letter
from coverlora.errors import UserError
from coverlora.train.memory import attention_shape

log = logging.getLogger("coverlora")
# Recent transformers 5.x renamed generate()'s `past_key_values` to `cache`; the old name works until 6.0 (our
# upper bound) and is the only one older 5.x releases take, so it stays, without the rename's warning.
warnings.filterwarnings("ignore", message="`past_key_values` is deprecated", category=FutureWarning)
BatchDone = Callable[[list[int], list[str], list[int], float], None]



def length_sorted_batches(lengths: list[int], batch_size: int, *, max_new_tokens: int = 0,
                          token_budget: int = 0, uniform: bool = False) -> list[list[int]]:
    """Indices grouped into batches of similar prompt length, longest first (an OOM shows up at once).

    With a `token_budget`, a batch also stops growing once rows x (its longest prompt + max_new_tokens), the
    KV-cache positions it will hold, would exceed the budget; every batch keeps at least one row. `uniform`
    sizes every batch for the longest prompt and spreads the rows evenly: one shape for a compiled graph.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def rows_that_fit(longest_prompt: int) -> int:
        if not token_budget:
            return batch_size
        return max(1, min(batch_size, token_budget // (longest_prompt + max_new_tokens)))

    if uniform and order:
        size = rows_that_fit(lengths[order[0]])
        size = math.ceil(len(order) / math.ceil(len(order) / size))
        return [order[start:start + size] for start in range(0, len(order), size)]
    batches, start = [], 0
    while start < len(order):
        size = rows_that_fit(lengths[order[start]])
        batches.append(order[start:start + size])
        start += size
    return batches

def kv_bytes_per_token(model) -> int:
    """Bytes one token's keys and values take over all layers, in the model's dtype."""
    cfg = model.config.get_text_config().to_dict()
    _, kv_heads, head_dim = attention_shape(cfg)
    return 2 * cfg["num_hidden_layers"] * kv_heads * head_dim * next(model.parameters()).element_size()

def kv_token_budget(model, share: float = 0.75) -> int:
    """KV-cache positions that fit in `share` of the model's GPU's free memory (0 = no limit, on CPU). The rest
    is for the prefill's activations: 0.85 ran out of memory on a 7B model's 125 x 393-token prefill."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * share) // kv_bytes_per_token(model)

class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views into one buffer of `capacity` positions, allocated at the
    first update: new tokens are written in place instead of torch.cat-ing (copying) the whole layer's cache."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._buffers = tuple(s.new_empty(*s.shape[:-2], self.capacity, s.shape[-1]) for s in (key_states, value_states))
        self._filled = 0

    def _view(self, end: int) -> None:
        self._filled = end
        self.keys, self.values = (b[..., :end, :] for b in self._buffers)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self._filled, self._filled + key_states.shape[-2]
        if end > self.capacity:  # longer than planned: grow once, by copying (what DynamicLayer does every step)
            self.capacity = max(end, 2 * self.capacity)
            old = self._buffers
            self._buffers = tuple(b.new_empty(*b.shape[:-2], self.capacity, b.shape[-1]) for b in old)
            for new, b in zip(self._buffers, old):
                new[..., :start, :] = b[..., :start, :]
        self._buffers[0][..., start:end, :] = key_states
        self._buffers[1][..., start:end, :] = value_states
        self._view(end)
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:
        if self.is_initialized and tokens_to_remove:
            self._view(max(0, self._filled - abs(tokens_to_remove)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._buffers = tuple(b.repeat_interleave(repeats, dim=0) for b in self._buffers)
            self._view(self._filled)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._buffers = tuple(b[indices, ...] for b in self._buffers)
            self._view(self._filled)

def preallocated_cache(model, capacity: int):
    """A transformers Cache of PreallocatedLayers, one per decoder layer, each holding `capacity` positions."""
    layers = model.config.get_text_config().num_hidden_layers
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(layers)])

def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding keeps every prompt's last token at the same position, where generation starts."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    return ids, mask

def generate_batch(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, *, stop_ids: list[int] | None = None,
                   **kwargs) -> tuple[list[str], list[int]]:
    """Greedy letters for one batch (sampled ones with do_sample=True, num_return_sequences rows per prompt in a
    row); returns texts (prompt echo stripped) and new-token counts up to the first of `stop_ids`
    (PromptFormat.stop_ids: the end of turn and EOS; default EOS alone). The options are generate_tokens'."""
    stop_ids = list(stop_ids or [tokenizer.eos_token_id])
    return letters_from(tokenizer, generate_tokens(model, tokenizer, prompts, max_new_tokens, stop_ids=stop_ids, **kwargs),
                        stop_ids)


@torch.no_grad()
def generate_tokens(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, *, stop_ids: list[int] | None = None,
                    kv_cache: str = "preallocated", generate_kwargs: dict | None = None, **decoding) -> torch.Tensor:
    """One generate call over left-padded `prompts`: each row's new tokens (on the CPU; padded after its stop).

    `kv_cache`: 'preallocated' (in-place writes, see PreallocatedLayer), 'dynamic' (transformers' default,
    torch.cat per step) or 'static' (transformers' StaticCache, which its generate compiles on CUDA).
    `decoding` takes GenerationConfig options such as repetition_penalty or no_repeat_ngram_size;
    `generate_kwargs` goes to `model.generate` as it is (stopping_criteria, a streamer).
    """
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    cache = {}
    if kv_cache == "preallocated":
        cache["past_key_values"] = preallocated_cache(model, ids.shape[1] + max_new_tokens)
    elif kv_cache == "static":
        decoding["cache_implementation"] = "static"
    stop_ids = list(stop_ids or [tokenizer.eos_token_id])
    config = GenerationConfig(**{"do_sample": False, **decoding}, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                              pad_token_id=tokenizer.pad_token_id)
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config, **cache,
                         **(generate_kwargs or {}))
    return out[:, ids.shape[1]:].cpu()

def letters_from(tokenizer, new: torch.Tensor | list[list[int]], stop_ids: list[int]) -> tuple[list[str], list[int]]:
    """Each row's new tokens up to its first stop id: the cleaned letters and their token counts."""
    texts, counts = [], []
    stops = set(stop_ids)
    for row in new:
        row = row.tolist() if isinstance(row, torch.Tensor) else row
        length = next((k + 1 for k, token in enumerate(row) if token in stops), len(row))
        counts.append(length)
        texts.append(clean_letter(tokenizer.decode(row[:length], skip_special_tokens=True)))
    return texts, counts

def generate_candidates(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, *, samples: int,
                        temperature: float, seed: int = 0, top_p: float = 1.0,
                        **kwargs) -> tuple[list[list[str]], list[list[int]]]:
    """Per prompt, the greedy letter first and then `samples` sampled ones (grounded decoding picks among them).
    Sample k of a prompt draws on stream k with sampling.row_seed(seed, prompt), as the slot engine's candidates
    do (slots.slot_candidates): the same letters on either path, whatever the batch."""
    from transformers import LogitsProcessorList

    from coverlora.generate.sampling import SeededSampler, candidate_draws

    greedy, greedy_counts = generate_batch(model, tokenizer, prompts, max_new_tokens, **kwargs)
    repeated = [prompt for prompt in prompts for _ in range(samples)]
    draws = [draw for prompt in prompts for draw in candidate_draws(prompt, samples, seed, temperature)[1:]]
    seeds, streams, temperatures = zip(*draws)
    sampler = SeededSampler(seed=seeds, stream=streams, first=[0] * len(repeated), temperature=temperatures,
                            width=max(map(len, prompts)), top_p=top_p)
    generate_kwargs = dict(kwargs.pop("generate_kwargs", None) or {})
    generate_kwargs["logits_processor"] = LogitsProcessorList([*(generate_kwargs.get("logits_processor") or []), sampler])
    sampled, counts = generate_batch(model, tokenizer, repeated, max_new_tokens, generate_kwargs=generate_kwargs, **kwargs)
    return ([[letter, *sampled[i * samples:(i + 1) * samples]] for i, letter in enumerate(greedy)],
            [[count, *counts[i * samples:(i + 1) * samples]] for i, count in enumerate(greedy_counts)])

def batched_letters(model, tokenizer, prompts: list[list[int]], indices: list[int], *, max_new_tokens: int,
                    batch_size: int, on_batch: BatchDone, desc: str, stop_ids: list[int] | None, kv_cache: str,
                    decode: Callable, **decoding) -> None:
    """generate_all through `decode`, in length-sorted batches of at most `batch_size` rows whose KV cache fits the
    GPU's free memory; on CUDA OOM anyway, the batch is halved and retried.

    With the static (compiled) cache every batch gets the same shape, so the graph compiles once: equal batch
    sizes, the last one filled up with repeats of its last prompt, whose letters are dropped.
    """
    budget = kv_token_budget(model)
    uniform = kv_cache == "static"
    pending = length_sorted_batches([len(prompts[i]) for i in indices], batch_size, max_new_tokens=max_new_tokens,
                                    token_budget=budget, uniform=uniform)
    if budget:
        log.info("%s: %d batches of up to %d rows (KV cache budget %s positions)", desc, len(pending),
                 max(len(b) for b in pending), f"{budget:,}")
    shape = len(pending[0]) if uniform else 0
    pending = [[indices[k] for k in batch] for batch in pending]
    bar = tqdm(total=len(indices), desc=desc, unit="letter")
    tokens_done, started = 0, time.perf_counter()
    while pending:
        batch = pending.pop(0)
        rows = [prompts[i] for i in batch]
        rows += rows[-1:] * (shape - len(rows))
        t0 = time.perf_counter()
        try:
            texts, counts = decode(model, tokenizer, rows, max_new_tokens, stop_ids=stop_ids, kv_cache=kv_cache,
                                   **decoding)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise UserError("out of GPU memory on a single prompt", where="test stage",
                                fix="lower --max_new_tokens or use a smaller --precision") from None
            torch.cuda.empty_cache()
            half = len(batch) // 2
            log.warning("CUDA out of memory at batch %d: retrying as %d + %d", len(batch), half, len(batch) - half)
            pending[:0] = [batch[:half], batch[half:]]
            shape = 0  # a new shape compiles anew anyway
            continue
        texts, counts = texts[:len(batch)], counts[:len(batch)]
        on_batch(batch, texts, counts, time.perf_counter() - t0)
        tokens_done += sum(_tokens_of(c) for c in counts)
        bar.update(len(batch))
        bar.set_postfix_str(f"{tokens_done / (time.perf_counter() - started):,.0f} tok/s")
    bar.close()


def _tokens_of(count) -> int:
    """A decode step's count for one row: new tokens (greedy), a list of them (candidates), or a record with
    generated tokens (repair)."""
    if isinstance(count, int):
        return count
    return count.generated if hasattr(count, "generated") else sum(count)
