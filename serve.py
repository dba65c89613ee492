"""A local letter-writing service (and web page) for the browser extension in extension/.

Usage:
    # the embedded SmolLM2-135M-Instruct, offline: open http://127.0.0.1:8765/ for the form
    python serve.py

    # a fine-tuned run (merged/ if merge.py ran, else base + adapter/), or the run of a preset
    python serve.py --run runs/demo
    python serve.py --config configs/demo-cpu.yaml

    # require a token (the extension's options page takes it); other limits as flags
    COVERLORA_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(24))") python serve.py --run runs/demo
    python serve.py --run runs/demo --port 9000 --max_new_tokens 256 --max_batch 4 --max_wait_ms 50

    curl -s http://127.0.0.1:8765/v1/letters -H 'content-type: application/json' -d '{"job": {"title": "Data Analyst",
      "company": "Acme Corp"}, "resume": {"name": "Ana Silva", "skills": "SQL, Tableau"}}'

API: POST /v1/letters, POST /v1/letters/stream (server-sent events), GET /healthz; OpenAPI at /openapi.json
and /docs. Binds 127.0.0.1; answers only the extension's origin and localhost pages. A config file's
`serve:` section holds these keys. Measure it with: python bench/serve_load.py --url http://127.0.0.1:8765
"""

from coverlora.cli import run_stage
from coverlora.config import ServeConfig
from coverlora.service import serve


def main(cfg: ServeConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    run_stage("serve", main)
