"""The slot engine (kv_cache: slots): its greedy letters are HF generate's, whatever the slots, the waiting rows,
the limits and the shrinking batch do; and it refuses a model it cannot drive instead of decoding garbage."""

from __future__ import annotations

import pytest
import torch

from coverlora.generate.batched import generate_batch
from coverlora.generate.engine import SlotEngine, batch_buckets, round_up
from coverlora.generate.letters import generate_all
from coverlora.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    model = load_model(tiny_model_path, torch.float32).eval()
    return model, load_tokenizer(tiny_model_path)


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tokenizer = tiny
    texts = ["Write a cover letter for a Data Analyst role at Acme Corp.", "Nurse, Umbrella Health.",
             "Backend Engineer at Globex; Go and PostgreSQL; five years at Initech as a junior developer.",
             "Chef", "Teacher at Springfield Elementary, ten years of experience with children aged six to ten.",
             "Pilot at Oceanic.", "Accountant; CPA; Big Four audit.", "Welder, night shift, certified."]
    return [tokenizer(t)["input_ids"] for t in texts]


def hf_letters(model, tokenizer, prompts, max_new_tokens, stop_ids, **decoding):
    """HF generate's greedy letters, one prompt at a time (no padding at all)."""
    return [generate_batch(model, tokenizer, [p], max_new_tokens, kv_cache="dynamic", stop_ids=stop_ids, **decoding)
            for p in prompts]


def engine_tokens(model, tokenizer, prompts, limits, stop_ids, **options):
    got = {}
    engine = SlotEngine(model, capacity=max(map(len, prompts)) + max(limits), stop_ids=stop_ids,
                        pad_id=tokenizer.pad_token_id, **options)
    engine.run(prompts, list(range(len(prompts))), limits, lambda rows, tokens: got.update(zip(rows, tokens)))
    return [got[i] for i in range(len(prompts))], engine


def greedy_tokens(model, prompt: list[int], n: int) -> list[int]:
    """HF generate's first n greedy tokens for one prompt, never stopping early."""
    ids = torch.tensor([prompt])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("slots,sync_every", [(8, 16), (3, 1), (2, 5)])
def test_letters_equal_hf_generate_with_waiting_rows_and_early_stops(tiny, prompts, slots, sync_every):
    model, tokenizer = tiny
    # stop at tokens the random model emits, so rows finish at different steps and free their slots mid-run
    stop_ids = sorted({greedy_tokens(model, prompts[k], 12)[at] for k, at in ((0, 3), (2, 7), (5, 10))}
                      | {tokenizer.eos_token_id})
    expected = hf_letters(model, tokenizer, prompts, 20, stop_ids)
    assert len({count for _, (count,) in expected}) > 1  # the rows really end at different lengths
    tokens, engine = engine_tokens(model, tokenizer, prompts, [20] * len(prompts), stop_ids, slots=slots,
                                   sync_every=sync_every)
    from coverlora.generate.batched import letters_from

    assert [([text], [count]) for text, count in zip(*letters_from(tokenizer, tokens, stop_ids))] == expected
    assert not engine.live.any()


def test_generate_all_with_slots_equals_the_dynamic_cache_and_respects_limits(tiny, prompts):
    model, tokenizer = tiny
    expected = generate_batch(model, tokenizer, prompts, 16, kv_cache="dynamic")
    got, calls = {}, []

    def on_batch(batch, texts, counts, seconds):
        calls.append(len(batch))
        got.update((i, (t, c)) for i, t, c in zip(batch, texts, counts))

    limits = {1: 3, 4: 9}
    generate_all(model, tokenizer, prompts, list(range(len(prompts))), max_new_tokens=16, batch_size=3,
                 on_batch=on_batch, desc="t", kv_cache="slots", limits=limits)
    assert sum(calls) == len(prompts)
    for i, (text, count) in enumerate(zip(*expected)):
        if i in limits:  # a capped row is the uncapped letter's first tokens
            capped = generate_batch(model, tokenizer, [prompts[i]], limits[i], kv_cache="dynamic")
            assert got[i] == (capped[0][0], capped[1][0])
        else:
            assert got[i] == (text, count)


