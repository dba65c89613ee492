"""The letter service: API, validation, streaming, batching, the page and docs, config, serving a run, fuzzing
(its guards: test_service_security.py; streams through the batcher: test_service_streams.py).

Everything runs on the tiny random Llama (max_new_tokens ≤ 8), so letters are gibberish: the tests check
the service's behaviour, not the letters. A FakeWriter returns canned letters where the content matters.
"""

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from conftest import make_row, write_csv  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from service_client import BASE_URL, FakeWriter, job_body  # noqa: E402

from coverlora.config import ServeConfig  # noqa: E402
from coverlora.data import read_csv  # noqa: E402
from coverlora.errors import ConfigError  # noqa: E402
from coverlora.fields import INPUT_FIELDS, REQUEST_KEYS  # noqa: E402
from coverlora.options import parse_cli  # noqa: E402
from coverlora.service import LetterWriter, create_app  # noqa: E402
from coverlora.service.letters import body_to_row, prepare  # noqa: E402
from coverlora.service.schemas import request_model  # noqa: E402
from coverlora.train.stage import tokenize_rows  # noqa: E402

# ---------------------------------------------------------------------------- happy path


def test_letter_happy_path(make_client, writer):
    client = make_client()
    response = client.post("/v1/letters", json=job_body())
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"letter", "warnings", "grounding", "claims", "prompt_tokens", "new_tokens", "seconds", "batch_size", "model",
                         "fine_tuned", "choice", "repair"}
    assert data["choice"] is None and data["repair"] is None  # greedy decoding chose and repaired nothing
    assert isinstance(data["letter"], str)
    assert 1 <= data["new_tokens"] <= 8
    assert data["prompt_tokens"] == len(writer.format.prompt_ids(body_to_row(job_body())))
    assert all(set(w) == {"code", "message"} for w in data["warnings"])
    assert {"company_named", "title_named", "name_named", "unsupported_entities", "placeholders"} <= set(data["grounding"])
    assert all(c["sentence"] in data["letter"] and c["label"] for c in data["claims"])


def test_prompt_is_the_training_prompt_and_posting_fills_in(make_client, writer, tmp_path):
    """The service's prompt for a job and resume is the one training built from the same dataset row."""
    csv_row = make_row(3)  # keyed by the dataset's CSV headers
    examples, _, _ = tokenize_rows(read_csv(write_csv(tmp_path / "train.csv", [csv_row])), writer.format, 10_000)
    trained = examples[0]
    training_prompt = [t for t, in_letter in zip(trained["input_ids"], trained["completion_mask"]) if not in_letter]
    job = {"title": csv_row["Job Title"], "company": csv_row["Hiring Company"]}
    resume = {"name": csv_row["Applicant Name"], "current_experience": csv_row["Current Working Experience"],
              "past_experience": csv_row["Past Working Experience"], "skills": csv_row["Skillsets"],
              "qualifications": csv_row["Qualifications"]}
    qualifications = csv_row["Preferred Qualifications"]
    fake = FakeWriter(writer, "x")
    client = make_client(fake)
    for given in ({"preferred_qualifications": qualifications},
                  {"preferred_qualifications": "", "posting": qualifications}):  # the posting fills in
        assert client.post("/v1/letters", json={"job": {**job, **given}, "resume": resume}).status_code == 200
        assert fake.prompts[-1] == training_prompt, given
    # Both given: neither is dropped; the posting follows the user's qualifications.
    given = {"preferred_qualifications": qualifications, "posting": "Kafka and Terraform on AWS."}
    assert client.post("/v1/letters", json={"job": {**job, **given}, "resume": resume}).status_code == 200
    prompt_text = writer.tokenizer.decode(fake.prompts[-1])
    assert qualifications in prompt_text and "Kafka and Terraform on AWS." in prompt_text


def test_request_model_holds_every_input_field_of_the_field_table():
    request = request_model(ServeConfig()).model_fields
    assert set(REQUEST_KEYS) == set(INPUT_FIELDS)
    for field, (part, key) in REQUEST_KEYS.items():
        assert key in request[part].annotation.model_fields, field


