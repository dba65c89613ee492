"""What both bench scripts share: model shapes, the random checkpoint, the machine's description, a log line,
and the reading of a torch.profiler profile into kernel categories."""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5),
    "tiny": dict(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-5),
}


def cuda() -> bool:
    return torch.cuda.is_available()


def sync() -> None:
    if cuda():
        torch.cuda.synchronize()


def release_gpu() -> None:
    """Give cached GPU memory back: the next config (or test.py, in a child process that sizes its batches by
    free memory) starts from what is really free."""
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "liger-kernel", "triton"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def device_name() -> str:
    if cuda():
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def device_slug() -> str:
    """The device for a result file name: "h100-80gb-hbm3", or "cpu"."""
    if not cuda():
        return "cpu"
    return "-".join(torch.cuda.get_device_name(0).lower().replace("nvidia", "").split())[:24]


def run_meta(shape: str, script: str) -> dict:
    """What every result file records about its invocation: shape, device, versions, date and command."""
    return {"shape": shape, "device": device_name(), "versions": versions(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": "python " + " ".join([os.path.relpath(script, ROOT)] + sys.argv[1:])}


def build_checkpoint(shape: str, ckpt: Path, tokenizer_path: str | None = None) -> float:
    """A random-weight bf16 Llama of `shape` saved to `ckpt` (reused when already there). With `tokenizer_path`,
    its vocabulary and special ids come from that tokenizer, saved beside the weights (a model test.py can run)."""
    if (ckpt / "config.json").is_file():
        return 0.0
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    t = time.time()
    tokenizer, ids = None, dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if tokenizer_path:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
    config = LlamaConfig(**{**SHAPES[shape], **ids}, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device("cuda" if cuda() else "cpu"):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16 if cuda() else torch.float32)
    model.save_pretrained(str(ckpt))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(ckpt))
    del model
    release_gpu()
    return time.time() - t


# --------------------------------------------------------------------------------------------- profiles


def profiler_activities() -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda() else [])


def kernel_category(name: str) -> str:
    n = name.lower()
    if "dequant" in n or "kgemm_4bit" in n or "bnb" in n:
        return "nf4 dequant (bitsandbytes)"
    if any(k in n for k in ("fmha", "flash", "attention", "flex", "sdpa", "triton_tem_fused")):
        return "attention"
    if any(k in n for k in ("gemm", "cutlass", "xmma", "nvjet", "cublas", "sm90_", "wgmma", "matmul")):
        return "matmul (GEMM)"
    if any(k in n for k in ("rms", "rope", "swiglu", "silu", "liger", "layer_norm")):
        return "norm/rope/swiglu"
    if "adam" in n or "foreach" in n or "multi_tensor" in n:
        return "optimizer"
    if any(k in n for k in ("cross_entropy", "log_softmax", "logsumexp", "nll", "log_prob", "entropy")):
        return "loss/lm head"
    if any(k in n for k in ("memcpy", "memset", "copy", "cast", "to_copy")):
        return "copies/casts"
    return "other elementwise/reduce"


def kernel_ms(prof) -> dict[str, tuple[float, int]]:
    """Milliseconds and calls of each GPU kernel and copy in a profile (of each op on a CPU run)."""
    out = {}
    for e in prof.key_averages():
        if cuda():  # GPU kernels and copies only: the aten ops that launch them would count them twice
            if "CUDA" not in str(getattr(e, "device_type", "")):
                continue
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        else:
            t = e.self_cpu_time_total
        if t and t > 0:
            out[e.key] = (t / 1e3, e.count)
    return out


def ms_by_category(ms_by_kernel: dict[str, float]) -> dict[str, float]:
    """Kernel times summed by kernel_category, largest first."""
    cats: dict[str, float] = {}
    for name, ms in ms_by_kernel.items():
        cats[kernel_category(name)] = cats.get(kernel_category(name), 0.0) + ms
    return dict(sorted(cats.items(), key=lambda kv: -kv[1]))
