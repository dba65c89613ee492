"""One letter request's way through the service: body → row → prompt ids, and letter → warnings → answer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coverlora.config import ServeConfig
from coverlora.fields import REQUEST_KEYS
from coverlora.service.batcher import Generated
from coverlora.service.writer import LetterWriter


def body_to_row(body: Mapping[str, Any]) -> dict[str, str]:
    """The API's names → the dataset's field names that PromptFormat and the grounding checks use.
    The free-text posting goes into the preferred qualifications: after the user's own when both are given."""
    row = {field: str(body[part].get(key) or "") for field, (part, key) in REQUEST_KEYS.items()}
    row["preferred_qualifications"] = joined(row["preferred_qualifications"], posting_of(body))
    return row


def posting_of(body: Mapping[str, Any]) -> str:
    return str(body["job"].get("posting") or "").strip()


def joined(qualifications: str, posting: str) -> str:
    """The preferred-qualifications field the prompt shows: the user's qualifications, then the posting."""
    return "\n".join(part for part in (qualifications.strip(), posting) if part)


@dataclass
class Prepared:
    row: dict[str, str]
    prompt: list[int]
    max_new_tokens: int
    warnings: list[dict[str, str]]


class PromptTooLong(Exception):
    """The prompt exceeds the token budget even with the posting cut: a 422."""


def _trim_posting(writer: LetterWriter, row: dict[str, str], qualifications: str, posting: str,
                  prompt: list[int], budget: int) -> tuple[list[int], int]:
    """Cut the posting (never the user's own qualifications before it) until the prompt fits `budget`, or drop
    it. The prompt ids (over the budget still when the other fields alone are too long) and the characters kept."""
    posting_ids = writer.format.text_ids(posting)  # text, as the prompt tokenizes it
    kept = posting
    for _ in range(4):  # re-tokenizing a cut text can shift a token or two: retry with a margin
        keep = max(0, len(posting_ids) - (len(prompt) - budget) - 8)
        posting_ids = posting_ids[:keep]
        kept = writer.tokenizer.decode(posting_ids).strip() if keep else ""
        row["preferred_qualifications"] = joined(qualifications, kept)
        prompt = writer.format.prompt_ids(row)
        if len(prompt) <= budget or not keep:
            break
    return prompt, len(kept)


def prepare(writer: LetterWriter, cfg: ServeConfig, body: Mapping[str, Any]) -> Prepared:
    """Row, prompt ids and new-token cap for one request; a long posting is cut to the token budget."""
    max_new = body.get("max_new_tokens") or cfg.max_new_tokens
    budget = cfg.max_prompt_tokens
    if writer.context_length:
        budget = min(budget, writer.context_length - max_new)
    row = body_to_row(body)
    prompt = writer.format.prompt_ids(row)
    warnings = []
    posting = posting_of(body)
    uses_posting = bool(posting)
    if len(prompt) > budget and uses_posting:
        qualifications = str(body["job"].get("preferred_qualifications") or "")
        prompt, kept = _trim_posting(writer, row, qualifications, posting, prompt, budget)
        if len(prompt) <= budget:
            what = (f"cut to its first {kept} characters" if kept else "left out (your preferred qualifications "
                    "fill the prompt)")
            warnings.append({"code": "posting_trimmed", "message": (
                f"The job posting was {what} to fit the {budget}-token prompt; select the relevant part of the page "
                "for a better letter.")})
    if len(prompt) > budget:
        raise PromptTooLong(f"the prompt is {len(prompt)} tokens, more than the {budget} allowed: shorten the resume fields"
                            + (" or the posting" if uses_posting else ""))
    return Prepared(row, prompt, max_new, warnings)


# seq-rep-4 at which a letter is said to repeat itself: SmolLM2's base letters average 0.60, its fine-tuned ones
# 0.016 and the dataset's own 0.004 (64 novel test rows, runs/r2-filtered-42/eval_summary.csv, 2026-12-04).
REPETITION_WARNING = 0.2


