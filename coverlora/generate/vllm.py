"""backend: vllm, the test stage's optional vLLM decoder."""

from __future__ import annotations

import torch

from coverlora import distributed
from coverlora.config import TestConfig
from coverlora.data import clean_letter
from coverlora.errors import UserError
from coverlora.runs.trained import TrainedRun


class VllmLetters:
    """backend: vllm. One vLLM engine (paged attention, continuous batching) serves both models: the base, and the
    fine-tuned one as its LoRA adapter, so nothing loads twice and merged/ is not needed."""

    def __init__(self, run: TrainedRun, cfg: TestConfig, dtype: torch.dtype, stop_ids: list[int]):
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise UserError("backend 'vllm' needs the vllm package", where="config key 'backend'",
                            fix="pip install vllm (CUDA machines), or use backend: hf") from None
        if distributed.world_size() > 1:
            raise UserError("backend 'vllm' runs in one process", where="config key 'backend'",
                            fix="run python test.py without accelerate launch, or use backend: hf")
        names = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
        self.llm = LLM(model=run.base_model_path(), dtype=names[dtype], enable_lora=True,
                       max_lora_rank=run.train.lora_r, seed=0)
        self.params = SamplingParams(temperature=0.0, max_tokens=cfg.max_new_tokens,
                                     repetition_penalty=cfg.repetition_penalty, stop_token_ids=stop_ids)
        self.adapter = LoRARequest("finetuned", 1, str(run.layout.adapter))

    def __call__(self, tag: str, prompts: list[list[int]]) -> tuple[list[str], list[int]]:
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], self.params, use_tqdm=False,
                                    lora_request=self.adapter if tag == "finetuned" else None)
        return [clean_letter(o.outputs[0].text) for o in outputs], [len(o.outputs[0].token_ids) for o in outputs]
