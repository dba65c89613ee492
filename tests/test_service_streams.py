"""The service's HTTP meanings (415, 400, the OpenAPI saying so), streams through the batcher (queued events, one
decode loop for several streams, a streamer per row) and the untuned model's label and repetition guard.

The tiny random Llama writes gibberish; a SlowWriter (the real tokenizer, canned tokens fed to the streamer) is
used where timing matters.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from coverlora.config import ServeConfig  # noqa: E402
from coverlora.service import LetterWriter, create_app  # noqa: E402
from coverlora.service.batcher import BatchStreamer, RowStreamer  # noqa: E402
from coverlora.service.writer import UNTUNED_GUARD, decoding_options  # noqa: E402

BODY = {"job": {"title": "Data Analyst", "company": "Acme Corp"}, "resume": {"name": "Ana Silva", "skills": "SQL"}}


@pytest.fixture(scope="module")
def writer(tiny_model_path):
    return LetterWriter.from_config(ServeConfig(model=tiny_model_path))


def client_for(writer, **overrides) -> TestClient:
    cfg = ServeConfig(**{"model": "embedded", "max_new_tokens": 8, **overrides})
    return TestClient(create_app(cfg, writer), base_url="http://127.0.0.1")


def events_of(response) -> list[tuple[str, dict]]:
    events = []
    for chunk in response.read().decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


class SlowWriter(LetterWriter):
    """The real tokenizer; each generate call takes `delay` seconds and streams `text`'s tokens to each row."""

    def __init__(self, real: LetterWriter, text: str = "Dear team, I am writing.", delay: float = 0.3):
        super().__init__(None, real.tokenizer, real.format, "slow")
        self.text, self.delay, self.batches = text, delay, []

    def generate(self, prompts, max_new_tokens, *, max_seconds, stop=None, streamer=None):
        self.generate_calls += 1
        self.batches.append(len(prompts))
        ids = self.tokenizer(self.text, add_special_tokens=False)["input_ids"][:max_new_tokens]
        if streamer is not None:
            import torch

            streamer.put(torch.zeros((len(prompts), 3), dtype=torch.long))  # the prompt: skipped
            for token in ids:
                time.sleep(self.delay / len(ids))
                streamer.put(torch.tensor([token] * len(prompts)))
            streamer.end()
        else:
            time.sleep(self.delay)
        return [self.text] * len(prompts), [len(ids)] * len(prompts)


# ---------------------------------------------------------------------------- HTTP meanings


@pytest.mark.parametrize("path", ["/v1/letters", "/v1/letters/stream"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None,
                                          "multipart/form-data; boundary=x"])
def test_wrong_content_type_is_415(writer, path, content_type):
    headers = {"content-type": content_type} if content_type else {}
    with client_for(writer) as client:
        response = client.post(path, content=json.dumps(BODY).encode(), headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]


def test_json_content_types_are_accepted(writer):
    with client_for(writer) as client:
        for kind in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
            assert client.post("/v1/letters", content=json.dumps(BODY), headers={"content-type": kind}).status_code == 200


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"job": }', b"\xff\xfe{}"])
def test_invalid_json_is_400_with_a_plain_message(writer, raw):
    with client_for(writer) as client:
        response = client.post("/v1/letters", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "JSON" in detail or "parsing the body" in detail


def test_openapi_documents_400_and_415(writer):
    with client_for(writer) as client:
        spec = client.get("/openapi.json").json()
    for path in ("/v1/letters", "/v1/letters/stream"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"400", "415", "422"} <= set(responses), path
        assert "JSON" in responses["400"]["description"] and "application/json" in responses["415"]["description"]
        assert "queued" in json.dumps(spec["paths"]["/v1/letters/stream"])


# ---------------------------------------------------------------------------- streams through the batcher


def test_row_streamer_releases_words_and_stops_at_the_stop_token(writer):
    tokenizer = writer.tokenizer
    text = "Dear Hiring Manager,\n\nI am applying for the Data Analyst role. Café!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stop = writer.format.stop_ids[0]
    pieces = []
    row = RowStreamer(tokenizer, {stop}, pieces.append)
    for token in [*ids, stop, *ids[:3]]:  # the tokens after the stop token are padding
        row.put(token)
    row.end()
    assert "".join(pieces) == text and len(pieces) > 3


def test_batch_streamer_splits_rows_and_skips_the_prompt(writer):
    import torch

    tokenizer, stop = writer.tokenizer, writer.format.stop_ids[0]
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("one two three", "four"))
    heard = {0: [], 2: []}
    streamer = BatchStreamer([RowStreamer(tokenizer, {stop}, heard[0].append), None,
                              RowStreamer(tokenizer, {stop}, heard[2].append)])
    streamer.put(torch.ones((3, 5), dtype=torch.long))
    steps = max(len(a), len(b)) + 1
    rows = [a + [stop] * (steps - len(a)), [7] * steps, b + [stop] * (steps - len(b))]
    for step in range(steps):
        streamer.put(torch.tensor([row[step] for row in rows]))
    streamer.end()
    assert "".join(heard[0]) == "one two three" and "".join(heard[2]) == "four"


