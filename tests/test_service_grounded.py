"""Grounded decoding in the service: settings from the config or the run's test stage, the greedy letter and N
samples per request with the least-flagged one kept (the same letter test.py --decoding grounded keeps), and
streams that deliver it whole."""

import json

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from coverlora.config import ServeConfig  # noqa: E402
from coverlora.errors import ConfigError  # noqa: E402
from coverlora.generate.batched import generate_candidates  # noqa: E402
from coverlora.generate.candidates import choose  # noqa: E402
from coverlora.service import LetterWriter, create_app  # noqa: E402
from coverlora.service.letters import body_to_row  # noqa: E402
from coverlora.service.writer import grounded_options  # noqa: E402

BODY = {"job": {"title": "Data Analyst", "company": "Acme Corp", "preferred_qualifications": "3+ years of SQL"},
        "resume": {"name": "Ana Silva", "current_experience": "Data Analyst at Bar Inc for 3 years",
                   "past_experience": "Junior Analyst at Foo Ltd", "skills": "SQL, Tableau", "qualifications": "BSc"}}
GROUNDED = {"samples": 3, "temperature": 1.0, "seed": 5, "top_p": 1.0}


@pytest.fixture(scope="module")
def grounded_client(tiny_model_path):
    greedy = LetterWriter.from_config(ServeConfig(model=tiny_model_path))
    writer = LetterWriter(greedy.model, greedy.tokenizer, greedy.format, "grounded", greedy.decoding, grounded=GROUNDED)
    with TestClient(create_app(ServeConfig(model=tiny_model_path, max_new_tokens=8), writer),
                    base_url="http://127.0.0.1") as client:
        yield client, writer


@pytest.mark.parametrize(("flags", "tested", "expected"), [
    ({}, None, None),  # no run: greedy
    ({}, {"decoding": "greedy"}, None),
    ({}, {"decoding": "grounded", "candidates": 4, "temperature": 0.7, "sample_seed": 3, "top_p": 0.9},
     {"samples": 4, "temperature": 0.7, "seed": 3, "top_p": 0.9}),  # the run's tuned settings
    ({"candidates": 2}, {"decoding": "grounded", "candidates": 4, "temperature": 0.7},
     {"samples": 2, "temperature": 0.7, "seed": 0, "top_p": 1.0}),  # a flag wins over the run
    ({"decoding": "grounded"}, None, {"samples": 8, "temperature": 0.8, "seed": 0, "top_p": 1.0}),  # the test stage's defaults
    ({"decoding": "greedy"}, {"decoding": "grounded"}, None),
])
def test_grounded_settings_come_from_the_config_then_the_run(flags, tested, expected):
    assert grounded_options(ServeConfig(**flags), tested) == expected


@pytest.mark.parametrize(("key", "value", "message"), [
    ("decoding", "best", "must be one of auto, greedy, grounded, repair"),
    ("candidates", 0, "must be in [1, 64]"),
    ("temperature", 5.0, "must be in [0.05, 2]"),
])
def test_bad_grounded_settings_name_the_key(key, value, message):
    with pytest.raises(ConfigError) as raised:
        ServeConfig(**{key: value})
    assert key in str(raised.value) and message in str(raised.value)


def test_the_service_keeps_the_candidate_grounded_decoding_picks(grounded_client):
    client, writer = grounded_client
    answer = client.post("/v1/letters", json=BODY).json()
    row = body_to_row(BODY)
    prompt = writer.format.prompt_ids(row)
    candidates, counts = generate_candidates(writer.model, writer.tokenizer, [prompt], 8, samples=3, temperature=1.0,
                                             seed=5, stop_ids=writer.format.stop_ids, **writer.decoding)
    picked = choose(candidates, [row], embeddings=False)[0]
    assert answer["choice"] == {"candidates": 4, "chosen": picked.index, "flagged_claims": picked.problems[0],
                                "names_missing": picked.problems[1], "placeholders": picked.problems[2],
                                "tied": picked.tied}
    assert answer["letter"] == candidates[0][picked.index] and answer["new_tokens"] == counts[0][picked.index]
    assert len(set(candidates[0])) > 1  # the samples differ from the greedy letter: there was a choice to make
    health = client.get("/healthz").json()
    assert health["grounded"] == GROUNDED


def test_a_grounded_stream_delivers_the_chosen_letter_whole(grounded_client):
    client, _ = grounded_client
    plain = client.post("/v1/letters", json=BODY).json()
    with client.stream("POST", "/v1/letters/stream", json=BODY) as response:
        chunks = response.read().decode().strip().split("\n\n")
    events = [(dict(line.split(": ", 1) for line in c.splitlines())) for c in chunks]
    names = [e["event"] for e in events]
    assert names == ["queued", "start", "done"]  # no token events: the letter is known once every candidate is
    assert json.loads(events[1]["data"])["decoding"] == "grounded"
    done = json.loads(events[2]["data"])
    assert done["letter"] == plain["letter"] and done["choice"] == plain["choice"]


# ---------------------------------------------------------------------------- sentence repair in the service

REPAIR = {"tries": 2, "temperature": 1.0, "seed": 7, "top_p": 1.0, "threshold": None}


@pytest.mark.parametrize(("flags", "tested", "expected"), [
    ({}, None, None),
    ({}, {"decoding": "repair", "repair_tries": 3, "temperature": 0.6, "sample_seed": 2},
     {"tries": 3, "temperature": 0.6, "seed": 2, "top_p": 1.0, "threshold": None}),  # the run's tuned settings
    ({"repair_tries": 1}, {"decoding": "repair"}, {"tries": 1, "temperature": 0.8, "seed": 0, "top_p": 1.0, "threshold": None}),
    ({"decoding": "repair"}, None, {"tries": 4, "temperature": 0.8, "seed": 0, "top_p": 1.0, "threshold": None}),  # the test stage's defaults
    ({"decoding": "greedy"}, {"decoding": "repair"}, None),
])
def test_repair_settings_come_from_the_config_then_the_run(flags, tested, expected):
    from coverlora.service.writer import repair_options

    assert repair_options(ServeConfig(**flags), tested) == expected


def test_the_service_repairs_as_the_test_stage_does_and_says_what_it_did(tiny_model_path):
    from coverlora.generate.repair import repair_letters

    greedy = LetterWriter.from_config(ServeConfig(model=tiny_model_path))
    writer = LetterWriter(greedy.model, greedy.tokenizer, greedy.format, "repair", greedy.decoding, repair=REPAIR)
    with TestClient(create_app(ServeConfig(model=tiny_model_path, max_new_tokens=24), writer),
                    base_url="http://127.0.0.1") as client:
        answer = client.post("/v1/letters", json=BODY).json()
        with client.stream("POST", "/v1/letters/stream", json=BODY) as response:
            chunks = response.read().decode().strip().split("\n\n")
        health = client.get("/healthz").json()
    row = body_to_row(BODY)
    [expected] = repair_letters(writer.model, writer.tokenizer, [writer.format.prompt_ids(row)], [row], 24, tries=2,
                                temperature=1.0, seed=7, stop_ids=writer.format.stop_ids, **writer.decoding)
    assert answer["letter"] == expected.text and answer["repair"] == expected.record() and answer["choice"] is None
    events = [(dict(line.split(": ", 1) for line in c.splitlines())) for c in chunks]
    assert [e["event"] for e in events] == ["queued", "start", "done"]
    assert json.loads(events[1]["data"])["decoding"] == "repair"
    assert json.loads(events[2]["data"])["letter"] == expected.text
    assert health["repair"] == REPAIR
