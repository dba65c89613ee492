"""The model card: a README.md with the Hugging Face Hub's YAML metadata, in adapter/ and merged/.

It holds the training config, the hash of the training data and, once metrics.py has run, the eval_summary table.
train.py writes adapter/'s card, merge.py merged/'s; `refresh_cards` rewrites both (scripts/push_to_hub.py calls it,
so a pushed card always has the latest metrics).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import yaml

from coverlora.hub import looks_local
from coverlora.models import EMBEDDED
from coverlora.runs.layout import RunLayout, read_json, read_stage_config, write_text_atomic

log = logging.getLogger("coverlora")
EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded GGUF was converted from
# The card's license follows the base model's; anything else is 'other' (check the base model's terms).
LICENSES = {"meta-llama/llama-2": "llama2", "meta-llama/meta-llama-3": "llama3", "huggingfacetb/smollm2": "apache-2.0",
            "mistralai/": "apache-2.0", "qwen/": "apache-2.0"}
# eval_summary rows shown on the card: all test rows, these systems, in this order.
CARD_SYSTEMS = ("base", "finetuned", "reference", "copy_input")


def base_model_id(model: str) -> str:
    return EMBEDDED_ID if model == EMBEDDED else model


def license_for(base_model: str) -> str:
    name = base_model.lower()
    return next((license_ for prefix, license_ in LICENSES.items() if name.startswith(prefix)), "other")


def eval_rows(layout: RunLayout) -> list[dict[str, str]]:
    """eval_summary.csv's rows for all test rows (empty before metrics.py has run)."""
    if not layout.summary_csv.is_file():
        return []
    with open(layout.summary_csv, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row.get("subset") == "all"]


def results_table(rows: list[dict[str, str]]) -> str:
    """Markdown: one line per metric, one column per system (mean over the test rows)."""
    systems = [s for s in CARD_SYSTEMS if any(r["system"] == s for r in rows)]
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    means = {(r["system"], r["metric"]): r["mean"] for r in rows}
    lines = ["| metric | " + " | ".join(systems) + " |", "|---|" + "---:|" * len(systems)]
    for metric in metrics:
        cells = [f"{float(means[(s, metric)]):.4f}" if means.get((s, metric)) not in (None, "") else "" for s in systems]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metadata(train: dict[str, Any], rows: list[dict[str, str]]) -> dict[str, Any]:
    base = base_model_id(str(train.get("model", "")))
    data = str(train.get("data", ""))
    meta: dict[str, Any] = {"base_model": base, "library_name": "peft", "license": license_for(base),
                            "pipeline_tag": "text-generation",
                            "tags": ["lora", "peft", "trl", "sft", "cover-letter", "coverlora"]}
    if data and not looks_local(data):
        meta["datasets"] = [data]
    if rows:
        meta["metrics"] = sorted({"rouge" if r["metric"].startswith("rouge") else
                                  "bertscore" if r["metric"].startswith("bertscore") else r["metric"] for r in rows})
    return meta


def render(layout: RunLayout, folder_kind: str) -> str:
    train = read_stage_config(layout, "train")
    versions = read_json(layout.versions) if layout.versions.is_file() else {}
    rows = eval_rows(layout)
    meta = metadata(train, rows)
    what = ("the LoRA adapter (load it on the base model with PEFT)" if folder_kind == "adapter" else
            "the base model with the LoRA adapter merged in (a plain transformers checkpoint)")
    parts = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {layout.root.name}: cover letters from a job description and a resume", "",
             f"Fine-tuned from `{meta['base_model']}` with coverlora (LoRA/QLoRA SFT through TRL). "
             f"This folder holds {what}. The letters are checked against what the applicant wrote; read them "
             "before sending.", "", "## Training data", "",
             f"- data: `{train.get('data')}`",
             f"- data hash (sha256 of the rows): `{versions.get('train', {}).get('data_hash', 'unknown')}`",
             f"- rows: {versions.get('train', {}).get('train_rows', '?')} train, "
             f"{versions.get('train', {}).get('val_rows', '?')} validation", "", "## Evaluation", ""]
    parts.append(results_table(rows) + "\n\nMeans over all test rows (eval_summary.csv, subset `all`)." if rows else
                 "Not evaluated yet: run test.py and metrics.py, then refresh this card "
                 "(python scripts/push_to_hub.py --run RUN --card-only).")
    parts += ["", "## Training config", "", "```yaml", yaml.safe_dump({"train": train}, sort_keys=False).strip(), "```", ""]
    return "\n".join(parts)


def write_model_card(layout: RunLayout, folder: Path) -> Path:
    """README.md (the card) in `folder` (adapter/ or merged/)."""
    path = folder / "README.md"
    write_text_atomic(path, render(layout, folder.name))
    log.info("model card -> %s", path)
    return path


def refresh_cards(layout: RunLayout) -> list[Path]:
    """Rewrite the card of adapter/ and merged/, whichever exist (with the eval table once metrics ran)."""
    return [write_model_card(layout, folder) for folder in (layout.adapter, layout.merged) if folder.is_dir()]
