"""Batched generation: every KV-cache kind gives the same greedy letters, the preallocated cache writes in place,
and batches respect the KV-cache memory budget."""

from __future__ import annotations

import pytest
import torch

from coverlora.generate.batched import (
    PreallocatedLayer,
    generate_batch,
    kv_bytes_per_token,
    length_sorted_batches,
    preallocated_cache,
)
from coverlora.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    model = load_model(tiny_model_path, torch.float32).eval()
    return model, load_tokenizer(tiny_model_path)


def prompts_of(tokenizer) -> list[list[int]]:
    texts = ["Write a cover letter for a Data Analyst role at Acme Corp.",
             "Nurse, Umbrella Health.",
             "Backend Engineer at Globex; Go and PostgreSQL; five years at Initech as a junior developer."]
    return [tokenizer(t)["input_ids"] for t in texts]


@pytest.mark.parametrize("kv_cache", ["preallocated", "static"])
def test_every_cache_gives_the_dynamic_caches_letters(tiny, kv_cache):
    model, tokenizer = tiny
    prompts = prompts_of(tokenizer)  # three lengths: left padding and its mask are exercised
    expected = generate_batch(model, tokenizer, prompts, 16, kv_cache="dynamic")
    assert generate_batch(model, tokenizer, prompts, 16, kv_cache=kv_cache) == expected
    # one row at a time (no padding at all) gives the same letters as the padded batch
    assert [generate_batch(model, tokenizer, [p], 16, kv_cache=kv_cache)[0][0] for p in prompts] == expected[0]


def test_preallocated_layers_write_in_place_and_grow_when_too_small(tiny):
    model, tokenizer = tiny
    ids = torch.tensor([prompts_of(tokenizer)[0]])
    cache = preallocated_cache(model, capacity=ids.shape[1] + 2)
    with torch.no_grad():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        layer = cache.layers[0]
        buffer = layer._buffers[0].data_ptr()
        for _ in range(2):  # two decode steps fill the planned capacity exactly, without a new allocation
            out = model(input_ids=out.logits[:, -1:].argmax(-1), past_key_values=cache, use_cache=True)
        assert layer._buffers[0].data_ptr() == buffer and layer.keys.data_ptr() == buffer
        assert cache.get_seq_length() == ids.shape[1] + 2
        model(input_ids=out.logits[:, -1:].argmax(-1), past_key_values=cache, use_cache=True)  # one past capacity
    assert layer.capacity >= ids.shape[1] + 3 and cache.get_seq_length() == ids.shape[1] + 3
    assert isinstance(layer, PreallocatedLayer)


def test_batches_are_length_sorted_and_fit_the_token_budget():
    lengths = [30, 500, 120, 480, 90, 60, 300, 10]
    batches = length_sorted_batches(lengths, batch_size=4, max_new_tokens=100, token_budget=1500)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)  # longest first: an out-of-memory shows at the first batch
    for batch in batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * (max(lengths[i] for i in batch) + 100) <= 1500
    assert [len(b) for b in batches] == [2, 3, 3]  # 2 x (500+100) fit; then 3 x (300+100); then the 3 left
    assert [len(b) for b in length_sorted_batches(lengths, batch_size=3)] == [3, 3, 2]  # no budget: batch_size only


def test_kv_bytes_per_token_counts_keys_and_values_of_every_layer(tiny):
    model, _ = tiny
    # 2 layers x (keys + values) x 2 KV heads x head_dim 16 x 4 bytes (fp32)
    assert kv_bytes_per_token(model) == 2 * 2 * 2 * 16 * 4


def test_uniform_batches_share_one_shape_for_a_compiled_graph():
    lengths = [30, 500, 120, 480, 90, 60, 300, 10]
    batches = length_sorted_batches(lengths, batch_size=8, max_new_tokens=100, token_budget=1900, uniform=True)
    # 1900 // (500 + 100) = 3 rows a batch at most -> 3 batches, spread as 3 + 3 + 2
    assert [len(b) for b in batches] == [3, 3, 2]
    assert [lengths[i] for b in batches for i in b] == sorted(lengths, reverse=True)


