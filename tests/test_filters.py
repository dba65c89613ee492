"""Tests for coverlora.train.filters and coverlora.metrics.leakage on small hand-built DataFrames."""

import pandas as pd
import pytest

from coverlora.fields import FIELDS
from coverlora.metrics.leakage import find_leakage
from coverlora.text import canonical
from coverlora.train import filters as q

BODY = (
    "I am writing to express my interest in the {title} position at {company}. "
    "In my current role I build reliable systems in Python and SQL, mentor junior colleagues, "
    "and work closely with product teams to ship features that customers value. "
    "I hold a degree in Computer Science and I am eager to bring my experience to your team. "
    "Thank you for considering my application."
)


def row(letter=None, title="Data Engineer", company="Acme Corp", name="Jane Doe", **kw):
    r = {f: "" for f in FIELDS}
    r.update(
        job_title=title,
        hiring_company=company,
        applicant_name=name,
        past_experience="Data Analyst at Foo Inc",
        current_experience="Data Engineer at Bar LLC",
        skillsets="Python, SQL, Spark",
        qualifications="BSc Computer Science",
    )
    r["cover_letter"] = BODY.format(title=title, company=company) if letter is None else letter
    r.update(kw)
    return r


def frame(*rows):
    return pd.DataFrame(list(rows), columns=list(FIELDS))


def flags_of(*rows, **kw):
    return q.quality_flags(frame(*rows), **kw)


# ---------------------------------------------------------------- normalize


def test_canonical_text():
    assert canonical("  Hello,\n\n  WORLD!!  ") == "hello, world"
    assert canonical("\u201cQuoted.\u201d") == "quoted"
    assert canonical("Corp.") == canonical("corp")
    assert canonical(None) == "" and canonical(float("nan")) == ""


# ---------------------------------------------------------------- leakage


def test_find_leakage():
    train = frame(
        row(company="Acme Corp", name="A One"),
        row(letter="Shared letter text. " * 20, company="Globex", name="B Two"),
        row(title="Web Developer", company="Initech", name="C Three"),
    )
    same_letter_same_company = row(company="Acme Corp", name="Z Z", letter=BODY.format(title="Data Engineer", company="Acme Corp").upper() + "  ")
    same_letter_other_company = row(letter="shared   LETTER text. " * 20, company="Umbrella", name="D Four")
    same_inputs_new_letter = row(title="Web Developer", company="initech.", name="C Three", letter="A brand new letter.")
    clean = row(title="Nurse", company="Hospital", name="E Five")
    test = frame(same_letter_same_company, same_letter_other_company, same_inputs_new_letter, clean)
    test.index = [10, 11, 12, 13]

    lk = find_leakage(train, test)
    assert list(lk.index) == [10, 11, 12, 13]
    assert lk["letter_in_train"].tolist() == [True, True, False, False]
    assert lk["letter_in_train_same_company"].tolist() == [True, False, False, False]
    assert lk["inputs_in_train"].tolist() == [False, False, True, False]
    assert lk["leaked"].tolist() == [True, True, True, False]
    assert lk.dtypes.eq(bool).all()


# ---------------------------------------------------------------- rules


def test_clean_row_has_no_flags():
    f = flags_of(row())
    assert not f[list(q.RULES)].any(axis=None)
    assert f["reasons"].tolist() == [""]
    assert list(f.columns) == [*q.RULES, "reasons"]


def test_shared_letter():
    shared = "We share one letter. " * 20
    f = flags_of(
        row(letter=shared, company="Acme Corp", name="Jane Doe"),
        row(letter=shared.upper(), company="Globex", name="Jane Doe"),  # different company -> flagged
        row(letter="Other letter. " * 30, name="Jane Doe"),
        # Same letter for identical company/name/title: a consistent duplicate, NOT flagged.
        row(letter="Duplicate letter. " * 20, name="Sam Roe"),
        row(letter="duplicate  letter. " * 20, name="sam roe"),
    )
    assert f["shared_letter"].tolist() == [True, True, False, False, False]


def test_too_short():
    f = flags_of(row(letter="Short letter naming Data Engineer at Acme Corp."), row())
    assert f["too_short"].tolist() == [True, False]
    assert flags_of(row(), min_chars=10_000)["too_short"].all()


