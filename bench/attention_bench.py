"""Decode attention alone: one query per row over a slot cache whose rows are filled to different lengths.

The slot engine's decode step (coverlora/generate/engine.py) spends most of its time here. Each kernel reads the keys
and values of `batch` rows; the rows' filled lengths are spread over the last `spread` positions of `length`,
as in a wave of length-sorted prompts. Reported: ms per layer, and the bytes a kernel must read (the filled
positions only) over its time, as TB/s.

  sdpa-mask      SDPA with the engine's boolean mask over `length` positions (the backend PyTorch picks)
  sdpa-<name>    the same, forced to one backend (cudnn, efficient)
  sdpa-nomask    SDPA over all `length` positions without a mask: wrong for short rows, the kernel's roof
  flex           FlexAttention (compiled) with a block mask of each row's filled 128-position blocks

Run (device; seconds):
  python bench/attention_bench.py --out bench/results/attention_h200.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(fn, repeat: int = 20) -> float:
    """Median ms of `fn` over `repeat` runs after two warm-ups."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def flex_case(query, keys, values, filled: torch.Tensor, length: int):
    """A compiled flex_attention call whose block mask holds each row's filled blocks; and its compile seconds."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    def mask_mod(b, h, q_idx, kv_idx):
        return kv_idx < filled[b]

    block_mask = create_block_mask(mask_mod, B=query.shape[0], H=None, Q_LEN=1, KV_LEN=length, device="cuda")
    compiled = torch.compile(flex_attention, dynamic=False)
    started = time.perf_counter()
    compiled(query, keys, values, block_mask=block_mask)
    torch.cuda.synchronize()
    return (lambda: compiled(query, keys, values, block_mask=block_mask)), time.perf_counter() - started


def case(batch: int, length: int, spread: int, heads: int, head_dim: int, flex: bool) -> dict:
    torch.manual_seed(0)
    query = torch.randn(batch, heads, 1, head_dim, device="cuda", dtype=torch.bfloat16)
    keys, values = (torch.randn(batch, heads, length, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    filled = torch.randint(max(1, length - spread), length + 1, (batch,), device="cuda")
    mask = (torch.arange(length, device="cuda")[None, :] < filled[:, None])[:, None, None, :]
    needed = int(filled.sum()) * heads * head_dim * 2 * 2  # keys + values of the filled positions, bf16
    runs = {"sdpa-mask": lambda: F.scaled_dot_product_attention(query, keys, values, attn_mask=mask),
            "sdpa-nomask": lambda: F.scaled_dot_product_attention(query, keys, values)}
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        def forced(backend=backend):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
        runs[f"sdpa-{name}"] = forced
    row = {"batch": batch, "length": length, "spread": spread, "filled_mean": round(float(filled.float().mean()), 1)}
    for name, fn in runs.items():
        try:
            ms = timed(fn)
            row[name] = {"ms": round(ms, 3), "tb_s": round(needed / ms / 1e9, 2)}
        except RuntimeError as exc:
            row[name] = {"error": str(exc).splitlines()[0][:120]}
    if flex:
        try:
            fn, compile_s = flex_case(query, keys, values, filled, length)
            ms = timed(fn)
            row["flex"] = {"ms": round(ms, 3), "tb_s": round(needed / ms / 1e9, 2), "first_call_s": round(compile_s, 1)}
        except Exception as exc:  # noqa: BLE001 - a failed compile is a result to report
            row["flex"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="213,128,32")
    p.add_argument("--lengths", default="640,1024")
    p.add_argument("--spread", type=int, default=256, help="rows are filled to length - spread ... length")
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--no-flex", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("attention_bench needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = [case(b, n, args.spread, args.heads, args.head_dim, not args.no_flex)
            for b in map(int, args.batches.split(",")) for n in map(int, args.lengths.split(","))]
    if args.out:
        Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                              "command": " ".join(["python"] + sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
