"""Seeded sampling that gives the same letters wherever it runs: inside the slot engine's CUDA graphs, and in
transformers' generate (as a logits processor), for the same seeds.

A row's draw at one position is the Gumbel-max trick: argmax over the vocabulary of logits / T + G, where G is
Gumbel noise computed from a counter-based hash of (the row's seed, its stream, the letter's token index, the
token id). No generator state is kept or advanced, so a draw does not depend on the batch it was made in, on the
order of rows, on how many steps ran before, or on a rollback: the same (seed, stream, position) always draws the
same token from the same logits. The argmax of logits / T + G is distributed as softmax(logits / T) over the
tokens top-p keeps (tests/test_sampling.py checks it against transformers' own warpers statistically: its
multinomial draws come from torch's generator, which no other path can reproduce draw for draw).

Temperature 0 is greedy (the argmax, no noise). The hash is 32-bit integer arithmetic held in int64 (every
product stays below 2**63), the same on CPU and CUDA.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

_MASK = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B  # a 32-bit integer hash's multiplier (below 2**27: products of 32-bit values fit in int64)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A bijective avalanche hash of 32-bit values (held in int64)."""
    x = x ^ (x >> 16)
    x = (x * _MULTIPLIER) & _MASK
    x = x ^ (x >> 16)
    x = (x * _MULTIPLIER) & _MASK
    return x ^ (x >> 16)


def row_seed(seed: int, prompt: Sequence[int]) -> int:
    """A row's seed: the run's sample seed with its prompt's tokens, so a letter depends on its own row and the
    seed only (not on its batch, its position in the data, or the path that decodes it)."""
    data = b"".join(int(t).to_bytes(4, "little", signed=False) for t in prompt)
    return zlib.crc32(data, seed & _MASK) & 0x7FFFFFFF


def candidate_draws(prompt: Sequence[int], samples: int, seed: int, temperature: float) -> list[tuple[int, int, float]]:
    """(seed, stream, temperature) of each of a prompt's grounded-decoding candidates: the greedy letter first
    (stream 0, temperature 0), then sample k on stream k. The one rule both decoding paths draw by."""
    key = row_seed(seed, prompt)
    return [(key, k, temperature if k else 0.0) for k in range(samples + 1)]


def gumbel_noise(seed: torch.Tensor, stream: torch.Tensor, position: torch.Tensor, vocab: int) -> torch.Tensor:
    """Gumbel(0, 1) noise [rows, vocab] for each row's (seed, stream, position): int64 tensors of [rows]."""
    key = _mix(_mix(_mix(seed & _MASK) ^ (stream & _MASK)) ^ (position & _MASK))
    token = torch.arange(vocab, device=seed.device, dtype=torch.long)
    bits = _mix(_mix(key[:, None] ^ token[None, :]) ^ 0x5BD1E995)
    uniform = (bits >> 8).to(torch.float32) * 2.0**-24 + 2.0**-25  # in (0, 1): 24 bits, never 0 or 1
    return -torch.log(-torch.log(uniform))


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The logits with every token outside the top-p nucleus at -inf (the smallest set of most likely tokens whose
    probability reaches top_p; the likeliest token always stays). top_p 1 keeps every token."""
    if top_p >= 1.0:
        return logits
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    outside = (probs.cumsum(dim=-1) - probs) >= top_p  # the mass before a token already reached top_p
    return logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))


def sample_tokens(logits: torch.Tensor, temperature: torch.Tensor, seed: torch.Tensor, stream: torch.Tensor,
                  position: torch.Tensor, top_p: float = 1.0) -> torch.Tensor:
    """Next tokens [rows] from float logits [rows, vocab]: greedy where temperature is 0, else seeded samples at
    each row's temperature within the top-p nucleus. All tensor work, so a CUDA graph can hold it."""
    hot = temperature > 0
    scaled = logits / torch.where(hot, temperature, torch.ones_like(temperature))[:, None]
    noisy = nucleus(scaled, top_p) + gumbel_noise(seed, stream, position, logits.shape[-1])
    return torch.where(hot, noisy.argmax(-1), logits.argmax(-1))


class SeededSampler(LogitsProcessor):
    """sample_tokens as the last logits processor of a greedy generate call: the sampled token gets the only
    finite score, so greedy search takes it. Row r of the call draws with seed[r] and stream[r], at letter
    position first[r] + the tokens the call generated so far (first[r]: the letter's tokens the row's input
    already holds after the prompt)."""

    def __init__(self, *, seed: Sequence[int], stream: Sequence[int], first: Sequence[int],
                 temperature: Sequence[float], width: int, top_p: float = 1.0):
        self.seed, self.stream, self.first = (torch.tensor(list(v), dtype=torch.long) for v in (seed, stream, first))
        self.temperature = torch.tensor(list(temperature), dtype=torch.float32)
        self.width, self.top_p = width, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.seed.device != scores.device:  # once: every later step finds them on the scores' device
            self.seed, self.stream, self.first, self.temperature = (
                t.to(scores.device) for t in (self.seed, self.stream, self.first, self.temperature))
        position = self.first + (input_ids.shape[1] - self.width)
        tokens = sample_tokens(scores.float(), self.temperature, self.seed, self.stream, position, self.top_p)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, tokens[:, None], 0.0)
