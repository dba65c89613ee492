"""The local letter-writing service: a FastAPI app around one loaded model.

POST /v1/letters takes a job and a resume and answers with a letter and its grounding warnings;
POST /v1/letters/stream sends the same letter as server-sent events while it is written. Requests
that arrive together are batched into one `generate` call (an asyncio queue with a max wait and a
max batch; generation runs in one worker thread), so concurrent clients share the model's time.
The prompt is PromptFormat's, exactly as in training; the warnings are scoring.grounding's checks.

Safety for a service on a laptop: it binds 127.0.0.1, answers only the extension's origin and
localhost pages (any other Origin gets 403, a foreign Host header 400: no DNS rebinding), can
require a bearer token, and caps body size, field lengths, prompt tokens, new tokens and time.

  app.py       create_app (the routes) and serve
  writer.py    LetterWriter: the model, its tokenizer and prompt format, one generate thread
  batcher.py   Batcher: requests that arrive together share one generate call
  letters.py   a request's way to a prompt (prepare) and a letter's way to warnings (grounding_report)
  streaming.py the server-sent events of /v1/letters/stream
  schemas.py   the pydantic request and response models (the OpenAPI)
  security.py  body limit, origin and host guards, CORS, bearer token
"""

from ..config import EXTENSION_ID, ServeConfig
from .app import EXTENSION_DIR, create_app, serve
from .writer import LetterWriter

__all__ = ["EXTENSION_DIR", "EXTENSION_ID", "LetterWriter", "ServeConfig", "create_app", "serve"]