def grounding_report(letter: str, row: Mapping[str, str], new_tokens: int, max_new_tokens: int,
                     timed_out: bool) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """scoring.grounding.check_rules's findings as readable warnings, plus the raw checks."""
    from coverlora.scoring.repetition import seq_rep_n
    from coverlora.scoring.rules import check_rules

    check = check_rules(letter, row)
    warnings = []

    def warn(code: str, message: str) -> None:
        warnings.append({"code": code, "message": message})

    if not letter.strip():
        warn("empty", "The model wrote no letter.")
    if check["company_named"] is False:
        warn("company_missing", f"The letter does not name the company ({row['hiring_company']}).")
    if check["title_named"] is False:
        warn("title_missing", f"The letter does not name the job title ({row['job_title']}).")
    if check["name_named"] is False:
        warn("name_missing", f"The letter does not give the applicant's name ({row['applicant_name']}).")
    if check["unsupported_years"]:
        claimed = sorted({c.claimed_years for c in check["years_claims"] if c.claimed_years > (check["resume_years"] or 0)})
        warn("unsupported_years", f"The letter claims {', '.join(f'{y:g}' for y in claimed)} years of experience; "
                                  f"the resume supports {check['resume_years']:g}.")
    if check["has_placeholder"]:
        warn("placeholders", "Unfilled template slots: " + ", ".join(check["placeholders"]) + ".")
    if check["unsupported_entities"]:
        warn("unsupported_entities", "Mentions that are not in the job or the resume (check they are true): "
                                     + ", ".join(check["unsupported_entities"]) + ".")
    repeated = seq_rep_n(letter, 4)
    if repeated >= REPETITION_WARNING:
        warn("repetition", f"The letter repeats itself: {repeated:.0%} of its four-word phrases occur earlier in it "
                           "(regenerate, or edit out the repeated paragraphs).")
    if timed_out:
        warn("truncated", "Generation hit the service's time cap: the letter may be cut off.")
    elif new_tokens >= max_new_tokens:
        warn("truncated", f"The letter reached the {max_new_tokens}-token cap and may be cut off.")
    grounding = {
        "company_named": check["company_named"], "title_named": check["title_named"], "name_named": check["name_named"],
        "years_claimed": [float(c.claimed_years) for c in check["years_claims"]], "resume_years": check["resume_years"],
        "unsupported_years": bool(check["unsupported_years"]), "unsupported_entities": list(check["unsupported_entities"]),
        "entity_precision": check["entity_precision"], "placeholders": list(check["placeholders"]),
    }
    return warnings, grounding


def claim_report(letter: str, row: Mapping[str, str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Each sentence with its claim label, severity and evidence (the learned verifier with the exact rules:
    milliseconds per letter, no MiniLM), and one warning per kind of flagged claim."""
    from coverlora.scoring.claims.verdicts import BORROWED, UNSUPPORTED, check_claims, explain

    verdicts = check_claims(letter, row, embeddings=False)
    claims = [{"sentence": v.text, "label": v.label, "severity": v.severity, "evidence": explain(v)} for v in verdicts]
    warnings = []
    # (label, what one sentence does, what several do): "1 sentence states", "2 sentences state"
    for label, one, several in ((BORROWED, "states the job's requirements or company as the applicant's own",
                                 "state the job's requirements or company as the applicant's own"),
                                (UNSUPPORTED, "claims what neither the resume nor the job says",
                                 "claim what neither the resume nor the job says")):
        count = sum(v.label == label for v in verdicts)
        if count:
            what = f"1 sentence {one}" if count == 1 else f"{count} sentences {several}"
            warnings.append({"code": f"{label}_claims",
                             "message": f"{what} (highlighted; point at or tab to a sentence for the evidence)."})
    return claims, warnings


def answer(writer: LetterWriter, cfg: ServeConfig, prepared: Prepared, generated: Generated,
           started: float) -> dict[str, Any]:
    """The LetterResponse for one generated letter; `started` is when the request came in (perf_counter)."""
    timed_out = generated.seconds >= cfg.max_seconds
    warnings, grounding = grounding_report(generated.text, prepared.row, generated.new_tokens,
                                           prepared.max_new_tokens, timed_out)
    claims, claim_warnings = claim_report(generated.text, prepared.row)
    if writer.repair is not None and generated.choice and generated.choice["left_out"]:
        left = generated.choice["left_out"]
        claim_warnings.append({"code": "sentences_left_out", "message": (
            f"{left} sentence{'s were' if left > 1 else ' was'} left out: every rewrite still claimed what your "
            "resume does not back. Read the letter for a gap.")})
    return {"letter": generated.text, "warnings": prepared.warnings + warnings + claim_warnings, "grounding": grounding,
            "claims": claims,
            "prompt_tokens": len(prepared.prompt), "new_tokens": generated.new_tokens,
            "seconds": round(time.perf_counter() - started, 3), "batch_size": generated.batch_size,
            "model": writer.name, "fine_tuned": writer.fine_tuned,
            "choice": generated.choice if writer.repair is None else None,
            "repair": generated.choice if writer.repair is not None else None}