def test_warnings_come_from_the_grounding_checks(make_client, writer):
    letter = ("Dear team,\n\nI have 10 years of experience with Kubernetes and Java. "
              "Please contact [Your Phone Number].\n\nBest regards")
    client = make_client(FakeWriter(writer, letter))
    data = client.post("/v1/letters", json=job_body()).json()
    codes = {w["code"] for w in data["warnings"]}
    assert {"company_missing", "title_missing", "name_missing", "unsupported_years", "placeholders",
            "unsupported_entities"} <= codes
    messages = " ".join(w["message"] for w in data["warnings"])
    assert "Acme Corp" in messages and "Kubernetes" in messages and "[Your Phone Number]" in messages
    assert data["grounding"]["years_claimed"] == [10.0] and data["grounding"]["resume_years"] == 5.0

    good = ("Dear Hiring Manager,\n\nI am applying for the Data Analyst role at Acme Corp. I use SQL and Tableau "
            "every day.\n\nSincerely,\nAna Silva")
    data = make_client(FakeWriter(writer, good)).post("/v1/letters", json=job_body()).json()
    assert data["warnings"] == []
    assert data["grounding"]["company_named"] and data["grounding"]["entity_precision"] == 1.0


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("body", "loc", "kind"), [
    (job_body(job__title=None), ["body", "job", "title"], "missing"),
    (job_body(resume=None), ["body", "resume"], "missing"),
    (job_body(resume__name=None), ["body", "resume", "name"], "missing"),
    (job_body(job__title=3), ["body", "job", "title"], "string_type"),
    (job_body(resume__skills=["SQL"]), ["body", "resume", "skills"], "string_type"),
    (job_body(job="Data Analyst at Acme"), ["body", "job"], "model_attributes_type"),
    (job_body(job__company="x" * 201), ["body", "job", "company"], "string_too_long"),
    (job_body(resume__skills="x" * 4001), ["body", "resume", "skills"], "string_too_long"),
    (job_body(job__posting="x" * 12001), ["body", "job", "posting"], "string_too_long"),
    (job_body(job__title="   "), ["body", "job", "title"], "string_blank"),
    # the limit counts the text as sent, as the OpenAPI's maxLength does (CI's fuzz found "\r" + 40 chars accepted)
    (job_body(job__title="\r" + "x" * 200), ["body", "job", "title"], "string_too_long"),
    (job_body(job__compnay="Acme"), ["body", "job", "compnay"], "extra_forbidden"),
    ({**job_body(), "max_new_tokens": 9}, ["body", "max_new_tokens"], "less_than_equal"),
    ({**job_body(), "max_new_tokens": 0}, ["body", "max_new_tokens"], "greater_than_equal"),
    ({**job_body(), "max_new_tokens": "8"}, ["body", "max_new_tokens"], "int_type"),
    ([1, 2], ["body"], "model_attributes_type"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_validation_errors_are_readable_422(make_client, body, loc, kind):
    client = make_client()
    for path in ("/v1/letters", "/v1/letters/stream"):
        response = client.post(path, json=body)
        assert response.status_code == 422, response.text
        data = response.json()
        assert any(d["loc"] == loc and d["type"] == kind for d in data["detail"]), data
        dotted = ".".join(loc[1:]) or "body"
        assert dotted in data["message"]


def test_prompt_token_budget_trims_the_posting_or_fails(make_client, writer):
    client = make_client(max_prompt_tokens=220)
    posting = " ".join(f"Requirement {i}: experience with data pipelines." for i in range(200))
    response = client.post("/v1/letters", json=job_body(job__preferred_qualifications="", job__posting=posting))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["prompt_tokens"] <= 220
    assert "posting_trimmed" in {w["code"] for w in data["warnings"]}
    # With the user's own qualifications too, only the posting is cut, and the answer says so.
    mine = "Experience with Airflow and dbt."
    response = client.post("/v1/letters", json=job_body(job__preferred_qualifications=mine, job__posting=posting))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["prompt_tokens"] <= 220 and "posting_trimmed" in {w["code"] for w in data["warnings"]}
    prepared = prepare(writer, ServeConfig(max_prompt_tokens=220), job_body(job__preferred_qualifications=mine,
                                                                             job__posting=posting))
    assert prepared.row["preferred_qualifications"].startswith(mine + "\n") and len(prepared.prompt) <= 220
    # Other fields are the user's own words: never cut, a 422 instead.
    response = client.post("/v1/letters", json=job_body(resume__past_experience="Analyst at Foo. " * 100))
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "prompt_too_long"


# ---------------------------------------------------------------------------- streaming


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_streaming_sends_tokens_then_the_same_answer(make_client):
    client = make_client()
    plain = client.post("/v1/letters", json=job_body()).json()
    with client.stream("POST", "/v1/letters/stream", json=job_body()) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    names = [name for name, _ in events]
    assert names[:2] == ["queued", "start"] and names[-1] == "done" and "token" in names
    assert set(names[2:-1]) == {"token"}
    assert events[0][1] == {"position": 1}
    done = events[-1][1]
    assert done["letter"] == plain["letter"]  # greedy: the same letter either way
    assert done["new_tokens"] == plain["new_tokens"] and done["prompt_tokens"] == plain["prompt_tokens"]
    assert events[1][1] == {"prompt_tokens": plain["prompt_tokens"], "model": plain["model"], "fine_tuned": False,
                            "batch_size": 1, "decoding": "greedy"}
    assert done["choice"] is None  # greedy: nothing was chosen


def test_stream_reports_a_timeout_in_the_stream(make_client, writer):
    client = make_client(FakeWriter(writer, "late", delay=0.5), request_timeout=0.1)
    with client.stream("POST", "/v1/letters/stream", json=job_body()) as response:
        events = parse_sse(response.read().decode())
    assert events[-1][0] == "error" and "no letter within" in events[-1][1]["detail"]


# ---------------------------------------------------------------------------- caps and batching


def test_time_cap_stops_generation(make_client):
    client = make_client(max_seconds=1e-6)
    data = client.post("/v1/letters", json=job_body()).json()
    assert data["new_tokens"] < 8
    assert "truncated" in {w["code"] for w in data["warnings"]}


def test_stop_flag_ends_generation(writer):
    prompt = writer.format.prompt_ids(body_to_row(job_body()))
    stop = threading.Event()
    stop.set()  # a client that went away: the next step ends the call
    texts, counts = writer.generate([prompt], 8, max_seconds=60, stop=stop)
    assert counts == [1]


def test_request_timeout_is_504_and_stops_the_abandoned_generation(make_client, writer):
    fake = FakeWriter(writer, "late", delay=5)
    client = make_client(fake, request_timeout=0.2)
    started = time.monotonic()
    response = client.post("/v1/letters", json=job_body())
    assert response.status_code == 504
    assert "no letter within" in response.json()["detail"]
    while not fake.stopped and time.monotonic() - started < 4:
        time.sleep(0.02)
    assert fake.stopped, "the generate call went on for a client that had gone"


def test_concurrent_requests_are_batched(make_client, writer):
    client = make_client(max_batch=8, max_wait_ms=300)
    calls_before = writer.generate_calls
    bodies = [job_body(job__title=f"Analyst {i}") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda body: client.post("/v1/letters", json=body), bodies))
    assert [r.status_code for r in responses] == [200] * 8
    calls = writer.generate_calls - calls_before
    assert calls < 8, f"{calls} generate calls for 8 concurrent requests"
    assert max(r.json()["batch_size"] for r in responses) > 1
    assert sum(1 / r.json()["batch_size"] for r in responses) == pytest.approx(calls)


def test_different_token_caps_go_in_separate_calls(make_client, writer):
    fake = FakeWriter(writer, "ok", tokens=100)
    client = make_client(fake, max_batch=8, max_wait_ms=300)
    bodies = [{**job_body(), "max_new_tokens": cap} for cap in (4, 4, 8, 8)]
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda body: client.post("/v1/letters", json=body), bodies))
    assert [r.json()["new_tokens"] for r in responses] == [4, 4, 8, 8]
    assert fake.generate_calls == 2


