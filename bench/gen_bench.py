"""Test-stage throughput: the reference way of generating vs coverlora's test.py, in one invocation.

A random-weight model of a named shape (Llama-2-7B by default) is built once, with the SmolLM2 tokenizer (the
real Llama-2 tokenizer needs a download), so its vocabulary is 49,152 instead of 32,000. A run folder is made
for it the way train.py leaves one: the saved train config, a LoRA adapter (PEFT's initialisation, whose B = 0
makes the fine-tuned model equal the base), and merged/ pointing at the same weights. Random weights never pick
EOS, so every letter runs to max_new_tokens: the worst case for time.

  reference  the seed notebook's way: the 4-bit NF4 model (fp16 compute), one prompt at a time, plain HF
             generate with its default cache, greedy. Timed on --ref-prompts prompts; the time for all
             prompts is extrapolated from that rate, and said to be.
  test.py    the stage script itself, as a subprocess (model loads and eval.csv writing included), once per
             --kv-caches entry and --processes count (several processes go through accelerate launch).

For each: generated tokens, wall seconds, generated tok/s, letters, and the peak GPU memory test.py records.
--profile-batch N adds a torch.profiler breakdown of N prompts' decode steps (where the time goes).

Run (from the repository root; see bench/README.md):
  python bench/gen_bench.py --data path/to/cover-letter-dataset          # needs a GPU
  python bench/gen_bench.py --data path/to/cover-letter-dataset --kv-caches static,slots \
      --lengths-from bench/lengths/smollm2_full_seed42.csv               # also at a real run's letter lengths
  python bench/gen_bench.py --shape tiny --data data/sample --max-new-tokens 8 --ref-prompts 1   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SHAPES,
    build_checkpoint,
    cuda,
    device_slug,
    kernel_ms,
    log,
    ms_by_category,
    profiler_activities,
    release_gpu,
    run_meta,
    sync,
)
from bench.report import gen_markdown  # noqa: E402


def make_run(ckpt: Path, data: str, run: Path) -> None:
    """A run folder as train.py + merge.py leave it: train config, adapter/, merged/ (B = 0: merged == base)."""
    from peft import LoraConfig, get_peft_model

    from coverlora.config import TrainConfig
    from coverlora.models import load_model
    from coverlora.runs.layout import RunLayout, write_manifest

    layout = RunLayout(run)
    if (layout.adapter / "adapter_config.json").is_file():
        return
    run.mkdir(parents=True, exist_ok=True)
    write_manifest(layout, "train", TrainConfig(model=str(ckpt), data=data, output_dir=str(run)))
    model = load_model(str(ckpt), torch.bfloat16 if cuda() else torch.float32)
    get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                     task_type="CAUSAL_LM")).save_pretrained(str(layout.adapter))
    layout.merged.symlink_to(ckpt.resolve(), target_is_directory=True)
    del model
    release_gpu()


def test_prompts(run: Path, data: str) -> list[list[int]]:
    from coverlora.models import load_tokenizer
    from coverlora.runs.trained import TrainedRun

    trained = TrainedRun.open(str(run))
    frame, _ = trained.test_frame(data)
    fmt = trained.prompt_format(load_tokenizer(trained.base_model_path()))
    return [fmt.prompt_ids(row) for row in frame.to_dict("records")]


@torch.no_grad()
def run_reference(ckpt: Path, prompts: list[list[int]], n: int, max_new_tokens: int, total_letters: int,
                  letter_tokens: int) -> dict:
    """The seed notebook's generation: 4-bit model, one prompt at a time, plain HF generate."""
    from coverlora.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(ckpt))
    model = load_model(str(ckpt), torch.float16 if cuda() else torch.float32, quantize_4bit=cuda()).eval()
    device = next(model.parameters()).device
    tokens, started = 0, None
    for k, prompt in enumerate(prompts[:n + 1]):
        ids = torch.tensor([prompt], device=device)
        sync()
        if k == 1:  # the first prompt warms up (CUDA context, bitsandbytes kernels) and is not timed
            started = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
        sync()
        if k >= 1:
            tokens += out.shape[1] - ids.shape[1]
    seconds = time.perf_counter() - started
    rate = tokens / seconds
    del model
    release_gpu()
    return {"config": "reference", "what": "4-bit NF4 (fp16 compute), one prompt at a time, HF generate",
            "letters": n, "new_tokens": tokens, "seconds": round(seconds, 1), "tok_per_s": round(rate, 1),
            "extrapolated_s_all": round(total_letters * letter_tokens / rate),
            "note": f"timed on {n} prompts of {max_new_tokens} new tokens; {total_letters} letters of {letter_tokens} "
                    "extrapolated at this rate"}