def test_repetition_penalty_matches_hf_on_unpadded_rows(tiny, prompts):
    model, tokenizer = tiny
    expected = hf_letters(model, tokenizer, prompts[:3], 16, [tokenizer.eos_token_id], repetition_penalty=1.3)
    plain = hf_letters(model, tokenizer, prompts[:3], 16, [tokenizer.eos_token_id])
    assert expected != plain  # the penalty changes these letters, so the comparison below can fail
    tokens, _ = engine_tokens(model, tokenizer, prompts[:3], [16] * 3, [tokenizer.eos_token_id], slots=2,
                              repetition_penalty=1.3)
    from coverlora.generate.batched import letters_from

    texts, counts = letters_from(tokenizer, tokens, [tokenizer.eos_token_id])
    assert [([t], [c]) for t, c in zip(texts, counts)] == expected


def test_the_batch_shrinks_when_nothing_waits_and_moved_rows_keep_their_letters(tiny, prompts):
    model, tokenizer = tiny
    limits = [2, 2, 2, 2, 2, 30, 2, 24]  # two long rows outlive six short ones in an 8-slot batch
    expected = [greedy_tokens(model, p, n) for p, n in zip(prompts, limits)]
    engine = SlotEngine(model, slots=8, capacity=max(map(len, prompts)) + 30, stop_ids=[-1],
                        pad_id=tokenizer.pad_token_id, sync_every=4)
    batches = []
    real = engine._run_steps
    engine._run_steps = lambda run, occupied: (batches.append(run.batch), real(run, occupied))
    got = {}
    engine.run(prompts, list(range(8)), limits, lambda rows, tokens: got.update(zip(rows, tokens)))
    # two long rows decode in a batch of two, the longest alone at the end
    assert batches[0] == 8 and 2 in batches and batches[-1] == 1 and batches == sorted(batches, reverse=True)
    assert [got[i] for i in range(8)] == expected


def test_attention_reads_only_the_filled_length_bucket(tiny, prompts):
    model, tokenizer = tiny
    engine = SlotEngine(model, slots=2, capacity=700, stop_ids=[-1], pad_id=tokenizer.pad_token_id, sync_every=8)
    lengths = []
    real = engine._decode
    engine._decode = lambda batch, length: (lengths.append(length), real(batch, length))
    engine.run(prompts[:2], [0, 1], [140, 140], lambda rows, tokens: None)
    longest = max(map(len, prompts[:2]))
    assert engine.capacity == 768 and lengths[0] == round_up(longest + 1)
    assert max(lengths) == round_up(longest + 140) < engine.capacity  # never the whole cache
    assert lengths == sorted(lengths)


def test_batch_buckets_are_all_slots_multiples_of_the_step_then_powers_of_two():
    assert batch_buckets(195) == [195, 192, 160, 128, 96, 64, 32, 16, 8, 4, 2, 1]
    assert batch_buckets(8) == [8, 4, 2, 1] and batch_buckets(40, step=16) == [40, 32, 16, 8, 4, 2, 1]
    assert batch_buckets(1) == [1]