def test_company_and_title_missing():
    f = flags_of(
        row(company="Acme Corp", letter=BODY.format(title="Data Engineer", company="ACME corp")),  # other case: named
        row(company="Acme Corp.", letter=BODY.format(title="Data Engineer", company="Acme Corp")),  # trailing "."
        row(company="Acme Corp", letter=BODY.format(title="Data Engineer", company="your company")),
        row(company="IBM", letter=BODY.format(title="Data Engineer", company="Ibmsoft")),  # whole words only
        row(title="Senior Data Engineer", letter=BODY.format(title="Data Engineer", company="Acme Corp")),
    )
    assert f["company_missing"].tolist() == [False, False, True, True, False]
    assert f["title_missing"].tolist() == [False, False, False, False, True]


@pytest.mark.parametrize(
    "ending, truncated",
    [
        ("", False),  # ends with "."
        ("\n\nSincerely,\nJane Doe", False),
        ("\n\nSincerely,\nJohn Smith", False),  # name differs from applicant: still a sign-off
        (" Sincerely, Jane Doe", False),
        (" Best regards, Mary-Jane O'Neil", False),
        ("\n\nKind regards,\n\nJean de la Fontaine, PhD\njean@example.com\n(555) 123-4567", False),
        ("\n\nThank you,\nJ. R. Smith", False),
        ("\n\nSincerely,", False),
        ("\n\nJane Doe", False),
        ("\n\nSincerely,\n[Your Name]", False),  # a placeholder, not a truncation
        (' I said "yes"', False),
        (" I believe that my skills make me a strong fit", True),
        (" Thank you for", True),
        (" My skills include:", True),
        (" I have worked at\nGoogle", True),
        (" Thank you. I am", True),
        (" My skills.\nIn", True),
    ],
)
def test_truncated(ending, truncated):
    letter = BODY.format(title="Data Engineer", company="Acme Corp") + ending
    assert flags_of(row(letter=letter))["truncated"].item() is truncated


@pytest.mark.parametrize(
    "text, hit",
    [
        ("Sincerely,\n[Your Name]", True),
        ("I would love to join [Company] as", True),
        ("I would love to join {company} as", True),
        ("I would love to join {{ company_name }} as", True),
        ("I would love to join <Company Name> as", True),
        ("I would love to join (insert company name) as", True),
        ("With XX years of experience", True),
        ("I worked at XYZ Analytics for 3 years.", False),
        ("I love C++ and a<b comparisons (e.g. x > y).", False),
    ],
)
def test_placeholder(text, hit):
    assert flags_of(row(letter=BODY.format(title="Data Engineer", company="Acme Corp") + " " + text))[
        "placeholder"
    ].item() is hit


@pytest.mark.parametrize(
    "text, hit",
    [
        ("As an AI language model, I cannot apply for jobs.", True),
        ("Here is a cover letter tailored to the role:", True),
        ("Sure! Here's a sample cover letter for you.", True),
        ("I hope this helps!", True),
        ("### Sample Cover Letter", True),
        ("### Job Description:\nData Engineer", True),
        ("Job Description: build pipelines", True),
        ("Skillsets: Python, SQL", True),
        ("### Applicant Resume:\nName: Jane Doe", True),
        ("Skills: Python, SQL", True),
        ("Feel free to customize it.", True),
        ("<|im_end|>", True),
        ("As an AI Engineer at Foo, I trained language models.", False),
        ("I am an AI engineer with experience in C# and language modeling.", False),
        ("Please let me know if you would like any further information.", False),
    ],
)
def test_ai_artifact(text, hit):
    letter = BODY.format(title="Data Engineer", company="Acme Corp") + "\n" + text
    assert flags_of(row(letter=letter))["ai_artifact"].item() is hit


def test_low_similarity_reasons_and_counts():
    df = frame(row(), row(), row(letter="Tiny."))
    f = q.quality_flags(df, similarity=[0.9, 0.1, 0.2], min_similarity=0.35)
    assert f["low_similarity"].tolist() == [False, True, True]
    assert f["reasons"].tolist()[:2] == ["", "low_similarity"]
    assert f["reasons"].iloc[2] == "too_short;company_missing;title_missing;low_similarity"
    counts = q.flag_counts(f)
    assert counts["low_similarity"] == 2 and counts["too_short"] == 1 and counts["dropped"] == 2
    assert set(counts) == {*q.RULES, "dropped"}
    assert not q.quality_flags(df)["low_similarity"].any()  # no similarity given -> never flagged
    with pytest.raises(ValueError):
        q.quality_flags(df, similarity=[0.5])


