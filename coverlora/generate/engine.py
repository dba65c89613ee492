"""The slot engine: continuous batching over one preallocated KV cache, for greedy and sampled letters (kv_cache:
slots).

Each row of the batch is a slot of `capacity` positions in every layer's key/value buffer. Prompts are prefilled
into free slots (left-padded in groups of similar length); then every decode step feeds each live slot's last
token, writes its keys and values in place at the slot's position, and attends over the first L positions only,
where L is the longest live row rounded up to a multiple of 128 (so the static cache's empty tail is never read).
A row leaves its slot as soon as it emits a stop token or reaches its limit, and a waiting prompt takes the
slot; once nothing waits, the live rows move to the front and the batch shrinks (batch_buckets).

On a GPU each (batch, L) decode step is captured once into a CUDA graph and replayed: no torch.compile, so a
new model or run costs a few eager steps instead of a compile. The graph does everything on the device: the
step, the argmax, the stop test and the bookkeeping; the host reads which rows finished every `sync_every`
steps. Greedy letters equal HF generate's (tests/test_engine.py).

Sampling (`sampling=True`) draws inside the graphs too: each slot holds a seed, a stream and a temperature
(0: greedy), and sampling.sample_tokens draws from them and the letter's token index, so a row's letter does not
depend on its batch, and generate with sampling.SeededSampler writes the same one. A run's `review` (sentence
repair) reads every row's tokens at each sync and may `rewind` rows to an earlier token, with new sampling: the
row goes on as if what came after had never been written.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from coverlora.generate.batched import left_pad
from coverlora.generate.sampling import sample_tokens
from coverlora.generate.slot_cache import EngineStats, SlotCache, prefill_attention
from coverlora.train.memory import attention_shape

log = logging.getLogger("coverlora")
BUCKET = 128  # positions: attention reads the longest live row's length rounded up to this
Finished = Callable[[list[int], list[list[int]]], None]
# sampling per prompt: (seed, stream, temperature)
Sampling = tuple[int, int, float]


@dataclass(frozen=True)
class Rewind:
    """A review's answer for one row: keep the letter's first `to` tokens and go on from there, drawing with
    `stream` at `temperature` (0: greedy)."""

    to: int
    stream: int
    temperature: float


# a review: (prompt indices, each one's tokens since its last review, whether each still decodes) -> rewinds by index
Review = Callable[[list[int], list[list[int]], list[bool]], dict[int, Rewind]]


class UnsupportedModel(Exception):
    """The engine cannot drive this model (its attention keeps its own cache, or wants more of the cache API).
    Every prefill checks, so it is raised at the first, before any letter is handed back: the caller can decode
    another way."""


def round_up(n: int, to: int = BUCKET) -> int:
    return -(-n // to) * to


def batch_buckets(slots: int, step: int = 32) -> list[int]:
    """The batch sizes decode steps run at, largest first: all slots, the multiples of `step` below, then the
    powers of two below `step`. Dead rows in a batch still cost their attention, so the steps are fine."""
    sizes = [slots] + [size for size in range(step * ((slots - 1) // step), 0, -step)]
    size = step >> 1
    while size >= 1:
        sizes.append(size)
        size >>= 1
    return sorted({s for s in sizes if s <= slots}, reverse=True)


class SlotEngine:
    """Greedy or seeded sampled decoding of many prompts through `slots` concurrent rows of at most `capacity`
    positions each."""

    def __init__(self, model, *, slots: int, capacity: int, stop_ids: list[int], pad_id: int,
                 repetition_penalty: float = 1.0, sync_every: int = 16, prefill_tokens: int = 16384,
                 cuda_graphs: bool | None = None, sampling: bool = False, top_p: float = 1.0):
        param = next(model.parameters())
        self.model, self.device = model, param.device
        cfg = model.config.get_text_config()
        _, kv_heads, head_dim = attention_shape(cfg.to_dict())
        self.capacity = round_up(capacity)
        self.slots, self.layers = slots, cfg.num_hidden_layers
        self.cache = SlotCache(self.layers, slots, kv_heads, self.capacity, head_dim, param.dtype, self.device)
        self.stop_ids = torch.tensor(stop_ids, device=self.device)
        self.pad_id, self.penalty = pad_id, repetition_penalty
        self.sync_every, self.prefill_tokens = sync_every, prefill_tokens
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        self.positions = torch.arange(self.capacity, device=self.device)
        longs = lambda: torch.zeros(slots, dtype=torch.long, device=self.device)  # noqa: E731
        # per slot: last token, next write position, left padding, tokens generated, cap, still generating
        self.token, self.pos, self.offset, self.count, self.limit = (longs() for _ in range(5))
        # per slot: the letter's first position (after the prompt) and the prompt's last token, for rewinds
        self.start, self.prompt_last = longs(), longs()
        self.sampling, self.top_p = sampling, top_p
        self.seed, self.stream = longs(), longs()  # per slot: its draws' seed and stream (sampling.py)
        self.temperature = torch.zeros(slots, dtype=torch.float32, device=self.device)  # 0: greedy
        self.live = torch.zeros(slots, dtype=torch.bool, device=self.device)
        self.out = torch.zeros(slots, self.capacity, dtype=torch.long, device=self.device)  # generated tokens
        vocab = model.get_output_embeddings().weight.shape[0]
        self.seen = (torch.zeros(slots, vocab, dtype=torch.bool, device=self.device)
                     if repetition_penalty != 1.0 else None)
        self.stats = EngineStats()

    def serves(self, capacity: int, stop_ids: list[int], pad_id: int, repetition_penalty: float,
               sampling: bool = False, top_p: float = 1.0) -> bool:
        """Whether this engine (its graphs and cache) can decode another set of prompts as asked. A sampling
        engine serves greedy runs too (temperature 0), at the cost of the draw in every step."""
        return (capacity <= self.capacity and stop_ids == self.stop_ids.tolist() and pad_id == self.pad_id
                and repetition_penalty == self.penalty and (self.sampling or not sampling)
                and (not sampling or top_p == self.top_p))

    # -- device work -------------------------------------------------------------------------------------------
    def _choose(self, logits: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
        """Next tokens from last-position logits, with HF's repetition penalty over the row's tokens: greedy, or
        drawn with each row's seed, stream and temperature at its letter's token index (its count)."""
        logits = logits.float()
        if self.seen is not None:
            seen = self.seen[rows]
            logits = torch.where(seen, torch.where(logits > 0, logits / self.penalty, logits * self.penalty), logits)
        if not self.sampling:
            return logits.argmax(-1)
        return sample_tokens(logits, self.temperature[rows], self.seed[rows], self.stream[rows], self.count[rows],
                             self.top_p)

    def _decode(self, batch: int, length: int) -> None:
        """One decode step for slots [0, batch), attending over `length` positions; all state stays on the device."""
        pos, offset, live = self.pos[:batch], self.offset[:batch], self.live[:batch]
        keys = self.positions[:length]
        mask = ((keys >= offset[:, None]) & (keys <= pos[:, None]))[:, None, None, :]
        self.cache.batch, self.cache.length, self.cache.write_at = batch, length, pos
        logits = self.model(input_ids=self.token[:batch, None], position_ids=(pos - offset)[:, None],
                            attention_mask=mask, past_key_values=self.cache, use_cache=True).logits[:, -1]
        token = self._choose(logits, slice(0, batch))
        self.pos[:batch] += live  # the new token was written at pos: the next one goes after it
        self._record(self.cache.batch_index[:batch], token, live)

    def _record(self, rows: torch.Tensor, token: torch.Tensor, live: torch.Tensor) -> None:
        """Store each live row's new token, count it, and retire rows that stopped or reached their limit."""
        count = self.count[rows]
        at = count.clamp(max=self.out.shape[1] - 1)
        self.out[rows, at] = torch.where(live, token, self.out[rows, at])
        if self.seen is not None:
            self.seen[rows, token] |= live
        count = count + live
        self.count[rows] = count
        self.token[rows] = token
        self.live[rows] = live & ~torch.isin(token, self.stop_ids) & (count < self.limit[rows])

    def rewind(self, slots: list[int], rewinds: list[Rewind], prompts: list[list[int]]) -> None:
        """Roll each slot back to its letter's first `to` tokens, live again with a new stream and temperature.
        The last kept token (the prompt's last, for none) is fed again at its own position, so the next step
        draws the token after it; the keys and values written past that position are never read (attention
        reads up to each row's position) and the next steps overwrite them. `prompts`: each slot's prompt, whose
        tokens the repetition penalty counts again with the kept ones."""
        rows = torch.tensor(slots, device=self.device)
        keep = torch.tensor([r.to for r in rewinds], device=self.device)
        last = self.out[rows, (keep - 1).clamp(min=0)]
        self.token[rows] = torch.where(keep > 0, last, self.prompt_last[rows])
        self.pos[rows] = self.start[rows] + keep - 1
        self.count[rows] = keep
        self.live[rows] = keep < self.limit[rows]
        if self.sampling:
            self._set_draws(rows, [r.stream for r in rewinds], [r.temperature for r in rewinds])
        elif any(r.temperature > 0 for r in rewinds):
            raise ValueError("a rewind asked for sampling from an engine built without it")
        if self.seen is not None:
            for slot, rewind, prompt in zip(slots, rewinds, prompts):
                kept = torch.tensor(prompt, device=self.device), self.out[slot, :rewind.to]
                self.seen[slot] = False
                self.seen[slot, torch.cat(kept)] = True

    def _set_draws(self, rows: torch.Tensor, streams, temperatures, seeds=None) -> None:
        """Each row's stream and temperature for its next draws (and its seed, at a prefill)."""
        if seeds is not None:
            self.seed[rows] = torch.tensor(seeds, device=self.device)
        self.stream[rows] = torch.tensor(streams, device=self.device)
        self.temperature[rows] = torch.tensor(temperatures, dtype=torch.float32, device=self.device)

    def _step(self, batch: int, length: int) -> None:
        if not self.cuda_graphs:
            return self._decode(batch, length)
        graph = self.graphs.get((batch, length))
        if graph is None:
            started = time.perf_counter()
            graph = self.graphs[(batch, length)] = self._capture(batch, length)
            torch.cuda.synchronize(self.device)
            self.stats.capture_s += time.perf_counter() - started
            self.stats.graphs += 1
        graph.replay()

    def _capture(self, batch: int, length: int) -> torch.cuda.CUDAGraph:
        """A CUDA graph of one decode step. The warm-up step it needs first runs for real, so the small state is
        put back after it; its cache and output writes are the ones the replay will make again."""
        small = (self.token, self.pos, self.count, self.live)
        saved = [t.clone() for t in small]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._decode(batch, length)
        torch.cuda.current_stream().wait_stream(stream)
        for tensor, before in zip(small, saved):
            tensor.copy_(before)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self._decode(batch, length)
        return graph

    def _prefill(self, slots: list[int], prompts: list[list[int]], limits: list[int],
                 sampling: list[Sampling] | None = None) -> None:
        """Prompts into `slots` (left-padded to the longest), and each one's first token."""
        ids, mask = left_pad(prompts, self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device).bool()
        width = ids.shape[1]
        rows = torch.tensor(slots, device=self.device)
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        # pad queries see themselves only: a row of nothing but masked keys would give NaN
        attend = (causal & mask[:, None, :]) | torch.eye(width, dtype=torch.bool, device=self.device)
        self.cache.rows, self.cache.updates = rows, 0
        try:
            with prefill_attention(self.device):
                logits = self.model(input_ids=ids, attention_mask=attend[:, None], position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                                    past_key_values=self.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        except (AttributeError, TypeError) as exc:  # the model asked the cache for what SlotCache does not have
            raise UnsupportedModel(f"{type(self.model).__name__}: {exc}") from exc
        finally:
            self.cache.rows = None
        if self.cache.updates < self.layers:  # attention that keeps its own cache would decode garbage, not fail
            raise UnsupportedModel(f"{type(self.model).__name__}'s attention does not write through the cache API")
        lengths = mask.sum(-1)
        self.pos[rows], self.offset[rows] = width, width - lengths
        self.start[rows], self.prompt_last[rows] = width, ids[:, -1]
        self.count[rows] = 0
        if self.sampling:
            seeds, streams, temperatures = zip(*(sampling or [(0, 0, 0.0)] * len(slots)))
            self._set_draws(rows, streams, temperatures, seeds)
        self.limit[rows] = torch.tensor(limits, device=self.device)
        if self.seen is not None:  # HF penalises the prompt's tokens too; padding is not the row's (its last token is)
            real = torch.where(mask, ids, ids[:, -1:])
            self.seen[rows] = torch.zeros_like(self.seen[rows]).scatter_(1, real, True)
        self._record(rows, self._choose(logits, rows), torch.ones(len(slots), dtype=torch.bool, device=self.device))

    def _prefill_groups(self, slots: list[int], indices: list[int], prompts: list[list[int]], limits: list[int],
                        sampling: list[Sampling] | None) -> None:
        """Prefill in groups of at most `prefill_tokens` padded tokens (the prefill's activations stay small)."""
        start = 0
        while start < len(indices):
            width = len(prompts[indices[start]])  # the queue is longest first: the group's longest is its first
            size = max(1, min(len(indices) - start, self.prefill_tokens // width))
            group = indices[start:start + size]
            self._prefill(slots[start:start + size], [prompts[i] for i in group], [limits[i] for i in group],
                          [sampling[i] for i in group] if sampling is not None else None)
            start += size

    # -- host loop ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, prompts: list[list[int]], indices: list[int], limits: list[int], on_finished: Finished, *,
            on_progress: Finished | None = None, should_stop: Callable[[], bool] | None = None,
            sampling: list[Sampling] | None = None, review: Review | None = None) -> None:
        """Decode prompts[i] for i in `indices`, longest first, at most limits[i] new tokens each, greedy or drawn
        with sampling[i] (a sampling engine only).

        At each sync, `on_progress(indices, tokens)` (if given) gets every row's tokens since the last call, and
        `on_finished(indices, tokens)` each finished row's whole letter (its stop token included). `review`,
        if given, sees every row's new tokens first and may rewind rows (a finished one decodes again). Once
        `should_stop()` is true, every row ends where it is, and rows that never started end empty."""
        if sampling is not None and not self.sampling:
            raise ValueError("this engine was built without sampling")
        longest = max(len(prompts[i]) + limits[i] for i in indices)
        if longest > self.capacity:
            raise ValueError(f"a prompt plus its letter needs {longest} positions; the slots hold {self.capacity}")
        self.live.zero_()
        self.stats = EngineStats()
        buckets = batch_buckets(self.slots)
        run = _Run(prompts, limits, on_finished, on_progress, deque(sorted(indices, key=lambda i: -len(prompts[i]))),
                   holder=[-1] * self.slots, shown=[0] * self.slots,
                   batch=min(b for b in buckets if b >= min(self.slots, len(indices))), sampling=sampling,
                   review=review)
        while True:
            if should_stop is not None and should_stop():
                run.review = None  # rows end where they are: nothing rewinds them
                self.live.zero_()
                if run.queue:
                    on_finished(list(run.queue), [[] for _ in run.queue])
                    run.queue.clear()
            self._hand_back(run)
            if run.queue:
                self._admit(run)
            else:
                run.batch = self._compact(run, buckets)
            occupied = [s for s in range(run.batch) if run.holder[s] >= 0]
            if occupied:
                self._run_steps(run, occupied)
            elif not run.queue:
                return

    def _admit(self, run: _Run) -> None:
        """Prefill waiting prompts into the free slots, once enough are free to make a prefill worth it."""
        free = [s for s in range(run.batch) if run.holder[s] < 0]
        if len(free) < min(len(run.queue), max(1, self.slots // 8)):
            return
        admitted = [run.queue.popleft() for _ in range(min(len(free), len(run.queue)))]
        started = time.perf_counter()
        self._prefill_groups(free, admitted, run.prompts, run.limits, run.sampling)
        for slot, i in zip(free, admitted):
            run.holder[slot], run.shown[slot] = i, 0
        self._hand_back(run)  # the first tokens, and rows they ended (this syncs, so the time below is real)
        self.stats.prefill_s += time.perf_counter() - started
        self.stats.prefill_tokens += sum(len(run.prompts[i]) for i in admitted)

    def _run_steps(self, run: _Run, occupied: list[int]) -> None:
        """Up to `sync_every` decode steps, no more than the longest-to-go row can still need."""
        batch = run.batch
        count = self.count[:batch].tolist()
        to_go = max(run.limits[run.holder[s]] - count[s] for s in occupied)
        longest = int(self.pos[:batch][torch.tensor(occupied, device=self.device)].max())
        started, captured = time.perf_counter(), self.stats.capture_s
        steps = max(1, min(self.sync_every, to_go))
        for step in range(steps):
            self._step(batch, min(self.capacity, round_up(longest + step + 1)))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats.add_steps(batch, steps, time.perf_counter() - started - (self.stats.capture_s - captured))

    def _review(self, run: _Run, held: list[int], live: list[bool], count: list[int]) -> None:
        """Every held row's tokens since its last review to run.review, and the rewinds it asks for applied."""
        lo, hi = min(run.shown[s] for s in held), max(count[s] for s in held)
        block = self.out[torch.tensor(held, device=self.device), lo:hi].tolist() if hi > lo else [[] for _ in held]
        new = [row[run.shown[s] - lo:count[s] - lo] for s, row in zip(held, block)]
        for s in held:
            run.shown[s] = count[s]
        rewinds = run.review([run.holder[s] for s in held], new, [live[s] for s in held])
        if rewinds:
            slots = [s for s in held if run.holder[s] in rewinds]
            self.rewind(slots, [rewinds[run.holder[s]] for s in slots], [run.prompts[run.holder[s]] for s in slots])
            for s in slots:
                run.shown[s] = rewinds[run.holder[s]].to

    def _hand_back(self, run: _Run) -> None:
        """New tokens to on_progress (or the review); finished rows to on_finished, freeing their slots."""
        live, count = self.live[:run.batch].tolist(), self.count[:run.batch].tolist()
        held = [s for s in range(run.batch) if run.holder[s] >= 0]
        if run.review is not None and held:
            self._review(run, held, live, count)
            live, count = self.live[:run.batch].tolist(), self.count[:run.batch].tolist()
        if run.on_progress is not None and run.review is None:
            moved = [s for s in held if count[s] > run.shown[s]]
            if moved:
                tokens = self.out[moved].tolist()
                run.on_progress([run.holder[s] for s in moved], [row[run.shown[s]:count[s]] for s, row in zip(moved, tokens)])
                for s in moved:
                    run.shown[s] = count[s]
        done = [s for s in held if not live[s]]
        if done:
            tokens = self.out[done].tolist()
            run.on_finished([run.holder[s] for s in done], [row[:count[s]] for s, row in zip(done, tokens)])
            for s in done:
                run.holder[s] = -1

    def _compact(self, run: _Run, buckets: list[int]) -> int:
        """Nothing waits: move the live rows to the front slots and decode at the smallest batch that holds them."""
        batch, holder = run.batch, run.holder
        occupied = [s for s in range(batch) if holder[s] >= 0]
        target = min((b for b in buckets if b >= len(occupied)), default=batch)
        if target >= batch:
            return batch
        movers = [s for s in occupied if s >= target]
        free = [s for s in range(target) if holder[s] < 0][:len(movers)]
        if movers:
            source, dest = (torch.tensor(x, device=self.device) for x in (movers, free))
            length = min(self.capacity, round_up(int(self.pos[source].max()) + 1))
            self.cache.move(source, dest, length)
            for state in (self.token, self.pos, self.offset, self.count, self.limit, self.live, self.out, self.seen,
                          self.start, self.prompt_last, self.seed, self.stream, self.temperature):
                if state is not None:
                    state[dest] = state[source]
            for s, d in zip(movers, free):
                holder[d], holder[s] = holder[s], -1
                run.shown[d], run.shown[s] = run.shown[s], 0
            self.live[source] = False
        return target


@dataclass
class _Run:
    """One run's host-side state: what waits, which prompt each slot holds, how much of it was handed on."""

    prompts: list[list[int]]
    limits: list[int]
    on_finished: Finished
    on_progress: Finished | None
    queue: deque
    holder: list[int]  # the prompt index each slot holds (-1: free)
    shown: list[int]  # tokens of each slot's letter already given to on_progress (or the review)
    batch: int
    sampling: list[Sampling] | None = None  # by prompt index
    review: Review | None = None