def run_test_stage(run: Path, data: str, kv_cache: str, processes: int, max_new_tokens: int, limit: int,
                   batch_size: int, attn: str = "sdpa", lengths_from: str | None = None) -> dict:
    """test.py itself in a subprocess; tokens from its eval.csv, peak memory from its manifest."""
    args = ["test.py", "--run", str(run), "--data", data, "--max_new_tokens", str(max_new_tokens),
            "--kv_cache", kv_cache, "--limit", str(limit), "--batch_size", str(batch_size),
            "--attn_implementation", attn, "--overwrite"] + (["--lengths_from", lengths_from] if lengths_from else [])
    launch = [sys.executable] + args if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/ddp.yaml",
        "--num_processes", str(processes), *args]
    log("$ " + " ".join(launch[1:] if processes == 1 else ["accelerate launch", *launch[3:]]))
    started = time.perf_counter()
    done = subprocess.run(launch, cwd=ROOT, env={**os.environ, "TQDM_MININTERVAL": "10"})
    seconds = time.perf_counter() - started
    name = (f"test.py kv_cache={kv_cache}" + (f" {attn}" if attn != "sdpa" else "")
            + (" real lengths" if lengths_from else "")
            + (f" x{processes} processes" if processes > 1 else ""))
    if done.returncode != 0:
        return {"config": name, "error": f"exit {done.returncode}"}
    import pandas as pd

    table = pd.read_csv(run / "eval.csv")
    manifest = json.loads((run / "versions.json").read_text()).get("test", {})
    tokens = int(sum(table[f"{tag}_new_tokens"].sum() for tag in ("base", "finetuned")))
    letters = 2 * len(table)
    return {"config": name, "kv_cache": kv_cache, "processes": processes, "letters": letters, "new_tokens": tokens,
            "seconds": round(seconds, 1), "tok_per_s": round(tokens / seconds, 1),
            "stage_seconds": manifest.get("seconds"), "peak_gpu_gib": manifest.get("peak_gpu_gib"),
            "at_max_new_tokens": round(float(sum((table[f"{t}_new_tokens"] >= max_new_tokens).sum()
                                                 for t in ("base", "finetuned"))) / letters, 3)}


