"""The API's pydantic models: they validate requests and write the OpenAPI at /openapi.json."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr
from pydantic_core import PydanticCustomError

from coverlora.config import ServeConfig


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer: 4 and 4.0, not "4" or true.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# A character that str.strip() keeps, written out: JSON Schema's regexes (ECMA) and Python's disagree on \s.
NOT_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _required_text(value: str) -> str:
    # Checked after the length limits, which count the text as sent (so they agree with the OpenAPI's maxLength).
    stripped = value.strip()
    if not stripped:
        raise PydanticCustomError("string_blank", "String should contain more than whitespace")
    return stripped


def _text(max_length: int, required: bool = False) -> Any:
    """A text field: its length limits on the text as sent, then stripped. A required one needs a character that
    is not whitespace, which the OpenAPI says with the pattern NOT_BLANK."""
    if required:
        return Annotated[StrictStr, Field(min_length=1, max_length=max_length, json_schema_extra={"pattern": NOT_BLANK}),
                         AfterValidator(_required_text)]
    return Annotated[StrictStr, Field(max_length=max_length), AfterValidator(str.strip)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def request_model(cfg: ServeConfig) -> type[BaseModel]:
    """The request body's model, with this config's length limits (they show in the OpenAPI)."""
    TokenCap = Annotated[int, Field(ge=1, le=cfg.max_new_tokens), BeforeValidator(_json_integer)]
    short, long_, posting_chars = cfg.max_short_chars, cfg.max_field_chars, cfg.max_posting_chars

    Short, Long, Posting = _text(short, required=True), _text(long_), _text(posting_chars)

    class Job(_Strict):
        title: Short = Field(description="Job title.", examples=["Data Analyst"])
        company: Short = Field(description="Hiring company.", examples=["Acme Corp"])
        preferred_qualifications: Long = Field("", description="What the job asks for.")
        posting: Posting = Field("", description=(
            "Free text of the job posting (e.g. the page's text). Used as the preferred qualifications when those are "
            "empty, cut to fit the prompt."))

    class Resume(_Strict):
        name: Short = Field(description="Applicant's name.", examples=["Ana Silva"])
        current_experience: Long = ""
        past_experience: Long = ""
        skills: Long = ""
        qualifications: Long = ""

    class LetterRequest(_Strict):
        job: Job
        resume: Resume
        max_new_tokens: TokenCap | None = Field(None, description=(
            f"New-token cap for this letter (default and most: {cfg.max_new_tokens})."))

    return LetterRequest


class Warning_(BaseModel):
    code: str = Field(description="company_missing, title_missing, name_missing, unsupported_years, placeholders, "
                                  "unsupported_entities, truncated, posting_trimmed or empty.")
    message: str


class Grounding(BaseModel):
    company_named: bool | None
    title_named: bool | None
    name_named: bool | None
    years_claimed: list[float]
    resume_years: float | None
    unsupported_years: bool
    unsupported_entities: list[str]
    entity_precision: float | None
    placeholders: list[str]


class Claim(BaseModel):
    sentence: str = Field(description="A sentence or frame line of the letter, as written.")
    label: Literal["supported", "borrowed", "unsupported", "not_a_claim"] = Field(
        description="supported: the resume backs it; borrowed: only the job's fields do; unsupported: neither does.")
    severity: Literal["specific", "generic"] | None = Field(
        default=None, description="Of a flagged sentence: 'specific' (a tool, employer, number, leadership... a "
        "recruiter could catch) or 'generic' (boilerplate); null otherwise.")
    evidence: str = Field(description="What decided the label (matched or missing words, numbers, names).")


class Choice(BaseModel):
    candidates: int = Field(description="Letters written for this request: the greedy one and the samples.")
    chosen: int = Field(description="Which one was kept (0 = the greedy letter).")
    flagged_claims: int = Field(description="Borrowed or unsupported claims in the kept letter (fewest wins).")
    names_missing: int = Field(description="Of company, title and applicant, how many the kept letter leaves unnamed.")
    placeholders: int
    tied: int = Field(description="Candidates with as few problems; among several, the one the others agree with most.")


class Repair(BaseModel):
    rewritten: int = Field(description="Sentences the verifier flagged and a resampled sentence replaced.")
    left_out: int = Field(description="Sentences left out: every try was flagged.")
    samples: int = Field(description="Sentences sampled in all (tries).")
    generated_tokens: int = Field(description="New tokens decoded, flagged tries included.")


class LetterResponse(BaseModel):
    letter: str
    warnings: list[Warning_]
    grounding: Grounding
    claims: list[Claim] = Field(description="Every sentence of the letter with its claim label (scoring/claims.py).")
    prompt_tokens: int
    new_tokens: int
    seconds: float = Field(description="Time in the service, queue included.")
    batch_size: int = Field(description="Letters generated in the same generate call.")
    model: str
    fine_tuned: bool = Field(description="False for an untuned base model (no --run): its letters are a demo.")
    choice: Choice | None = Field(description="How grounded decoding chose the letter; null for greedy decoding.")
    repair: Repair | None = Field(None, description="What sentence repair did to the letter; null unless decoding is repair.")


class Health(BaseModel):
    status: str
    model: str
    fine_tuned: bool = Field(description="False for an untuned base model (no --run): its letters are a demo.")
    decoding: dict[str, float] = Field(description="Greedy decoding's options (repetition_penalty, no_repeat_ngram_size).")
    grounded: dict[str, float] | None = Field(description="Grounded decoding's samples, temperature, seed and top_p; null = greedy letters.")
    repair: dict[str, float | None] | None = Field(None, description="Sentence repair's tries, temperature, seed, top_p and flag threshold (null: the verifier's own); null = not repaired.")
    limits: dict[str, int]
    token_required: bool
    token_ok: bool | None = Field(description="Whether the request's bearer token is right; null when none is needed.")
    generate_calls: int = Field(description="generate calls so far (batching: fewer than letters).")
    letters: int


class Error(BaseModel):
    detail: str