def test_concurrent_streams_share_one_generate_call_with_their_own_letters(writer):
    """Three streams at once: one generate call; each stream's tokens add up to its own letter, which is the
    letter POST /v1/letters gives for the same body."""
    bodies = [{**BODY, "job": {**BODY["job"], "title": title}} for title in ("Data Analyst", "Nurse", "Chef")]
    with client_for(writer, max_batch=8, max_wait_ms=400) as client:
        plain = [client.post("/v1/letters", json=body).json()["letter"] for body in bodies]
        calls = writer.generate_calls

        def stream(body):
            with client.stream("POST", "/v1/letters/stream", json=body) as response:
                return events_of(response)

        with ThreadPoolExecutor(3) as pool:
            streams = list(pool.map(stream, bodies))
    assert writer.generate_calls - calls == 1
    for events, letter in zip(streams, plain):
        start = next(data for name, data in events if name == "start")
        done = events[-1]
        assert start["batch_size"] == 3 and done[0] == "done" and done[1]["batch_size"] == 3
        assert done[1]["letter"] == letter  # greedy: batching does not change a letter
        streamed = "".join(data["text"] for name, data in events if name == "token")
        assert " ".join(streamed.split()) == " ".join(done[1]["letter"].split())


class UnevenWriter(LetterWriter):
    """Two rows: the first ends (its stop token) after a few tokens, the second goes on for `tail` seconds more."""

    def __init__(self, real: LetterWriter, tail: float = 1.5):
        super().__init__(None, real.tokenizer, real.format, "uneven")
        self.tail, self.returned = tail, None

    def generate(self, prompts, max_new_tokens, *, max_seconds, stop=None, streamer=None):
        import torch

        stop_id, short = self.format.stop_ids[0], self.tokenizer("Dear team,", add_special_tokens=False)["input_ids"]
        streamer.put(torch.zeros((len(prompts), 3), dtype=torch.long))
        for token in short:
            streamer.put(torch.tensor([token] * len(prompts)))
        streamer.put(torch.tensor([stop_id] + [short[0]] * (len(prompts) - 1)))  # row 0 ends here
        time.sleep(self.tail)
        streamer.end()
        self.returned = time.monotonic()
        return ["Dear team,", "Dear team, Dear"][:len(prompts)], [len(short) + 1, len(short) + 1][:len(prompts)]


def test_each_stream_gets_done_when_its_own_row_ends(writer):
    """A stream's `done` is sent when its row's stop token comes, not when the batch's slowest letter ends."""
    uneven = UnevenWriter(writer)
    with client_for(uneven, max_batch=2, max_wait_ms=500) as client:
        def stream(_):
            with client.stream("POST", "/v1/letters/stream", json=BODY) as response:
                events = events_of(response)
            return events, time.monotonic()

        with ThreadPoolExecutor(2) as pool:
            (first, first_at), (second, second_at) = sorted(pool.map(stream, range(2)), key=lambda r: r[1])
    assert first[-1][0] == "done" and second[-1][0] == "done"
    assert first[-1][1]["letter"] == "Dear team," and first[-1][1]["batch_size"] == 2
    assert first_at < uneven.returned - 1.0 <= second_at, (first_at, uneven.returned, second_at)


