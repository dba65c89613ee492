"""Fixtures: a tiny random Llama with the SmolLM2 tokenizer, a tiny random BERT with MiniLM's, and small hand-made
datasets. No network."""

from __future__ import annotations

import csv
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from coverlora.fields import COLUMNS

TITLES = ["Data Analyst", "Backend Engineer", "Product Manager", "UX Designer", "Nurse", "Accountant"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Industries", "Wayne Finance"]
NAMES = ["Ana Silva", "Ben Okafor", "Chen Wei", "Dana Kim", "Eli Novak", "Fatima Zahra"]
SKILLS = ["SQL, Tableau", "Go, PostgreSQL", "Roadmaps, Jira", "Figma, user research", "Patient care", "IFRS, Excel"]


def make_row(i: int) -> dict[str, str]:
    """A plausible, fully grounded row; the letter names company, title and applicant."""
    k = i % len(TITLES)
    title, company, name, skills = TITLES[k], COMPANIES[(i + 1) % 6], NAMES[(i + 2) % 6], SKILLS[k]
    years = 2 + i % 5
    return {
        "Job Title": title,
        "Preferred Qualifications": f"{years}+ years as a {title}",
        "Hiring Company": company,
        "Applicant Name": name,
        "Past Working Experience": f"Junior {title} at Foo Ltd for 2 years",
        "Current Working Experience": f"{title} at Bar Inc for {years} years",
        "Skillsets": skills,
        "Qualifications": "BSc in a related field",
        "Cover Letter": (f"Dear Hiring Manager,\n\nI am excited to apply for the {title} role at {company}. "
                         f"With {years + 2} years of experience and skills in {skills}, I can help your team.\n\n"
                         f"Sincerely,\n{name}"),
    }


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None, index: bool = True) -> Path:
    columns = columns or list(COLUMNS)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(([""] if index else []) + columns)
        for i, row in enumerate(rows):
            writer.writerow(([str(i)] if index else []) + [row.get(c, "") for c in columns])
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(writer, **overrides):
    """The service on a free 127.0.0.1 port, in a thread: (url, stop)."""
    import uvicorn

    from coverlora.service import ServeConfig, create_app

    port = free_port()
    max_new = 220 if os.environ.get("COVERLORA_BROWSER_MODEL") else 8
    cfg = ServeConfig(**{"model": "embedded", "port": port, "max_new_tokens": max_new, "max_wait_ms": 5, **overrides})
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, writer), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="session")
def smol_path() -> str:
    from coverlora.models import embedded_model_path

    return str(embedded_model_path())


@pytest.fixture(scope="session")
def tokenizer(smol_path):
    from coverlora.models import load_tokenizer

    return load_tokenizer(smol_path)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tokenizer) -> str:
    """A 2-layer, 64-wide random Llama saved with the SmolLM2 tokenizer (chat template, pad == eos)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    """train.csv (12 rows) and test.csv (4 rows) of hand-made, distinct rows."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_csv(folder / "train.csv", [make_row(i) for i in range(12)])
    write_csv(folder / "test.csv", [make_row(100 + i) for i in range(4)])
    return folder


@pytest.fixture(scope="module")
def writer(tiny_model_path):
    """The letter service's writer on the tiny model (test modules with their own `writer` override it)."""
    from coverlora.config import ServeConfig
    from coverlora.service import LetterWriter

    return LetterWriter.from_config(ServeConfig(model=tiny_model_path))


@pytest.fixture()
def make_client(writer, tiny_model_path):
    """make_client(**config overrides) → a started TestClient on the shared tiny model."""
    from fastapi.testclient import TestClient

    from coverlora.config import ServeConfig
    from coverlora.service import create_app

    clients = []

    def make(writer_=None, **overrides):
        cfg = ServeConfig(**{"model": tiny_model_path, "max_new_tokens": 8, **overrides})
        client = TestClient(create_app(cfg, writer_ or writer), base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A random two-layer BERT with MiniLM's tokenizer: the cross-encoder's code path at a test's cost."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from coverlora.scoring.embeddings import minilm_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