# ---------------------------------------------------------------- embeddings (loads MiniLM once)


def test_input_letter_similarity_related_beats_unrelated():
    related = row(
        title="Data Engineer",
        company="Acme Corp",
        skillsets="Python, SQL, Spark, Airflow, data pipelines",
        letter=(
            "I am excited to apply for the Data Engineer position at Acme Corp. As a Data Engineer at Bar LLC "
            "I build data pipelines with Python, SQL, Spark and Airflow, and before that I was a Data Analyst "
            "at Foo Inc. My BSc in Computer Science gives me a solid foundation."
        ),
    )
    also_related = row(
        title="Registered Nurse",
        company="City Hospital",
        past_experience="Nurse at County Clinic",
        current_experience="ICU Nurse at General Hospital",
        skillsets="Patient care, medication administration, triage",
        qualifications="BSc Nursing",
        letter=(
            "I am applying for the Registered Nurse role at City Hospital. As an ICU nurse I provide patient "
            "care, administer medication and triage patients; my BSc in Nursing prepared me well."
        ),
    )
    unrelated = row(
        title="Data Engineer",
        company="Acme Corp",
        skillsets="Python, SQL, Spark, Airflow, data pipelines",
        letter="Preheat the oven to 180C. Mix flour, sugar and butter, add two eggs and bake for 35 minutes.",
    )
    sims = q.input_letter_similarity(frame(related, also_related, unrelated), batch_size=2)
    assert len(sims) == 3 and all(-1.0 <= s <= 1.0 for s in sims)
    assert sims[0] > sims[2] and sims[1] > sims[2]
    assert sims[2] < q.MIN_SIMILARITY < min(sims[0], sims[1])


# ---------------------------------------------------------------- one rule for the filter and the metrics

from coverlora.scoring.rules import check_rules  # noqa: E402

RULE_CASES = [
    # (field, value, letter text, named?)  — the cases where the two old copies of each rule disagreed, and more
    ("hiring_company", "Acme Analytics Inc.", "I want to join Acme Analytics.", True),
    ("hiring_company", "The Globex", "I want to join Globex.", True),
    ("hiring_company", "ACME, Inc", "I admire Acme's products.", True),
    ("hiring_company", "IBM", "I worked at Ibmsoft.", False),
    ("hiring_company", "Acme Corp", "I want to join your company.", False),
    ("job_title", "Sr. Data Engineer", "I apply as a Senior Data Engineer.", True),
    ("job_title", "Data Scientists", "the Data Scientist position", True),
    ("job_title", "Senior Data Engineer", "I apply as a Data Engineer.", False),
    ("job_title", "Backend Engineer (Remote)", "the Backend Engineer role", True),
]
PLACEHOLDER_CASES = [
    ("With XX years of experience", True),
    ("Sincerely,\nYour Name", True),
    ("I would love to join (insert company name) soon.", True),
    ("Sincerely,\n[Your Name]", True),
    ("I would love to join {company} soon.", True),
    ("I worked at XYZ Analytics for 3 years.", False),
    ("I love C++ and a<b comparisons (e.g. x > y).", False),
]


@pytest.mark.parametrize("field, value, text, named", RULE_CASES)
def test_filter_and_metrics_share_the_company_and_title_rule(field, value, text, named):
    letter = BODY.format(title="Data Engineer", company="Acme Corp").replace("Data Engineer", "data work").replace(
        "Acme Corp", "the team") + " " + text
    r = row(letter=letter, **{field: value})
    flags = flags_of(r)
    rule = {"hiring_company": ("company_missing", "company_named"), "job_title": ("title_missing", "title_named")}[field]
    assert flags[rule[0]].item() is (not named)
    assert check_rules(letter, r)[rule[1]] is named


@pytest.mark.parametrize("text, hit", PLACEHOLDER_CASES)
def test_filter_and_metrics_share_the_placeholder_rule(text, hit):
    letter = BODY.format(title="Data Engineer", company="Acme Corp") + " " + text
    assert flags_of(row(letter=letter))["placeholder"].item() is hit
    assert check_rules(letter, row(letter=letter))["has_placeholder"] is hit