@torch.no_grad()
def profile_decode(ckpt: Path, prompts: list[list[int]], batch: int, steps: int, kv_caches: list[str],
                   max_new_tokens: int, attn: str = "sdpa") -> list[dict]:
    """Wall ms per decode step for each KV cache kind, at `batch` of the longest prompts; for the first kind also
    device ms per decode step by kernel (a profile of prefill + `steps` steps minus one of the prefill alone)."""
    from torch.profiler import profile

    from coverlora.generate.batched import generate_batch
    from coverlora.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(ckpt))
    model = load_model(str(ckpt), torch.bfloat16 if cuda() else torch.float32, attn_implementation=attn).eval()
    chosen = sorted(prompts, key=len, reverse=True)[:batch]
    rows = []
    for kv in kv_caches:
        sync()
        started = time.perf_counter()
        # warm-up (the static cache compiles here), at the full length so the static cache is as long as in test.py
        generate_batch(model, tokenizer, chosen, max_new_tokens if kv == "static" else 1 + steps, kv_cache=kv)
        sync()
        first = time.perf_counter() - started
        timings = {}
        for n in (1, 1 + steps):  # prefill + first token, then `steps` more: the difference is decoding
            sync()
            started = time.perf_counter()
            generate_batch(model, tokenizer, chosen, n, kv_cache=kv)
            sync()
            timings[n] = time.perf_counter() - started
        wall_step = (timings[1 + steps] - timings[1]) / steps * 1e3
        row = {"config": f"decode steps, kv_cache={kv}" + (f", {attn}" if attn != "sdpa" else ""), "batch": batch, "prompt_tokens_max": len(chosen[0]),
               "wall_ms_per_decode_step": round(wall_step, 1), "tok_per_s_decode": round(batch / wall_step * 1e3),
               "prefill_s": round(timings[1], 2), "first_call_s": round(first, 1)}
        if kv == kv_caches[0]:
            profiled = {}
            for n in (1, 1 + steps):
                with profile(activities=profiler_activities()) as prof:
                    generate_batch(model, tokenizer, chosen, n, kv_cache=kv)
                profiled[n] = {name: ms for name, (ms, _) in kernel_ms(prof).items()}
            decode = {k: (v - profiled[1].get(k, 0.0)) / steps for k, v in profiled[1 + steps].items()}
            row["device_ms_per_decode_step"] = round(sum(decode.values()), 1)
            row["device_ms_by_category"] = {k: round(v, 2) for k, v in ms_by_category(decode).items()}
            row["top_kernels_ms_per_step"] = {k[:100]: round(v, 2) for k, v in sorted(decode.items(), key=lambda kv: -kv[1])[:12]}
        rows.append(row)
        log(json.dumps(row))
    del model
    release_gpu()
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES))
    p.add_argument("--data", required=True, help="folder holding train.csv and test.csv")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the embedded SmolLM2's)")
    p.add_argument("--ckpt-dir", default=str(Path(tempfile.gettempdir()) / "coverlora-genbench" / "model"))
    p.add_argument("--run-dir", default=str(Path(tempfile.gettempdir()) / "coverlora-genbench" / "run"))
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--ref-prompts", type=int, default=2, help="prompts the reference is timed on (0 = skip it)")
    p.add_argument("--ref-max-new-tokens", type=int, default=128, help="the reference's letters are cut here to save time")
    p.add_argument("--kv-caches", default="static", help="comma list of test.py --kv_cache values ('' = no test.py runs)")
    p.add_argument("--processes", default="1", help="comma list of process counts for test.py")
    p.add_argument("--limit", type=int, default=0, help="test.py --limit (0 = every test row)")
    p.add_argument("--lengths-from", default=None,
                   help="an eval.csv of a real run: also run kv_cache slots with every letter stopped at that run's "
                        "length for its row (test.py --lengths_from), since random weights never stop")
    p.add_argument("--batch-size", type=int, default=0, help="test.py --batch_size (0 = auto)")
    p.add_argument("--profile-batch", type=int, default=0, help="time decode steps at this batch size (0 = skip)")
    p.add_argument("--profile-kv-caches", default="preallocated,dynamic,static",
                   help="KV caches to time decode steps of; the first is also profiled by kernel")
    p.add_argument("--attn", default="sdpa", help="test.py --attn_implementation")
    p.add_argument("--profile-attn", default="sdpa", help="comma list of attention implementations to time decode steps with")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--tag", default="")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    from coverlora.models import embedded_model_path

    ckpt, run = Path(args.ckpt_dir), Path(args.run_dir)
    log(f"model {args.shape}: built in {build_checkpoint(args.shape, ckpt, args.tokenizer or str(embedded_model_path())):.0f} s")
    make_run(ckpt, str(Path(args.data).resolve()), run)
    all_prompts = test_prompts(run, args.data)
    prompts = all_prompts[:args.limit] if args.limit else all_prompts
    meta = {**run_meta(args.shape, __file__), "data": args.data, "prompts": len(prompts),
            "max_new_tokens": args.max_new_tokens}
    rows = []
    if args.ref_prompts:
        rows.append(run_reference(ckpt, prompts, args.ref_prompts, args.ref_max_new_tokens, 2 * len(prompts),
                                  args.max_new_tokens))
        log(json.dumps(rows[-1]))
    for processes in [int(n) for n in args.processes.split(",")]:
        for kv_cache in filter(None, args.kv_caches.split(",")):
            # only the slot engine stops rows at given lengths (test.py refuses --lengths_from otherwise)
            replay = args.lengths_from and kv_cache == "slots"
            for lengths in ([None, str(Path(args.lengths_from).resolve())] if replay else [None]):
                rows.append(run_test_stage(run, str(Path(args.data).resolve()), kv_cache, processes, args.max_new_tokens,
                                           args.limit, args.batch_size, args.attn, lengths))
                log(json.dumps(rows[-1]))
    if args.profile_batch:
        for attn in args.profile_attn.split(","):
            rows += profile_decode(ckpt, all_prompts, args.profile_batch, steps=16, kv_caches=args.profile_kv_caches.split(","),
                                   max_new_tokens=args.max_new_tokens, attn=attn)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}_gen_{args.shape}_{device_slug()}{'_' + args.tag if args.tag else ''}"
    (out / f"{stem}.jsonl").write_text("".join(json.dumps({**meta, **r}) + "\n" for r in rows))
    (out / f"{stem}.md").write_text(gen_markdown(rows, meta))
    print(gen_markdown(rows, meta))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