def test_sequential_requests_are_not_delayed_past_max_wait(make_client):
    client = make_client(max_wait_ms=0)
    for _ in range(3):
        assert client.post("/v1/letters", json=job_body()).json()["batch_size"] == 1


# ---------------------------------------------------------------------------- page, docs, health


def test_web_page_docs_and_health(make_client):
    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'id="letter-form"' in page.text and 'src="popup.js"' in page.text
    for asset in ("/popup.js", "/popup.css", "/heuristics.js", "/letter-view.js"):
        assert client.get(asset).status_code == 200
    assert client.get("/manifest.json").status_code == 404  # only the form's files are served
    spec = client.get("/openapi.json").json()
    assert {"/v1/letters", "/v1/letters/stream", "/healthz"} <= set(spec["paths"])
    job = spec["components"]["schemas"]["Job"]["properties"]
    assert job["title"]["maxLength"] == 200 and job["posting"]["maxLength"] == 12000
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text.replace("https://fastapi.tiangolo.com", "")
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert client.get(asset).status_code == 200, asset
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["limits"]["max_new_tokens"] == 8


# ---------------------------------------------------------------------------- config and command line


def test_serve_config_from_flags_and_file(tmp_path):
    cfg = parse_cli("serve", ["--port", "9001", "--max_batch=4", "--token", "longenough"])
    assert (cfg.port, cfg.max_batch, cfg.token, cfg.model, cfg.host) == (9001, 4, "longenough", "embedded", "127.0.0.1")
    preset = tmp_path / "preset.yaml"
    preset.write_text("train:\n  output_dir: runs/x\nserve:\n  max_new_tokens: 64\n", encoding="utf-8")
    cfg = parse_cli("serve", ["--config", str(preset)])
    assert (cfg.run, cfg.model, cfg.max_new_tokens) == ("runs/x", "", 64)
    cfg = parse_cli("serve", ["--config", str(preset), "--model", "embedded"])
    assert (cfg.run, cfg.model) == ("", "embedded")
    with pytest.raises(ConfigError, match="did you mean 'max_batch'"):
        parse_cli("serve", ["--max_bach", "3"])
    with pytest.raises(ConfigError, match="not both"):
        parse_cli("serve", ["--run", "runs/x", "--model", "some/model"])
    with pytest.raises(ConfigError, match="port"):
        parse_cli("serve", ["--port", "70000"])
    with pytest.raises(ConfigError, match="allowed_hosts"):
        parse_cli("serve", ["--allowed_hosts", "localhost,local*"])  # Starlette would refuse it at start-up
    bad = tmp_path / "bad.yaml"
    bad.write_text("srve:\n  port: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown section"):
        parse_cli("serve", ["--config", str(bad)])
    with pytest.raises(SystemExit) as exit_info:
        parse_cli("serve", ["--help"])
    assert exit_info.value.code == 0


