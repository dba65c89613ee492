"""The FastAPI app: the letter routes, health, the web page, and `serve` (uvicorn)."""

# No `from __future__ import annotations` here: FastAPI reads a route's body type, built per config, at run time.
import asyncio
import logging
import socket
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from coverlora.config import ServeConfig
from coverlora.errors import UserError
from coverlora.service import security
from coverlora.service.batcher import Batcher
from coverlora.service.letters import PromptTooLong, answer, prepare
from coverlora.service.schemas import Error, Health, LetterResponse, request_model
from coverlora.service.streaming import STREAM_RESPONSE, letter_stream
from coverlora.service.writer import LetterWriter

log = logging.getLogger("coverlora")

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "extension"
# The extension's popup doubles as the service's web page: one form, two hosts.
PAGE_FILES = {"/": ("popup.html", "text/html; charset=utf-8"), "/popup.js": ("popup.js", "text/javascript"),
              "/popup.css": ("popup.css", "text/css"), "/heuristics.js": ("heuristics.js", "text/javascript"),
              "/letter-view.js": ("letter-view.js", "text/javascript")}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
ERRORS = {400: {"model": Error, "content": {"text/plain": {}},  # plain text: Starlette's TrustedHostMiddleware
                "description": "Body is not valid UTF-8 JSON (`detail` says where), or the Host header is not allowed "
                               "(text/plain)."},
          401: {"model": Error, "description": "Missing or wrong bearer token."},
          403: {"model": Error, "description": "Browser origin not allowed."},
          413: {"model": Error, "description": "Body too large."},
          415: {"model": Error, "description": "Content-Type is not application/json."},
          504: {"model": Error, "description": "No letter within request_timeout."}}
# Swagger UI's script and styles ship in the fastapi-offline package: /docs works without a network.
DOCS_ASSETS = "/docs-assets"


