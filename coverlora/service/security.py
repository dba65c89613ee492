"""What stands between the network and the model: body limit, Host and Origin guards, CORS and the bearer token.

A foreign Host header gets 400 (Starlette's TrustedHostMiddleware: no DNS rebinding), a browser Origin that is
not allowed 403, a body over the limit 413, a missing or wrong token 401.
"""

import hmac
import os
import re

from fastapi import Depends, FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.middleware.trustedhost import TrustedHostMiddleware

from coverlora.config import ServeConfig, origin_regex


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, by Content-Length or as it streams in."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed, send)

    async def _too_large(self, scope, receive, send):
        response = JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413,
                                headers={"connection": "close"})
        await response(scope, receive, send)


class OriginGuard:
    """ASGI middleware: 403 for a browser Origin that is not allowed. Requests without an Origin (curl, scripts)
    pass, and so do same-origin ones (the service's own page, under whatever allowed Host name it was opened);
    CORS headers are CORSMiddleware's."""

    def __init__(self, app, origins: re.Pattern):
        self.app, self.origins = app, origins

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            origin, host = headers.get(b"origin"), headers.get(b"host", b"")
            if origin is not None and origin != b"http://" + host and not self.origins.match(origin.decode("latin-1")):
                return await JSONResponse({"detail": "origin not allowed"}, status_code=403)(scope, receive, send)
        return await self.app(scope, receive, send)


def add_guards(app: FastAPI, cfg: ServeConfig) -> None:
    """The middleware, innermost first: body limit, Origin, Host, then CORS outermost, so that CORS headers go on
    every answer to an allowed origin, the 400, 403 and 413 included."""
    origins = origin_regex(cfg.origins)
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(OriginGuard, origins=origins)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=cfg.hosts, www_redirect=False)
    app.add_middleware(CORSMiddleware, allow_origin_regex=origins.pattern, allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "Content-Type"], max_age=600)


def service_token(cfg: ServeConfig) -> str | None:
    """The bearer token the API requires: the config's, else COVERLORA_TOKEN's; None = none."""
    return cfg.token or os.environ.get("COVERLORA_TOKEN") or None


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def authorization_ok(header: str, token: str) -> bool:
    """Whether an Authorization header carries `token` as a bearer token."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and token_matches(given.strip(), token)


def token_dependencies(token: str | None) -> list:
    """The routes' dependencies: a bearer check when there is a token. Without one the API declares no security
    scheme, so the OpenAPI says what the service checks."""
    if token is None:
        return []
    bearer = HTTPBearer(auto_error=False, description="Needed only when the service was started with a token.")

    async def check_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not token_matches(credentials.credentials if credentials is not None else "", token):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return [Depends(check_token)]