def test_static_cache_batches_are_padded_to_one_shape_and_the_padding_dropped(tiny, monkeypatch):
    import coverlora.generate.letters as generation  # generate_all and the generate_batch it passes on

    model, tokenizer = tiny
    prompts = prompts_of(tokenizer)
    shapes, got = [], {}
    real = generation.generate_batch
    monkeypatch.setattr(generation, "generate_batch",
                        lambda m, t, rows, n, **kw: (shapes.append(len(rows)), real(m, t, rows, n, **kw))[1])
    generation.generate_all(model, tokenizer, prompts, [0, 1, 2], max_new_tokens=4, batch_size=2,
                            on_batch=lambda batch, texts, counts, s: got.update(zip(batch, texts)), desc="t",
                            kv_cache="static")
    assert shapes == [2, 2]  # 3 rows as 2 + (1 padded to 2)
    expected = generate_batch(model, tokenizer, prompts, 4, kv_cache="dynamic")[0]
    assert [got[i] for i in range(3)] == expected


@pytest.fixture()
def trained_run(tiny_model_path, data_dir, tmp_path):
    from coverlora.config import TrainConfig
    from coverlora.train.stage import train

    return train(TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), max_steps=1,
                             eval_strategy="no", batch_size=4))


@pytest.fixture()
def fake_vllm(monkeypatch):
    """A stand-in for the vllm package that records how coverlora calls it (vLLM itself needs CUDA)."""
    import sys
    import types
    from types import SimpleNamespace

    calls = []

    class LLM:
        def __init__(self, **kwargs):
            calls.append(("engine", kwargs))

        def generate(self, prompts, params, use_tqdm=True, lora_request=None):
            calls.append(("generate", prompts, params.kwargs, lora_request))
            tag = "finetuned" if lora_request else "base"
            return [SimpleNamespace(outputs=[SimpleNamespace(text=f" {tag} letter of {len(p['prompt_token_ids'])} ",
                                                             token_ids=[7, 7, 2])]) for p in prompts]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **kwargs: SimpleNamespace(kwargs=kwargs)
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, number, path: SimpleNamespace(name=name, path=path)
    for name, module in {"vllm": vllm, "vllm.lora": types.ModuleType("vllm.lora"), "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_vllm_backend_serves_both_models_from_one_engine_in_row_order(trained_run, fake_vllm):
    from coverlora.config import TestConfig
    from coverlora.generate.stage import run_test

    run, table = run_test(TestConfig(run=str(trained_run.root), backend="vllm", batch_size=3, max_new_tokens=9,
                                     repetition_penalty=1.1))
    engines = [c for c in fake_vllm if c[0] == "engine"]
    assert len(engines) == 1  # one engine; the fine-tuned model is its LoRA adapter
    assert engines[0][1]["model"] == run.base_model_path() and engines[0][1]["enable_lora"] is True
    assert engines[0][1]["max_lora_rank"] == run.train.lora_r
    generates = [c for c in fake_vllm if c[0] == "generate"]
    assert [len(c[1]) for c in generates] == [3, 1, 3, 1]  # 4 test rows in chunks of 3, base then fine-tuned
    stops = [tokenizer_end_of_turn(run), load_tokenizer(run.base_model_path()).eos_token_id]
    assert all(c[2] == {"temperature": 0.0, "max_tokens": 9, "repetition_penalty": 1.1,
                        "stop_token_ids": list(dict.fromkeys(stops))} for c in generates)
    assert [c[3] is None for c in generates] == [True, True, False, False]
    assert generates[2][3].path == str(run.layout.adapter)
    # the prompts are the token ids the HF backend would feed, and the letters land on their rows
    tokenizer = load_tokenizer(run.base_model_path())
    fmt = run.prompt_format(tokenizer)
    frame, _ = run.test_frame(None)
    lengths = [len(fmt.prompt_ids(row)) for row in frame.to_dict("records")]
    assert generates[0][1][0]["prompt_token_ids"] == fmt.prompt_ids(frame.to_dict("records")[0])
    assert list(table["base_output"]) == [f"base letter of {n}" for n in lengths]
    assert list(table["finetuned_output"]) == [f"finetuned letter of {n}" for n in lengths]
    assert set(table["finetuned_new_tokens"]) == {3}


def tokenizer_end_of_turn(run) -> int:
    return load_tokenizer(run.base_model_path()).convert_tokens_to_ids("<|im_end|>")


def test_vllm_backend_without_vllm_is_a_one_line_error(trained_run, monkeypatch):
    import sys

    from coverlora.config import TestConfig
    from coverlora.errors import ConfigError, UserError
    from coverlora.generate.stage import run_test

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(UserError, match="needs the vllm package"):
        run_test(TestConfig(run=str(trained_run.root), backend="vllm"))
    with pytest.raises(ConfigError, match="not available with backend vllm"):
        TestConfig(run=str(trained_run.root), backend="vllm", no_repeat_ngram_size=3)


def test_grounded_choice_prefers_fewer_problems_and_breaks_ties_by_consensus():
    from coverlora.generate.candidates import choose

    row = {"job_title": "Data Analyst", "hiring_company": "Acme Corp", "applicant_name": "Ana Silva",
           "preferred_qualifications": "5+ years of Tableau", "current_experience": "Data Analyst at Foo Ltd for 2 years",
           "past_experience": "", "skillsets": "SQL, Excel", "qualifications": "BSc Statistics"}
    good = "Dear Hiring Manager,\n\nI am applying for the Data Analyst role at Acme Corp. I work with SQL and Excel.\n\nSincerely,\nAna Silva"
    borrowed = good.replace("I work with SQL and Excel.", "I have 5 years of Tableau experience at Acme Corp.")
    unnamed = good.replace(" at Acme Corp", "")
    choice = choose([[borrowed, unnamed, good]], [row], embeddings=False)[0]
    assert choice.index == 2 and choice.problems == (0, 0, 0) and choice.tied == 1
    # three clean letters: the one closest to the other two wins (two near-copies outvote the odd one)
    variant = good.replace("I work with SQL and Excel.", "I use SQL and Excel daily.")
    odd = good.replace("I work with SQL and Excel.", "Excel and SQL are tools I know well from my work.")
    assert choose([[odd, good, variant]], [row], embeddings=False)[0].index in (1, 2)
    assert choose([[good, good, odd]], [row], embeddings=False)[0].index == 0


def test_grounded_test_stage_keeps_every_candidate_and_the_chosen_one(trained_run):
    import json

    from coverlora.config import TestConfig
    from coverlora.generate.stage import run_test

    _, table = run_test(TestConfig(run=str(trained_run.root), models="finetuned", decoding="grounded", candidates=3,
                                   temperature=1.0, max_new_tokens=6, batch_size=2))
    candidates = [json.loads(c) for c in table["finetuned_candidates"]]
    assert all(len(c) == 4 for c in candidates), "the greedy letter and three samples per row"
    assert [c[i] for c, i in zip(candidates, table["finetuned_chosen"])] == table["finetuned_output"].fillna("").tolist()
    greedy = run_test(TestConfig(run=str(trained_run.root), models="finetuned", max_new_tokens=6, batch_size=2,
                                 overwrite=True))[1]
    assert [c[0] for c in candidates] == greedy["finetuned_output"].fillna("").tolist(), "candidate 0 is the greedy letter"


def test_repair_test_stage_records_what_it_did(trained_run, monkeypatch):
    """decoding: repair through the test stage: every letter saved with its rewritten / left-out / sampled counts;
    with nothing flagged, the letters are the greedy ones."""
    from coverlora.config import TestConfig
    from coverlora.generate import repair
    from coverlora.generate.stage import run_test

    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [False] * len(letters))
    _, table = run_test(TestConfig(run=str(trained_run.root), models="finetuned", decoding="repair", repair_tries=2,
                                   max_new_tokens=6, batch_size=2))
    assert (table["finetuned_rewritten"] == 0).all() and (table["finetuned_samples"] == 0).all()
    assert "finetuned_left_out" in table
    greedy = run_test(TestConfig(run=str(trained_run.root), models="finetuned", max_new_tokens=6, batch_size=2,
                                 overwrite=True))[1]
    assert table["finetuned_output"].fillna("").tolist() == greedy["finetuned_output"].fillna("").tolist()