async def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (application/json or application/*+json), before it is read."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        raise HTTPException(415, f"send the body as JSON with Content-Type: application/json (got {kind or 'none'})")


async def readable_422(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Body that is not JSON: a 400 with one plain line. Otherwise FastAPI's 422 detail, plus one `message` line a
    person can read ("job.title: Field required")."""
    broken = [error for error in exc.errors() if error.get("type") == "json_invalid"]
    if broken:
        where, why = broken[0].get("loc", ("body", "?"))[-1], (broken[0].get("ctx") or {}).get("error", "")
        return JSONResponse({"detail": f"the body is not valid JSON: {why} at character {where}"}, status_code=400)
    detail = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        detail.append({"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))})
    message = "; ".join(f"{'.'.join(d['loc'][1:] if d['loc'][:1] == ['body'] else d['loc']) or 'body'}: {d['msg']}"
                        for d in detail)
    return JSONResponse({"detail": detail, "message": message}, status_code=422)


async def prompt_too_long_422(request: Request, exc: PromptTooLong) -> JSONResponse:
    detail = [{"loc": ["body"], "msg": str(exc), "type": "prompt_too_long"}]
    return JSONResponse({"detail": detail, "message": str(exc)}, status_code=422)


def _add_letter_routes(app: FastAPI, cfg: ServeConfig, writer: LetterWriter, batcher: Batcher, auth: list) -> None:
    LetterRequest = request_model(cfg)
    auth = [*auth, Depends(require_json)]

    @app.post("/v1/letters", response_model=LetterResponse, responses=ERRORS, dependencies=auth,
              summary="Write a cover letter")
    async def write_letter(body: LetterRequest):
        started = time.perf_counter()
        prepared = prepare(writer, cfg, body.model_dump())
        try:
            generated = await asyncio.wait_for(batcher.submit(prepared.prompt, prepared.max_new_tokens, prepared.row),
                                               cfg.request_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise HTTPException(504, f"no letter within {cfg.request_timeout:g} s: the service is busy") from None
        return answer(writer, cfg, prepared, generated, started)

    @app.post("/v1/letters/stream", responses={**ERRORS, 200: STREAM_RESPONSE}, dependencies=auth,
              summary="Write a cover letter, streamed", response_class=StreamingResponse)
    async def stream_letter(body: LetterRequest):
        started = time.perf_counter()
        return letter_stream(writer, batcher, cfg, prepare(writer, cfg, body.model_dump()), started)


def _add_health_route(app: FastAPI, cfg: ServeConfig, writer: LetterWriter, token: str | None) -> None:
    limits = {key: getattr(cfg, key) for key in ("max_new_tokens", "max_short_chars", "max_field_chars",
                                                "max_posting_chars", "max_body_bytes", "max_prompt_tokens")}

    @app.get("/healthz", response_model=Health, summary="Liveness, model and limits")
    async def healthz(request: Request) -> dict[str, Any]:
        given = request.headers.get("authorization", "")
        return {"status": "ok", "model": writer.name, "fine_tuned": writer.fine_tuned, "decoding": writer.decoding,
                "grounded": writer.grounded, "repair": writer.repair, "limits": limits, "token_required": token is not None,
                "token_ok": None if token is None else security.authorization_ok(given, token),
                "generate_calls": writer.generate_calls, "letters": writer.letters}


def _add_page_route(app: FastAPI, path: str, filename: str, media_type: str) -> None:
    async def page() -> Response:
        file = EXTENSION_DIR / filename
        if not file.is_file():
            raise HTTPException(404, f"{filename} not found: the web page is served from {EXTENSION_DIR}")
        return Response(file.read_bytes(), media_type=media_type,
                        headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-cache"})

    app.add_api_route(path, page, methods=["GET"], include_in_schema=path == "/", response_class=Response,
                      summary="The letter form (web page)" if path == "/" else None,
                      responses={200: {"content": {media_type.split(";")[0]: {}}}})


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from local files: the page, the script and the styles never come from a CDN."""
    import fastapi_offline

    app.mount(DOCS_ASSETS, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="docs-assets")

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def create_app(cfg: ServeConfig, writer: LetterWriter | None = None) -> FastAPI:
    """The FastAPI app; loads the model unless a loaded `writer` is given (tests share one)."""
    writer = writer or LetterWriter.from_config(cfg)
    token = security.service_token(cfg)
    batcher = Batcher(writer, max_batch=cfg.max_batch, max_wait=cfg.max_wait_ms / 1000, max_seconds=cfg.max_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.stop()

    app = FastAPI(title="coverlora letter service", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=(
        "Writes a cover letter from a job description and a resume with a fine-tuned model running on this machine, "
        "and flags what the letter claims that the inputs do not support."))
    app.state.writer, app.state.batcher, app.state.config = writer, batcher, cfg
    app.add_exception_handler(RequestValidationError, readable_422)
    app.add_exception_handler(PromptTooLong, prompt_too_long_422)
    _add_letter_routes(app, cfg, writer, batcher, security.token_dependencies(token))
    _add_health_route(app, cfg, writer, token)
    for path, (filename, media_type) in PAGE_FILES.items():
        _add_page_route(app, path, filename, media_type)
    _add_docs(app)
    security.add_guards(app, cfg)
    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """The service's socket, bound before the model loads: a busy port fails in a second, not after the load."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a just-closed port is free
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", where="config key 'port'",
                        fix="stop whatever uses that port, or pass --port N") from None
    return sock


def serve(cfg: ServeConfig) -> None:
    """Bind the port, load the model and serve until Ctrl-C."""
    import uvicorn

    if cfg.host not in ("127.0.0.1", "localhost", "::1") and security.service_token(cfg) is None:
        log.warning("binding %s without a token: anyone who can reach this port can use the model", cfg.host)
    sock = listening_socket(cfg.host, cfg.port)
    app = create_app(cfg)
    log.info("serving %s on http://%s:%d (web page at /, API docs at /docs)", app.state.writer.name, cfg.host, cfg.port)
    uvicorn.Server(uvicorn.Config(app, log_level=cfg.log_level)).run(sockets=[sock])