def test_a_model_that_bypasses_the_cache_is_refused_and_generate_takes_over(tiny, prompts, monkeypatch, caplog):
    import coverlora.generate.letters as generation
    from coverlora.generate.engine import SlotCache, UnsupportedModel

    model, tokenizer = tiny
    monkeypatch.setattr(SlotCache, "update", lambda self, k, v, layer_idx, *a, **kw: (k, v))  # attention's own cache
    engine = SlotEngine(model, slots=2, capacity=64, stop_ids=[-1], pad_id=tokenizer.pad_token_id)
    with pytest.raises(UnsupportedModel, match="cache"):
        engine.run(prompts[:1], [0], [4], lambda rows, tokens: None)

    got = {}
    with caplog.at_level("WARNING", logger="coverlora"):
        generation.generate_all(model, tokenizer, prompts, [0, 1, 2], max_new_tokens=6, batch_size=2, desc="t",
                                on_batch=lambda batch, texts, counts, s: got.update(zip(batch, texts)), kv_cache="slots")
    assert "cannot drive this model" in caplog.text
    assert [got[i] for i in range(3)] == generate_batch(model, tokenizer, prompts[:3], 6, kv_cache="dynamic")[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_replays_give_the_eager_letters(tiny_model_path, prompts):
    model = load_model(tiny_model_path, torch.float32).cuda().eval()
    tokenizer = load_tokenizer(tiny_model_path)
    limits = [5, 17, 9, 30, 12, 3, 25, 8]
    eager, _ = engine_tokens(model, tokenizer, prompts, limits, [-1], slots=4, cuda_graphs=False, sync_every=3)
    graphed, engine = engine_tokens(model, tokenizer, prompts, limits, [-1], slots=4, cuda_graphs=True, sync_every=3)
    assert graphed == eager and len(engine.graphs) >= 2


def test_weights_copied_into_a_loaded_model_give_that_checkpoints_logits(tiny_model_path, tmp_path):
    from transformers import AutoConfig, LlamaForCausalLM

    from coverlora.models import load_weights_into

    torch.manual_seed(1)
    other = tmp_path / "other"
    LlamaForCausalLM(AutoConfig.from_pretrained(tiny_model_path)).save_pretrained(other)
    model = load_model(tiny_model_path, torch.float32).eval()
    tensors = [p.data_ptr() for p in model.parameters()]
    ids = torch.tensor([[5, 17, 300, 42]], device=model.device)
    before = model(input_ids=ids).logits
    assert load_weights_into(model, str(other))
    expected = load_model(str(other), torch.float32).eval()(input_ids=ids).logits
    after = model(input_ids=ids).logits
    assert torch.equal(after, expected) and not torch.allclose(after, before)
    assert [p.data_ptr() for p in model.parameters()] == tensors  # the same tensors: graphs on them stay valid


def test_a_checkpoint_of_another_shape_is_refused_and_nothing_copied(tiny_model_path, tmp_path):
    from transformers import AutoConfig, LlamaForCausalLM

    from coverlora.models import load_weights_into

    config = AutoConfig.from_pretrained(tiny_model_path)
    config.intermediate_size = 96
    LlamaForCausalLM(config).save_pretrained(tmp_path / "narrow")
    model = load_model(tiny_model_path, torch.float32).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert not load_weights_into(model, str(tmp_path / "narrow"))
    assert not load_weights_into(model, str(tmp_path))  # no safetensors at all
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_the_test_stage_reuses_the_base_models_engine_for_the_merged_model(tiny_model_path, data_dir, tmp_path, caplog,
                                                                         monkeypatch):
    import coverlora.generate.batched as generation
    import coverlora.generate.slots as slots
    from coverlora.config import TestConfig, TrainConfig
    from coverlora.generate.stage import run_test
    from coverlora.train.stage import train

    run = train(TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), max_steps=1,
                            eval_strategy="no", batch_size=4))
    merged = load_model(tiny_model_path, torch.float32)  # a "merged" model whose letters surely differ from the base's
    torch.manual_seed(7)
    with torch.no_grad():
        for param in merged.parameters():
            param.add_(torch.randn_like(param))
    merged.save_pretrained(run.root / "merged")
    load_tokenizer(tiny_model_path).save_pretrained(run.root / "merged")
    real, tokens = generation.letters_from, []

    def recording(tokenizer, new, stop_ids):  # each call's letters as token ids, up to their stop token
        rows = [[int(t) for t in row] for row in new]
        tokens.append(sorted(row[:next((k + 1 for k, t in enumerate(row) if t in stop_ids), len(row))] for row in rows))
        return real(tokenizer, new, stop_ids)

    for module in (generation, slots):  # the slot engine's letters and generate's
        monkeypatch.setattr(module, "letters_from", recording)

    with caplog.at_level("INFO", logger="coverlora"):
        # fp32 on any device: the comparison below is exact only where kernels agree to the last bit
        run_test(TestConfig(run=str(run.root), max_new_tokens=8, kv_cache="slots", overwrite=True, precision="fp32"))
    assert "finetuned: weights copied into the loaded model" in caplog.text
    reused, tokens[:] = list(tokens), []
    run_test(TestConfig(run=str(run.root), max_new_tokens=8, kv_cache="preallocated", overwrite=True,  # fresh loads
                        precision="fp32"))
    assert reused == tokens and len(tokens) == 2 and tokens[0] != tokens[1]