def test_tune_repair_compares_settings_on_the_validation_rows(trained_run, tmp_path):
    """scripts/tune_repair.py on a greedy run and two repair runs' validation letters: one table row each, and a
    chosen setting that is one of the repair runs'."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from coverlora.config import TestConfig
    from coverlora.generate.stage import run_test

    runs = [str(trained_run.root)]
    run_test(TestConfig(run=runs[0], split="validation", models="finetuned", max_new_tokens=12, batch_size=4))
    for tries, temperature in ((1, 0.7), (2, 1.0)):
        copy = tmp_path / f"repair-k{tries}"
        shutil.copytree(trained_run.root, copy, ignore=shutil.ignore_patterns("eval*", "test*_config.yaml"))
        run_test(TestConfig(run=str(copy), split="validation", models="finetuned", decoding="repair",
                            repair_tries=tries, temperature=temperature, max_new_tokens=12, batch_size=4))
        runs.append(str(copy))
    script = Path(__file__).resolve().parent.parent / "scripts" / "tune_repair.py"
    done = subprocess.run([sys.executable, str(script), *runs, "--out", str(tmp_path / "t.md")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "t.md").read_text()
    assert table.count("| repair |") == 2 and table.count("| greedy |") == 1
    assert done.stdout.strip().splitlines()[-1] in ("chosen: 1 0.7", "chosen: 2 1")


@pytest.mark.parametrize("decoding", ["repair", "grounded"])
def test_the_slot_engine_writes_generates_sampled_letters_in_the_test_stage(trained_run, monkeypatch, decoding):
    """Repair and grounded decoding through the test stage on the slot engine (eager on the CPU) and on generate:
    the same letters and records for the same seed (sampling.py's draws do not depend on the path)."""
    from coverlora.config import TestConfig
    from coverlora.generate import repair
    from coverlora.generate.stage import run_test

    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [letter.tries == 0 for letter in letters])
    tables = [run_test(TestConfig(run=str(trained_run.root), models="finetuned", decoding=decoding, repair_tries=2,
                                  candidates=2, temperature=1.0, max_new_tokens=8, batch_size=2, kv_cache=kv_cache,
                                  overwrite=True))[1]
              for kv_cache in ("slots", "preallocated")]
    columns = [c for c in tables[0] if c.startswith("finetuned_") and not c.endswith("seconds")]
    assert tables[0][columns].fillna("").equals(tables[1][columns].fillna(""))
    if decoding == "repair":
        assert (tables[0]["finetuned_samples"] > 0).all()


def test_work_in_the_worker_process_comes_back_in_order_and_raises_its_errors():
    import math
    import operator

    from coverlora.generate.worker import in_worker

    got = []
    with in_worker(lambda result, meta: got.append((meta, result))) as submit:
        for k in range(5):
            submit(operator.add, k, 10, meta=k)
    assert got == [(k, k + 10) for k in range(5)]
    with pytest.raises(ValueError, match="math domain error"):
        with in_worker(lambda result, meta: None) as submit:
            submit(math.sqrt, -1.0)
