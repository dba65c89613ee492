"""The local letter-writing service: a FastAPI app around one loaded model.

POST /v1/letters takes a job and a resume and answers with a letter and its grounding warnings;
POST /v1/letters/stream sends the same letter as server-sent events while it is written. Requests and streams
that arrive together share one decode loop (a line with a max wait and a max batch; each prompt prefilled on its
own so its first token goes out at once, then every row decoded together, a streamer per row; generation runs in
one worker thread). The prompt is PromptFormat's, exactly as in training; the warnings are scoring.grounding's.
A model that was never fine-tuned (no --run) is labelled so and decodes with a repetition guard.

Safety for a service on a laptop: it binds 127.0.0.1, answers browsers only from the extension's origin and its
own page's (others by --allowed_origins; any other Origin gets 403, a foreign Host header 400: no DNS
rebinding), can require a bearer token, and caps body size, field lengths, prompt tokens, new tokens and time.

  app.py       create_app (the routes, /docs from local files, 415/400) and serve
  writer.py    LetterWriter: the model, its tokenizer and prompt format, one generate thread, the untuned guard
  staged.py    the decoding: prompts prefilled one by one from the shared prefix's cache, then decoded together
  batcher.py   Batcher: the line, queued places, one generate call per batch, a streamer per row
  letters.py   a request's way to a prompt (prepare) and a letter's way to warnings (grounding_report)
  streaming.py the server-sent events of /v1/letters/stream
  schemas.py   the pydantic request and response models (the OpenAPI)
  security.py  body limit, origin and host guards, CORS, bearer token
"""

from coverlora.config import EXTENSION_ID, ServeConfig
from coverlora.service.app import EXTENSION_DIR, create_app, serve
from coverlora.service.writer import LetterWriter

__all__ = ["EXTENSION_DIR", "EXTENSION_ID", "LetterWriter", "ServeConfig", "create_app", "serve"]