def test_queued_events_tell_the_place_in_line(writer):
    """While one batch generates, later streams wait in line and hear their place as it changes."""
    slow = SlowWriter(writer, delay=0.6)
    with client_for(slow, max_batch=1, max_wait_ms=0) as client:
        def stream(delay):
            time.sleep(delay)
            with client.stream("POST", "/v1/letters/stream", json=BODY) as response:
                return events_of(response)

        with ThreadPoolExecutor(3) as pool:
            first, second, third = pool.map(stream, (0.0, 0.15, 0.3))
    places = [[data["position"] for name, data in events if name == "queued"] for events in (first, second, third)]
    assert places[0] == [1]
    assert places[1] == [1]  # next in line from the start (the first one is generating, not waiting)
    assert places[2] == [2, 1]  # behind the second, then next
    for events in (first, second, third):
        assert [name for name, _ in events][-1] == "done"
        assert "".join(d["text"] for n, d in events if n == "token") == slow.text
    assert slow.batches == [1, 1, 1]


def test_a_request_that_leaves_the_line_is_not_generated(writer):
    """A stream that hangs up while waiting (its future cancelled) is dropped from the line; a batch whose
    clients all left stops."""
    import asyncio

    from coverlora.service.batcher import Batcher

    slow = SlowWriter(writer, delay=0.4)

    async def scenario():
        batcher = Batcher(slow, max_batch=1, max_wait=0, max_seconds=60)
        heard, third_heard = [], []
        first = batcher.enqueue([1, 2, 3], 8, listener=lambda kind, value: heard.append((kind, value)))
        await asyncio.sleep(0.05)
        second = batcher.enqueue([1, 2, 3], 8)
        third = batcher.enqueue([1, 2, 3], 8, listener=lambda kind, value: third_heard.append((kind, value)))
        assert batcher.waiting == 2
        second.cancel()
        await asyncio.sleep(0)  # the cancelled future's callbacks run
        assert batcher.waiting == 1 and third_heard == [("queued", 2), ("queued", 1)]  # moved up at once
        third.cancel()
        generated = await first
        await asyncio.sleep(0.1)
        await batcher.stop()
        return generated, heard

    generated, heard = asyncio.run(scenario())
    assert slow.batches == [1] and generated.text == slow.text
    assert heard[:2] == [("queued", 1), ("start", 1)]


def test_staged_decoding_writes_the_letters_generate_batch_writes(writer):
    """Prompts prefilled one by one from the shared prefix's cache, then decoded together: the same greedy letters
    as the test stage's batched generate, and each row's first token is known before the batch decodes."""
    from coverlora.generate.batched import generate_batch
    from coverlora.service.letters import body_to_row

    bodies = [{"job": {"title": t, "company": c}, "resume": {"name": n, "skills": k}}
              for t, c, n, k in (("Data Analyst", "Acme Corp", "Ana Silva", "SQL"), ("Nurse", "Umbrella", "Ben", ""),
                                 ("Chef", "Globex Kitchens International", "Chen Wei", "knives, sauces, plating"))]
    prompts = [writer.format.prompt_ids(body_to_row(body)) for body in bodies]
    firsts = []

    class Firsts:
        def first(self, row, token):
            firsts.append((row, token))

        def put(self, value):
            pass

        def end(self):
            pass

    staged = writer.generate(prompts, 8, max_seconds=60, streamer=Firsts())
    expected = generate_batch(writer.model, writer.tokenizer, prompts, 8, stop_ids=writer.format.stop_ids,
                              **writer.decoding)
    assert staged == expected
    assert [row for row, _ in firsts] == sorted(range(3), key=lambda row: len(prompts[row]))  # shortest first
    assert writer.prefix.ids and all(prompt[:len(writer.prefix.ids)] == writer.prefix.ids for prompt in prompts)


# ---------------------------------------------------------------------------- untuned models


def test_an_untuned_model_is_labelled_and_guarded(writer, tiny_model_path):
    assert writer.fine_tuned is False
    assert writer.decoding == {"repetition_penalty": float(UNTUNED_GUARD["repetition_penalty"]),
                               "no_repeat_ngram_size": UNTUNED_GUARD["no_repeat_ngram_size"]}
    with client_for(writer) as client:
        health = client.get("/healthz").json()
        letter = client.post("/v1/letters", json=BODY).json()
    assert health["fine_tuned"] is False and letter["fine_tuned"] is False
    assert health["decoding"] == writer.decoding
    # The guard is a default: the config turns it off, and a run's own test settings win over it.
    off = ServeConfig(model=tiny_model_path, no_repeat_ngram_size=0, repetition_penalty=1.0)
    assert decoding_options(off, None) == {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    assert decoding_options(ServeConfig(model=tiny_model_path), {}) == {"repetition_penalty": 1.0,
                                                                       "no_repeat_ngram_size": 0}