def test_progress_hands_on_every_token_once_and_a_stop_ends_every_row(tiny, prompts):
    model, tokenizer = tiny
    limits = [12, 30, 7, 20]
    finished, streamed = {}, {i: [] for i in range(4)}
    engine = SlotEngine(model, slots=2, capacity=max(map(len, prompts)) + 30, stop_ids=[-1],
                        pad_id=tokenizer.pad_token_id, sync_every=3)
    engine.run(prompts[:4], [0, 1, 2, 3], limits, lambda rows, tokens: finished.update(zip(rows, tokens)),
               on_progress=lambda rows, tokens: [streamed[r].extend(t) for r, t in zip(rows, tokens)])
    assert streamed == finished and [len(finished[i]) for i in range(4)] == limits

    syncs, finished = [0], {}

    def stop_after_two_syncs() -> bool:
        syncs[0] += 1
        return syncs[0] > 2

    engine.run(prompts, list(range(8)), [30] * 8, lambda rows, tokens: finished.update(zip(rows, tokens)),
               should_stop=stop_after_two_syncs)
    assert sorted(finished) == list(range(8))  # every row is answered, cut short
    assert all(len(t) < 30 for t in finished.values()) and any(len(t) == 0 for t in finished.values())


def test_the_service_writer_on_the_engine_writes_and_streams_the_staged_paths_letters(writer):
    from coverlora.service import LetterWriter
    from coverlora.service.batcher import BatchStreamer, RowStreamer

    plain = LetterWriter(writer.model, writer.tokenizer, writer.format, "t", decoding={"repetition_penalty": 1.2})
    engine = LetterWriter(writer.model, writer.tokenizer, writer.format, "t", decoding={"repetition_penalty": 1.2},
                          engine=(2, 512))
    rows = [{"job_title": "Nurse", "hiring_company": "Umbrella Health", "applicant_name": "Dana Kim"},
            {"job_title": "Data Analyst", "hiring_company": "Acme Corp", "applicant_name": "Ana Silva"},
            {"job_title": "Chef", "hiring_company": "Bistro", "applicant_name": "Li Wu"}]
    prompts = [writer.format.prompt_ids(row) for row in rows]
    expected = plain.generate(prompts, 24, max_seconds=60)
    shown = [[], [], []]
    streamer = BatchStreamer([RowStreamer(writer.tokenizer, set(writer.format.stop_ids), shown[k].append)
                              for k in range(3)])
    got = engine.generate(prompts, 24, max_seconds=60, streamer=streamer)
    assert got == expected and writer.model._slot_engine.slots == 2  # three requests through two slots
    assert ["".join(parts).strip() for parts in shown] == [text.strip() for text in expected[0]]


def test_lengths_from_replays_an_earlier_runs_letter_lengths(tiny_model_path, data_dir, tmp_path):
    import pandas as pd

    from coverlora.config import TestConfig, TrainConfig
    from coverlora.errors import UserError
    from coverlora.generate.stage import run_test
    from coverlora.train.stage import train

    run = train(TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), max_steps=1,
                            eval_strategy="no", batch_size=4))
    _, table = run_test(TestConfig(run=str(run.root), max_new_tokens=12, overwrite=True, precision="fp32"))
    lengths = table[["row_id"]].assign(base_new_tokens=[3, 5, 2, 7], finetuned_new_tokens=[4, 1, 6, 2])
    lengths.to_csv(tmp_path / "lengths.csv", index=False)
    _, replayed = run_test(TestConfig(run=str(run.root), max_new_tokens=12, overwrite=True, precision="fp32",
                                      lengths_from=str(tmp_path / "lengths.csv")))
    for tag in ("base", "finetuned"):  # capped at the replayed length, or shorter where the letter stopped anyway
        assert (replayed[f"{tag}_new_tokens"] <= lengths[f"{tag}_new_tokens"]).all()
        assert (replayed[f"{tag}_new_tokens"] == lengths[f"{tag}_new_tokens"].clip(upper=table[f"{tag}_new_tokens"])).all()

    lengths.iloc[:2].to_csv(tmp_path / "short.csv", index=False)  # rows 3 and 4 missing
    with pytest.raises(UserError, match=r"short.csv: row_id \S+: field base_new_tokens is missing"):
        run_test(TestConfig(run=str(run.root), max_new_tokens=12, overwrite=True, lengths_from=str(tmp_path / "short.csv")))
    pd.DataFrame({"row_id": [1]}).to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(UserError, match="cannot read row_id and base_new_tokens"):
        run_test(TestConfig(run=str(run.root), max_new_tokens=12, overwrite=True, lengths_from=str(tmp_path / "nocol.csv")))