# ---------------------------------------------------------------------------- serving a trained run


@pytest.mark.parametrize("kind", ["merged", "adapter"])
def test_serves_a_run_with_its_prompt_settings(tmp_path, tiny_model_path, kind):
    import torch
    from peft import LoraConfig, get_peft_model

    from coverlora.config import TrainConfig
    from coverlora.models import load_model, load_tokenizer
    from coverlora.options import to_yaml_section

    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.yaml").write_text(
        to_yaml_section("train", TrainConfig(model=tiny_model_path, chat_template="off")), encoding="utf-8")
    model, tokenizer = load_model(tiny_model_path, torch.float32), load_tokenizer(tiny_model_path)
    if kind == "merged":
        model.save_pretrained(run / "merged")
        tokenizer.save_pretrained(run / "merged")
    else:
        peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
        peft_model.save_pretrained(run / "adapter")
        tokenizer.save_pretrained(run / "adapter")
    (run / "test_config.yaml").write_text("test:\n  repetition_penalty: 1.3\n  no_repeat_ngram_size: 4\n", encoding="utf-8")
    cfg = parse_cli("serve", ["--run", str(run), "--max_new_tokens", "4", "--no_repeat_ngram_size", "3"])
    writer = LetterWriter.from_config(cfg)
    assert writer.format.use_chat_template is False  # the run's own chat_template: off
    # Decoding as the run's test stage had it, unless given here.
    assert writer.decoding == {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3}
    assert writer.name == ("run (fine-tuned)" if kind == "merged" else "run (fine-tuned, adapter)")
    with TestClient(create_app(cfg, writer), base_url=BASE_URL) as client:
        data = client.post("/v1/letters", json=job_body()).json()
    assert data["prompt_tokens"] == len(writer.format.prompt_ids(body_to_row(job_body())))
    assert data["model"] == writer.name


# ---------------------------------------------------------------------------- schemathesis: no 5xx anywhere


