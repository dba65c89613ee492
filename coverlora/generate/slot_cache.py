"""The slot engine's storage and bookkeeping: the per-slot KV cache the model's attention writes through, the SDPA
kernels its prefills use, and where a run's time went."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EngineStats:
    """Where a run's time went: prefills, CUDA graph captures, and decode steps by batch size."""

    prefill_s: float = 0.0
    prefill_tokens: int = 0
    capture_s: float = 0.0
    graphs: int = 0
    decode: dict[int, list[float]] = field(default_factory=dict)  # batch -> [steps, seconds]

    def add_steps(self, batch: int, steps: int, seconds: float) -> None:
        entry = self.decode.setdefault(batch, [0, 0.0])
        entry[0] += steps
        entry[1] += seconds

    def line(self) -> str:
        steps = sum(int(n) for n, _ in self.decode.values())
        decode_s = sum(s for _, s in self.decode.values())
        by_batch = ", ".join(f"{b}: {int(n)} × {1e3 * s / n:.1f} ms" for b, (n, s) in sorted(self.decode.items(), reverse=True))
        return (f"prefill {self.prefill_s:.1f} s ({self.prefill_tokens:,} tokens); {self.graphs} CUDA graphs captured in "
                f"{self.capture_s:.1f} s; {steps:,} decode steps in {decode_s:.1f} s (batch: steps × per step: {by_batch})")


def prefill_attention(device: torch.device):
    """SDPA kernels for prefills: on CUDA the memory-efficient one, which takes any mask without building a cuDNN
    plan for each new (rows, width) shape; attention is a small part of a prefill's work anyway."""
    import contextlib

    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


class SlotCache:
    """Per layer, keys and values of `slots` rows x `capacity` positions. The model's attention layers call
    `update`: in a prefill it writes the prompt into `rows`' slots and attends within the prompt; in a decode
    step it writes each row's new token at `write_at` and returns the batch's first `length` positions."""

    def __init__(self, layers: int, slots: int, kv_heads: int, capacity: int, head_dim: int, dtype, device):
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.batch_index = torch.arange(slots, device=device)
        self.rows: torch.Tensor | None = None
        self.write_at: torch.Tensor | None = None
        self.batch = self.length = self.updates = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        self.updates += 1
        if self.rows is not None:
            width = key_states.shape[-2]
            keys[self.rows, :, :width] = key_states
            values[self.rows, :, :width] = value_states
            return key_states, value_states
        rows = self.batch_index[:self.batch]
        keys[rows, :, self.write_at] = key_states[:, :, 0]
        values[rows, :, self.write_at] = value_states[:, :, 0]
        return keys[:self.batch, :, :self.length], values[:self.batch, :, :self.length]

    def move(self, source: torch.Tensor, target: torch.Tensor, length: int) -> None:
        """Copy slots `source` to slots `target` (their first `length` positions)."""
        for buffer in (*self.keys, *self.values):
            buffer[target, :, :length] = buffer[source, :, :length]
