"""A local letter-writing service (and web page) for the browser extension in extension/.

Usage:
    # a fine-tuned run (merged/ if merge.py ran, else base + adapter/), or the run of a preset:
    # open http://127.0.0.1:8765/ for the form, /docs for the API
    python serve.py --run runs/demo
    python serve.py --config configs/demo-cpu.yaml

    # no run yet: the embedded SmolLM2-135M-Instruct, untuned (labelled so; a demo of the service), offline
    python serve.py

    # require a token (the extension's options page takes it); other limits as flags
    COVERLORA_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(24))") python serve.py --run runs/demo
    python serve.py --run runs/demo --port 9000 --max_new_tokens 256 --max_batch 4 --max_wait_ms 50
    # let a local dev server's pages call the API too (by default: the extension and this service's own page)
    python serve.py --run runs/demo --allowed_origins "http://localhost:5173"

    curl -s http://127.0.0.1:8765/v1/letters -H 'content-type: application/json' -d '{"job": {"title": "Data Analyst",
      "company": "Acme Corp"}, "resume": {"name": "Ana Silva", "skills": "SQL, Tableau"}}'

API: POST /v1/letters, POST /v1/letters/stream (server-sent events), GET /healthz; OpenAPI at /openapi.json
and /docs (served from local files: works offline). Binds 127.0.0.1. A config file's `serve:` section holds
these keys. Measure it with: python bench/serve_load.py --url http://127.0.0.1:8765 [--stream]
"""

from coverlora.cli import run_stage
from coverlora.config import ServeConfig
from coverlora.service import serve


def main(cfg: ServeConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    run_stage("serve", main)
