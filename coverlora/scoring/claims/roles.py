"""Roles and employers in a claim: the applicant's own (the resume's experience fields) or the job's.

The issue's failure: "I am a Backend Engineer at Northwind Logistics" where Northwind is the hiring company
and the resume never names it. The rules here read the words around a role or an employer name to tell a
claim of employment ("I am a ... at", "in my current role at") from the application ("the position at").
"""

from __future__ import annotations

import re

from coverlora.scoring.claims.evidence import BORROWED, SUPPORTED, UNSUPPORTED, Evidence, RowSources
from coverlora.scoring.claims.words import STOP_WORDS
from coverlora.scoring.rules import company_core, company_named
from coverlora.text import field_text, padded_words

_EXPERIENCE_FIELDS = ("current_experience", "past_experience")

# Words right before an employer name that make the sentence say the applicant works or worked there. Run on
# padded_words'd text (lowercase words, single spaces), so "I'm" reads "i m".
_EMPLOYED_BEFORE = re.compile(
    r"(?:\b(?:my|i|i m|i ve|i am|i was|i have|i had)\s+(?:\w+\s+){0,6}?"
    r"(?:work|works|worked|working|employed|employment|serve|serving|served|tenure|time|stint|career|role|roles"
    r"|position|positions|job|experience|experiences|internship|intern|years?|months?)\s+(?:\w+\s+){0,2}"
    r"(?:at|with|for|in)"
    r"|\b(?:i am|i m|i was|i ve been|i have been|i currently serve as)\s+(?:a|an|the)\s+(?:\w+\s+){1,6}?(?:at|with|for)"
    r"|^\s*(?:as|while|when)\s+(?:a|an|the|at)?\s*(?:\w+\s+){0,6}?(?:at|with|for)"
    r"|^\s*(?:at|during my time at|since joining|while at|in my time at)"
    r"|\b(?:joined|since joining|after joining))\s*$"
)
# ... and words that make it a wish instead ("the position at", "I would love to work at").
_WISH_BEFORE = re.compile(
    r"\b(?:would|could|will|shall|hope|hoping|wish|want|eager|excited|thrilled|opportunity|chance|apply|applying"
    r"|application|interest|interested|join|joining|contribute|contributing|look forward|the \w+ (?:position|role|job"
    r"|opening))\b"
)


def employer_mentions(sentence: str, company: str) -> list[tuple[str, str]]:
    """(prefix, name) for each place the sentence names `company`; prefix is the normalised text before it.

    The company is matched as grounding's company_named matches it (no leading "The", no legal suffix).
    """
    if not company_named(sentence, company):
        return []
    text, needle = padded_words(sentence), f" {' '.join(company_core(company))} "
    return [(text[: match.start() + 1], needle.strip()) for match in re.finditer(re.escape(needle), text)]


def claims_employment(prefix: str) -> bool:
    """Whether the text right before an employer name says the applicant works or worked there."""
    return bool(_EMPLOYED_BEFORE.search(prefix)) and not _WISH_BEFORE.search(prefix)


def _resume_company_continues(prefix_end: str, name: str, sentence: str, resume_text: str) -> bool:
    """'XYZ' (hiring) inside 'XYZ Technologies' (a resume employer) is the resume's employer, not the hiring one."""
    text, resume = padded_words(sentence), padded_words(resume_text)
    at = text.find(f" {name} ", len(prefix_end) - 1)
    following = text[at + len(name) + 2:].split()[:2]
    preceding = prefix_end.split()[-1:]
    return any(f" {phrase} " in resume for phrase in
               ([f"{name} {following[0]}"] if following else []) + ([f"{preceding[0]} {name}"] if preceding else []))


def _employer_evidence(sentence: str, sources: RowSources) -> list[Evidence]:
    """The rule the issue names: the applicant says they work(ed) at the hiring company; the resume does not."""
    company = field_text(sources.row, "hiring_company")
    if not company or company_named(sources.resume_text, company):
        return []
    for prefix, name in employer_mentions(sentence, company):
        if claims_employment(prefix) and not _resume_company_continues(prefix, name, sentence, sources.resume_text):
            return [Evidence("employer", BORROWED, (company,), "hiring_company")]
    return []


# A run of capitalised words: a role ("Senior Data Scientist") or an employer ("DEF Tech Solutions").
_NAME_WORD = r"(?!I\b)[A-Z][\w&'.+-]*"  # not the pronoun: "MNO Corp and I" ends at "Corp"
_RUN = rf"{_NAME_WORD}(?:\s+(?:(?:&|of|and)\s+)?{_NAME_WORD})*"
_CAPITALISED_RUN = re.compile(_RUN)
_ROLE_AT_EMPLOYER = re.compile(rf"({_RUN})\s+(?:at|with|for)\s+({_RUN})")


def _resume_names(sentence: str, sources: RowSources) -> list[Evidence]:
    """Roles and employers the sentence names as the experience fields write them. They are the frame of a
    claim ("As a Data Scientist at DEF Corp, I ..."), supported as they stand: the claim is what follows.
    A role paired with an employer it was not held at ("Senior Engineer at" the past, junior job's employer)
    is unsupported."""
    fields = {name: padded_words(field_text(sources.row, name)) for name in _EXPERIENCE_FIELDS}
    found = []
    for name, experience in fields.items():
        phrases = [phrase for phrase in (padded_words(run).strip() for run in _CAPITALISED_RUN.findall(sentence))
                   if f" {phrase} " in experience and any(word not in STOP_WORDS for word in phrase.split())]
        if phrases:
            found.append(Evidence("name", SUPPORTED, tuple(dict.fromkeys(phrases)), name))
    for role, employer in _ROLE_AT_EMPLOYER.findall(sentence):
        pair = [padded_words(role), padded_words(employer)]
        known = [any(part in experience for experience in fields.values()) for part in pair]
        together = any(all(part in experience for part in pair) for experience in fields.values())
        if all(known) and not together:
            found.append(Evidence("name", UNSUPPORTED, (f"{role} at {employer}",)))
    return found


_ROLE_BEFORE = (r"\b(?:i am|i m|as|work as|worked as|working as|role as|position as|serve as|served as)\s+"
                r"(?:\w+\s+){0,3}?(?:a|an)\s+(?:\w+\s+){0,3}?")


def _title_evidence(sentence: str, sources: RowSources) -> list[Evidence]:
    """"I am a <the job's title>" when no role in the resume has that title: the job's title, borrowed."""
    title = padded_words(field_text(sources.row, "job_title")).strip()
    experience = " ".join(padded_words(field_text(sources.row, name)) for name in _EXPERIENCE_FIELDS)
    if not title or f" {title} " in experience:
        return []
    text = padded_words(sentence)
    match = re.search(_ROLE_BEFORE + re.escape(title) + r"s? ", text)
    if match and not _WISH_BEFORE.search(text[: match.end()]):
        return [Evidence("role", BORROWED, (field_text(sources.row, "job_title"),), "job_title")]
    return []


def role_evidence(sentence: str, sources: RowSources) -> list[Evidence]:
    """Employers and roles: the hiring company or the job's title claimed, and the resume's own names."""
    return _employer_evidence(sentence, sources) + _title_evidence(sentence, sources) + _resume_names(sentence, sources)
