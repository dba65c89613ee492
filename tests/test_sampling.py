"""Seeded sampling (coverlora/generate/sampling.py) and the slot engine's sampling, rewinds and sentence repair:
the draws follow softmax(logits / T) within top-p (checked against transformers' own warpers, statistically),
depend on (seed, stream, position) alone, and give the same letters on the engine as on generate."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chi2_contingency, chisquare
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from coverlora.generate import repair
from coverlora.generate.batched import generate_batch, generate_candidates
from coverlora.generate.engine import Rewind, SlotEngine
from coverlora.generate.repair import repair_letters
from coverlora.generate.repair_slots import slot_repair_letters
from coverlora.generate.sampling import gumbel_noise, row_seed, sample_tokens
from coverlora.generate.slots import slot_candidates
from coverlora.models import load_model, load_tokenizer

LOGITS = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
DRAWS = 40_000


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_model(tiny_model_path, torch.float32).eval(), load_tokenizer(tiny_model_path)


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tokenizer = tiny
    texts = ["Write a cover letter for a Data Analyst role at Acme Corp.", "Nurse, Umbrella Health.",
             "Backend Engineer at Globex; Go and PostgreSQL.", "Chef", "Pilot at Oceanic."]
    return [tokenizer(t)["input_ids"] for t in texts]


def ours(temperature: float, top_p: float) -> torch.Tensor:
    """DRAWS tokens from LOGITS: one row per draw, each its own position."""
    n = DRAWS
    return sample_tokens(LOGITS.expand(n, -1), torch.full((n,), temperature), torch.full((n,), 7, dtype=torch.long),
                         torch.zeros(n, dtype=torch.long), torch.arange(n), top_p)


def transformers_draws(temperature: float, top_p: float) -> torch.Tensor:
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)])
    scores = warpers(torch.zeros(1, 1, dtype=torch.long), LOGITS[None].clone())
    generator = torch.Generator().manual_seed(0)
    return torch.multinomial(scores.softmax(-1).expand(DRAWS, -1), 1, generator=generator)[:, 0]


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (0.7, 0.8), (1.3, 0.5)])
def test_draws_follow_the_softmax_within_top_p_as_transformers_samples(temperature, top_p):
    draws = ours(temperature, top_p)
    counts = torch.bincount(draws, minlength=len(LOGITS))
    theirs = torch.bincount(transformers_draws(temperature, top_p), minlength=len(LOGITS))
    kept = theirs > 0  # top-p's nucleus: the tokens transformers can draw
    assert torch.equal(counts > 0, kept), (counts, theirs)
    scaled = LOGITS[kept] / temperature
    expected = scaled.double().softmax(-1) * DRAWS
    assert chisquare(counts[kept].double().numpy(), expected.numpy()).pvalue > 1e-3
    assert chi2_contingency(torch.stack([counts[kept], theirs[kept]]).numpy()).pvalue > 1e-3
    assert ours(temperature, top_p).equal(draws)  # no state: the same keys draw the same tokens


def test_a_draw_depends_on_its_seed_stream_and_position_only():
    vocab, rows = 64, 6
    logits = torch.randn(rows, vocab)
    seed, stream, position = (torch.randint(0, 2**31 - 1, (rows,)) for _ in range(3))
    temperature = torch.ones(rows)
    together = sample_tokens(logits, temperature, seed, stream, position)
    order = torch.randperm(rows)
    shuffled = sample_tokens(logits[order], temperature[order], seed[order], stream[order], position[order])
    alone = torch.cat([sample_tokens(logits[r:r + 1], temperature[r:r + 1], seed[r:r + 1], stream[r:r + 1],
                                     position[r:r + 1]) for r in range(rows)])
    assert together[order].equal(shuffled) and together.equal(alone)
    # the noise changes with each of the three keys, and temperature 0 is the argmax
    base = gumbel_noise(seed, stream, position, vocab)
    for moved in ((seed + 1, stream, position), (seed, stream + 1, position), (seed, stream, position + 1)):
        assert not torch.allclose(gumbel_noise(*moved, vocab), base)
    assert sample_tokens(logits, torch.zeros(rows), seed, stream, position).equal(logits.argmax(-1))
    assert row_seed(3, [1, 2, 3]) == row_seed(3, [1, 2, 3]) != row_seed(4, [1, 2, 3]) != row_seed(3, [1, 2])


def test_engine_candidates_are_generates_candidates(tiny, prompts):
    """Grounded decoding's greedy letter and samples: on the slot engine as on generate, for the same seed."""
    model, tokenizer = tiny
    candidates, counts = generate_candidates(model, tokenizer, prompts, 12, samples=3, temperature=1.0, seed=5,
                                             kv_cache="dynamic")
    got = {}
    model._slot_engine = None
    slot_candidates(model, tokenizer, prompts, list(range(len(prompts))), [12] * len(prompts), batch_size=4,
                    on_batch=lambda rows, texts, cs, s: got.update(zip(rows, zip(texts, cs))), desc="t",
                    stop_ids=None, repetition_penalty=1.0, samples=3, temperature=1.0, seed=5)
    assert [got[i] for i in range(len(prompts))] == list(zip(candidates, counts))
    assert all(len(set(row)) > 1 for row in candidates)  # the samples differ from each other and the greedy one
    # one prompt alone draws the same samples as in the batch
    alone, _ = generate_candidates(model, tokenizer, prompts[2:3], 12, samples=3, temperature=1.0, seed=5)
    assert alone[0] == candidates[2]


