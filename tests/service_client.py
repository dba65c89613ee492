"""The letter service's shared test pieces: a request body and a FakeWriter with canned letters (the `writer`
and `make_client` fixtures are in conftest.py)."""

import time

from coverlora.config import EXTENSION_ID
from coverlora.service import LetterWriter

BASE_URL = "http://127.0.0.1"
EXTENSION_ORIGIN = f"chrome-extension://{EXTENSION_ID}"


def job_body(**overrides):
    body = {"job": {"title": "Data Analyst", "company": "Acme Corp", "preferred_qualifications": "3+ years of SQL"},
            "resume": {"name": "Ana Silva", "current_experience": "Data Analyst at Bar Inc for 3 years",
                       "past_experience": "Junior Analyst at Foo Ltd for 2 years", "skills": "SQL, Tableau",
                       "qualifications": "BSc in Statistics"}}
    for key, value in overrides.items():
        part, _, field = key.partition("__")
        if field:
            if value is None:
                body[part].pop(field, None)
            else:
                body[part][field] = value
        elif value is None:
            body.pop(part, None)
        else:
            body[part] = value
    return body


class FakeWriter(LetterWriter):
    """The real tokenizer and prompt format, with canned letters instead of a model."""

    def __init__(self, real: LetterWriter, letter: str = "", delay: float = 0.0, tokens: int = 3):
        super().__init__(None, real.tokenizer, real.format, "fake")
        self.letter, self.delay, self.tokens, self.prompts, self.stopped = letter, delay, tokens, [], False

    def generate(self, prompts, max_new_tokens, *, max_seconds, stop=None, streamer=None):
        self.generate_calls += 1
        self.letters += len(prompts)
        self.prompts.extend(prompts)
        if stop is not None and stop.wait(self.delay):
            self.stopped = True  # the batcher's stop flag: every client of this call gave up
        elif stop is None:
            time.sleep(self.delay)
        return [self.letter] * len(prompts), [min(self.tokens, max_new_tokens)] * len(prompts)
