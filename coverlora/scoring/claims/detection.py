"""Which sentences of a letter are claims about the applicant, and which words of a claim are its content.

A claim is a first-person statement of experience, employers, roles, achievements, numbers, credentials or
skills. Statements of intent or interest ("I am excited to apply for the X role at Y", "I would welcome the
chance") are not, unless they carry one ("I am excited to bring my 5 years of Python experience"). Personality
and boilerplate ("I am a dedicated professional") carry nothing checkable: no content words, so no claim.
All patterns run on text.padded_words'd text: lowercase words, single spaces, "I'm" -> "i m".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from coverlora.scoring.rules import company_core
from coverlora.text import field_text, padded_words

_FIRST_PERSON = re.compile(r" (?:i|me|my|myself|mine) ")

_INTENT = re.compile(
    r"\bi (?:am|m) writing\b|\bexpress(?:ing)? my (?:\w+ )?(?:interest|enthusiasm|desire)\b"
    r"|\bi (?:am|m) (?:\w+ )?(?:excited|thrilled|eager|delighted|pleased|happy|keen|enthusiastic|interested"
    r"|applying|drawn|attracted|impressed|inspired|honou?red|confident|certain|sure|convinced|available|looking)\b"
    r"|\bi (?:would|d|will|ll|could|should|shall)\b|\bi can (?:bring|contribute|make|add|help|be|hit)\b"
    r"|\bi (?:\w+ )?(?:hope|want|wish|aim|intend|plan|look forward|welcome|appreciate|admire|share)\b"
    r"|\bthank you\b|\bthanks\b|\blooking forward\b|\bplease\b|\battached\b|\benclosed\b"
    r"|\b(?:contact|reach) me\b|\bi believe (?:that )?(?:i|my|this|these)\b"
    r"|\b(?:align|aligns|aligned|resonates?) (?:well |perfectly |closely )?with\b"
    r"|\bmy (?:application|candidacy|resume|interest)\b|\badmired?\b"
)

# What makes a sentence a claim even when it also says something about the application.
_CLAIM_MARKER = re.compile(
    r"\bi (?:have|ve|had)\b(?! (?:the|a|an) (?:chance|opportunity|pleasure)\b)(?! attached\b)"
    r"(?! (?:always |long )?(?:admired|wanted|dreamed|hoped|followed|been (?:passionate|interested|fascinated"
    r"|drawn|impressed|inspired))\b)"
    r"|\bi (?:\w+ly )?(?:worked|developed|built|led|managed|designed|implemented|created|gained|earned|completed"
    r"|graduated|obtained|received|served|spent|delivered|achieved|increased|reduced|improved|launched"
    r"|collaborated|mentored|trained|taught|maintained|supported|conducted|analy[sz]ed|used|handled|oversaw"
    r"|coordinated|hold|held|possess|specialize|specialized|was|work|lead|manage|teach|write|wrote)\b"
    r"|\bi (?:am|m) (?:\w+ )?(?:proficient|skilled|experienced|familiar|certified|versed|fluent|trained"
    r"|currently|a|an)\b"
    r"|\bmy (?:\w+ ){0,3}(?:experience|expertise|background|skills?|knowledge|proficiency|training|degree"
    r"|degrees|education|studies|work|role|position|job|tenure|time|career|internship|certifications?"
    r"|accomplishments|achievements|record|projects?) (?:in|with|at|as|of|on|include|includes|included|has|have"
    r"|spans|allowed|enabled|equipped|working|developing|managing|leading|building)\b"
    r"|\bwith (?:my |a |an )?(?:\w+ ){0,3}(?:background|experience|expertise|degree|knowledge|skills"
    r"|proficiency) (?:in|with|of)\b"
    r"|\bas (?:a|an) (?!\w+ (?:candidate|applicant)\b)\w+"
)


def is_first_person(normalized: str) -> bool:
    return bool(_FIRST_PERSON.search(normalized))


# "discuss my skills and experience with you": what is discussed is not claimed.
_DISCUSSED = re.compile(r"\bdiscuss(?:ing)?(?: how)? my\b")


def is_intent(normalized: str) -> bool:
    """The sentence is about the application, the future or the writer's feelings, and asserts no experience."""
    return bool(_INTENT.search(normalized)) and not _CLAIM_MARKER.search(_DISCUSSED.sub("discuss the", normalized))


def _phrases(row: Mapping[str, str]) -> list[str]:
    """The applicant's name and the hiring company as normalised phrases: neither is content of a claim."""
    name = padded_words(field_text(row, "applicant_name")).split()
    company = company_core(field_text(row, "hiring_company"))
    phrases = [" ".join(name), *name, " ".join(company)]
    return sorted((phrase for phrase in phrases if phrase), key=len, reverse=True)


def mask_row_names(normalized: str, row: Mapping[str, str], frame: Sequence[str] = ()) -> str:
    """The sentence without the applicant's name, the hiring company, the `frame` phrases (resume roles and
    employers, already matched) and the job's title where it names the job applied for ("the Data Scientist
    position"): what is left is the claim."""
    text = normalized
    for phrase in sorted({*_phrases(row), *frame}, key=len, reverse=True):
        text = text.replace(f" {phrase} ", " ")
    title = padded_words(field_text(row, "job_title")).strip()
    if title:
        text = re.sub(rf" (?:the|this|your|a|an) {re.escape(title)}s? (?=(?:position|role|job|opening"
                      rf"|vacancy|opportunity|team)\b)", " ", text)
    return text