def test_a_rewind_leaves_the_row_as_if_the_rewound_tokens_were_never_written(tiny, prompts):
    """Rows decode greedily, are rewound mid-letter to draw hot on another stream, then rewound again to the same
    point to go on greedily: the letters are the greedy ones, so nothing of the hot tokens stayed in the cache."""
    model, tokenizer = tiny
    greedy = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, min_new_tokens=20,
                             do_sample=False, pad_token_id=0)
        greedy.append(out[0, len(prompt):].tolist())
    engine = SlotEngine(model, slots=3, capacity=max(map(len, prompts)) + 20, stop_ids=[-1],
                        pad_id=tokenizer.pad_token_id, sampling=True, sync_every=4)
    reviews: dict[int, int] = {}
    held: dict[int, list[int]] = {}

    def review(indices, new, live):
        rewinds = {}
        for i, tokens in zip(indices, new):
            held.setdefault(i, []).extend(tokens)
            seen = reviews[i] = reviews.get(i, 0) + 1
            to = 0 if i == 0 else 3  # row 0 goes back to before its first token: the prompt's last one is fed again
            if seen == 2:
                rewinds[i] = Rewind(to, 9, 1.5)
            elif seen == 3:
                assert held[i][to:] != greedy[i][to:len(held[i])]  # the hot tokens were not the greedy ones
                rewinds[i] = Rewind(to, 0, 0.0)
            if i in rewinds:
                del held[i][to:]
        return rewinds

    got = {}
    engine.run(prompts, list(range(len(prompts))), [20] * len(prompts), lambda rows, tokens: got.update(zip(rows, tokens)),
               sampling=[(1, 0, 0.0)] * len(prompts), review=review)
    assert [got[i] for i in range(len(prompts))] == greedy and all(n >= 3 for n in reviews.values())


# a repetition penalty makes the random model end sentences ("........... pledge pledge ...")
REPAIR = dict(tries=2, temperature=1.0, seed=11, repetition_penalty=1.3)


def repaired_both_ways(model, tokenizer, prompts):
    """Each prompt's repaired letter by generate's rounds, and by a fresh slot engine (3 slots: rows wait)."""
    rows = [{"job_title": "Chef"}] * len(prompts)
    expected = repair_letters(model, tokenizer, prompts, rows, 40, **REPAIR)
    got = {}
    model._slot_engine = None
    slot_repair_letters(model, tokenizer, prompts, rows, list(range(len(prompts))), 40, most_slots=3,
                        on_done=lambda done, repaired, s: got.update(zip(done, repaired)), **REPAIR)
    return expected, [got[i] for i in range(len(prompts))]


@pytest.mark.parametrize("judge", ["greedy tries flagged", "everything flagged", "nothing flagged"])
def test_repair_on_the_engine_writes_generates_repaired_letters(tiny, prompts, monkeypatch, judge):
    """The engine's repair (rows decode on; each sync's sentences judged together) and generate's rounds write
    the same letters, records included, for the same seed, whatever the verifier says."""
    model, tokenizer = tiny
    rules = {"greedy tries flagged": lambda letter: letter.tries == 0, "everything flagged": lambda letter: True,
             "nothing flagged": lambda letter: False}[judge]
    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [rules(letter) for letter in letters])
    expected, got = repaired_both_ways(model, tokenizer, prompts)
    assert got == expected
    if judge != "nothing flagged":
        assert sum(r.samples for r in expected) >= len(prompts)
    else:
        assert [r.text for r in expected] == generate_batch(model, tokenizer, prompts, 40, repetition_penalty=1.3)[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_sample_and_rewind_as_generate_does(tiny_model_path, prompts, monkeypatch):
    """On a GPU the engine's steps replay CUDA graphs that hold the draw: its candidates and repaired letters
    are still generate's, for the same seeds."""
    model = load_model(tiny_model_path, torch.float32).cuda().eval()
    tokenizer = load_tokenizer(tiny_model_path)
    candidates, counts = generate_candidates(model, tokenizer, prompts, 12, samples=3, temperature=1.0, seed=5,
                                             kv_cache="dynamic")
    got = {}
    slot_candidates(model, tokenizer, prompts, list(range(len(prompts))), [12] * len(prompts), batch_size=4,
                    on_batch=lambda rows, texts, cs, s: got.update(zip(rows, zip(texts, cs))), desc="t",
                    stop_ids=None, repetition_penalty=1.0, samples=3, temperature=1.0, seed=5)
    assert [got[i] for i in range(len(prompts))] == list(zip(candidates, counts))
    assert len(model._slot_engine.graphs) >= 1
    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [letter.tries == 0 for letter in letters])
    expected, got = repaired_both_ways(model, tokenizer, prompts)
    assert got == expected and model._slot_engine.graphs