def test_api_fuzz_no_server_errors(writer, tiny_model_path, caplog):
    """schemathesis against the service's own OpenAPI: every operation, all its checks (no 5xx, answers match the
    documented schemas and status codes); 300 generated bodies per POST endpoint (half valid, half not), and
    nothing logged as an error or a traceback."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    cfg = ServeConfig(model=tiny_model_path, max_new_tokens=4, max_batch=4, max_wait_ms=0, allowed_hosts="*",
                      max_short_chars=40, max_field_chars=200, max_posting_chars=400, token="fuzz-token")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(cfg, writer))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/letters", "/v1/letters/stream", "/healthz", "/"}
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    sent: dict[str, int] = {}
    for operation in operations:
        post = operation.method.upper() == "POST"
        for mode in modes if post else modes[:1]:
            # pytest 9 broke schemathesis.pytest.from_fixture, so hypothesis drives each operation here.
            @given(case=operation.as_strategy(mode))
            @settings(max_examples=150 if post else 10, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def check(case):
                sent[case.path] = sent.get(case.path, 0) + 1
                case.call_and_validate(headers={"Authorization": "Bearer fuzz-token"})

            check()
    assert min(sent[path] for path in ("/v1/letters", "/v1/letters/stream")) >= 300, sent
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()]
    assert not errors, [r.getMessage() for r in errors[:3]]


def test_serve_on_a_busy_port_fails_before_loading_the_model(tmp_path):
    """One line, exit 2, within seconds: the model (here a folder that does not exist) is never touched."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    repo = Path(__file__).resolve().parent.parent
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(repo / "serve.py"), "--port", str(port), "--model", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=repo, timeout=60)
    busy.close()
    assert done.returncode == 2 and time.perf_counter() - started < 30
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: config key 'port': cannot listen on 127.0.0.1:{port}")


def test_the_letter_comes_with_each_sentence_and_its_claim_label():
    """The Northwind case: a letter that claims the hiring company and the posting's numbers gets them flagged."""
    from coverlora.service.letters import claim_report

    row = {"job_title": "Backend Engineer", "hiring_company": "Northwind Logistics", "applicant_name": "Priya Raman",
           "preferred_qualifications": "Experience routing a fleet handling 40,000 parcels a day; Kafka",
           "current_experience": "Software Engineer at Contoso, 3 years, Python APIs", "past_experience": "",
           "skillsets": "Python, PostgreSQL", "qualifications": "BSc Computer Science"}
    letter = ("Dear Hiring Manager,\n\nI am a Backend Engineer at Northwind Logistics. I have been routing our fleet "
              "of 40,000 parcels a day. I build Python APIs at Contoso.\n\nSincerely,\nPriya Raman")
    claims, warnings = claim_report(letter, row)
    labels = {c["sentence"]: c["label"] for c in claims}
    assert labels["I am a Backend Engineer at Northwind Logistics."] == "borrowed"
    assert labels["I have been routing our fleet of 40,000 parcels a day."] in ("borrowed", "unsupported")
    assert labels["I build Python APIs at Contoso."] == "supported"
    assert all(c["evidence"] for c in claims if c["label"] in ("borrowed", "unsupported"))
    assert "borrowed_claims" in {w["code"] for w in warnings}


def test_a_letter_that_repeats_itself_says_so_apart_from_the_cap():
    from coverlora.service.letters import grounding_report

    row = body_to_row(job_body())
    paragraph = ("I am Ana Silva, a Data Analyst at Bar Inc, and I would like to apply for the Data Analyst role at "
                 "Acme Corp, where my SQL and Tableau work would help. ")
    warnings, _ = grounding_report(paragraph * 4, row, new_tokens=120, max_new_tokens=384, timed_out=False)
    assert "repetition" in {w["code"] for w in warnings} and "truncated" not in {w["code"] for w in warnings}
    warnings, _ = grounding_report(paragraph, row, new_tokens=40, max_new_tokens=384, timed_out=False)
    assert "repetition" not in {w["code"] for w in warnings}


def test_the_openapi_blank_pattern_is_str_strip():
    """The pattern the OpenAPI gives required fields matches exactly the texts str.strip() leaves non-empty."""
    import re
    import sys

    from coverlora.service.schemas import NOT_BLANK

    every = list(map(chr, range(sys.maxunicode + 1)))
    assert {c for c in every if not re.search(NOT_BLANK, c)} == {c for c in every if c.isspace()}
